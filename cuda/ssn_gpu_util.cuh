// Host and device helpers of the SSN layers' CUDA code (the .cu files only):
// launch sizes, the out-of-range index flag, one-block sums, a row-run
// scatter-add, and SpixelFeature2's association-weighted sums (used by
// SpixelFeature2 and SlicIterations). The per-element math itself lives in
// caffe/ssn/math.hpp, shared with the CPU code.
#ifndef CAFFE_SSN_SSN_GPU_UTIL_CUH_
#define CAFFE_SSN_SSN_GPU_UTIL_CUH_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/ssn/math.hpp"
#include "caffe/util/device_alternate.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {
namespace ssn {

// Blocks for a grid-stride loop over `count` items; at least one, so that an
// empty blob launches a kernel that does nothing instead of failing.
inline int gpu_blocks(int count) {
  return count > 0 ? CAFFE_GET_BLOCKS(count) : 1;
}

// Index maps are float blobs that a kernel cannot CHECK. A kernel that meets
// an id outside its range skips it (it never reads or writes out of bounds)
// and raises a device flag; after the launch the host reads the flag, and
// when it is set the layer runs its checked CPU forward, which dies with the
// CPU path's message naming the image, row and column.
//
// Zeroes the flag (a 1-element Blob) and returns its device pointer.
inline int* reset_index_flag(Blob<int>* flag) {
  flag->Reshape(std::vector<int>(1, 1));
  caffe_gpu_set(1, 0, flag->mutable_gpu_data());
  return flag->mutable_gpu_data();
}

// Whether a kernel raised the flag (synchronises with the device).
inline bool index_flag_raised(const Blob<int>& flag) {
  return flag.cpu_data()[0] != 0;
}

#ifdef __CUDACC__
// Raises the flag; racing writers all store the same value.
__device__ __forceinline__ void raise_index_flag(int* flag) { *flag = 1; }

// Threads per block of the one-block sums below (a power of two).
const int kSumThreads = 512;

// Sums `value` over the threads of a kSumThreads-thread block; every thread
// returns the total. All threads of the block must call it.
__device__ inline double block_sum(double value) {
  __shared__ double partial[kSumThreads];
  partial[threadIdx.x] = value;
  __syncthreads();
  for (int stride = kSumThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      partial[threadIdx.x] += partial[threadIdx.x + stride];
    }
    __syncthreads();
  }
  const double total = partial[0];
  __syncthreads();  // the next call may overwrite partial[0]
  return total;
}

// One thread per (n, c, y) row of an N x C x H x W map: adds each run of
// equal id along the row into sums[n, c, id] (N x C x num_ids), one atomicAdd
// per run; ids (N x H x W) below 0 are skipped. Used for Smear's backward
// and for SpixelFeature's smeared-output diff.
template <typename Dtype>
__global__ void ScatterAddRowRuns(const int count, const Dtype* values,
    const int* ids, const int channels, const int height, const int width,
    const int num_ids, Dtype* sums) {
  CUDA_KERNEL_LOOP(index, count) {
    const int y = index % height;
    const int nc = index / height;
    const int n = nc / channels, spatial = height * width;
    const int* row_ids = ids + n * spatial + y * width;
    const Dtype* row = values + nc * spatial + y * width;
    Dtype* out = sums + nc * num_ids;
    int run_id = -1;
    Dtype run_sum = 0;
    for (int x = 0; x < width; ++x) {
      const int id = row_ids[x];
      if (id != run_id) {
        if (run_id >= 0) atomicAdd(out + run_id, run_sum);
        run_id = id;
        run_sum = 0;
      }
      if (id >= 0) run_sum += row[x];
    }
    if (run_id >= 0) atomicAdd(out + run_id, run_sum);
  }
}

// One thread per (n, y, c, k) with k in [0, channels]: k < channels sums
// Q[c, p] F[k, p] into U[k, nb(p, c)] (N x C x K), k == channels sums Q[c, p]
// into W[nb(p, c)] (N x K), over the runs of equal initial cell of row y, with
// one atomicAdd per run (pixels of a run share their 9 candidates). Sums and
// weights must be zeroed first. Cells outside [0, K) raise the flag and are
// skipped.
template <typename Dtype>
__global__ void AssociationSums(const int count, const Dtype* pixels,
    const Dtype* assoc, const Dtype* cells, const int channels,
    const int height, const int width, const int grid_h, const int grid_w,
    Dtype* centroid_sums, Dtype* weights, int* bad_index) {
  CUDA_KERNEL_LOOP(index, count) {
    const int k = index % (channels + 1);
    const int c = (index / (channels + 1)) % kNumNeighbours;
    const int y = (index / (channels + 1) / kNumNeighbours) % height;
    const int n = index / (channels + 1) / kNumNeighbours / height;
    const int spatial = height * width, num_spixels = grid_h * grid_w;
    const bool weight = k == channels;
    const Dtype* cell_row = cells + n * spatial + y * width;
    const Dtype* q = assoc + (n * kNumNeighbours + c) * spatial + y * width;
    const Dtype* f = weight ? NULL
        : pixels + (n * channels + k) * spatial + y * width;
    Dtype* out = weight ? weights + n * num_spixels
        : centroid_sums + (n * channels + k) * num_spixels;
    int run_cell = -1, j = -1;
    Dtype run_sum = 0;
    for (int x = 0; x < width; ++x) {
      int cell = index_value(cell_row[x]);
      if (cell < 0 || cell >= num_spixels) {
        raise_index_flag(bad_index);
        cell = -1;
      }
      if (cell != run_cell) {
        if (j >= 0) atomicAdd(out + j, run_sum);
        run_cell = cell;
        j = cell < 0 ? -1 : neighbour_index(cell, c, grid_h, grid_w);
        run_sum = 0;
      }
      if (j >= 0) run_sum += weight ? q[x] : q[x] * f[x];
    }
    if (j >= 0) atomicAdd(out + j, run_sum);
  }
}

// One thread per (n, k, j) of N x C x K centroids: S[k, j] = U[k, j] / W[j]
// (in place), 0 for dead j.
template <typename Dtype>
__global__ void NormaliseCentroids(const int count, const Dtype* weights,
    const int channels, const int num_spixels, Dtype* centroids) {
  CUDA_KERNEL_LOOP(index, count) {
    const int j = index % num_spixels;
    const int n = index / num_spixels / channels;
    const Dtype weight = weights[n * num_spixels + j];
    const Dtype inverse = spixel_is_alive(weight) ? 1 / weight : 0;
    centroids[index] *= inverse;
  }
}
#endif  // __CUDACC__

}  // namespace ssn
}  // namespace caffe

#endif  // CAFFE_SSN_SSN_GPU_UTIL_CUH_
