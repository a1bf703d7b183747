// CUDA forward and backward of SpixelFeature2 (see spixel_feature2_layer.hpp).
//
// The forward sums W[j] and U[k, j] = sum Q F are scatters, done by
// ssn::AssociationSums (ssn_gpu_util.cuh, shared with SlicIterations) with one
// atomicAdd per run of equal cell along a row. The backward is a gather per
// pixel and needs no atomics.
#include <vector>

#include "caffe/layers/spixel_feature2_layer.hpp"
#include "caffe/ssn/math.hpp"
#include "caffe/ssn/ssn_gpu_util.cuh"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// Initial cell of a pixel, or -1 when it is outside [0, num_spixels) (the
// forward pass reported it).
template <typename Dtype>
__device__ __forceinline__ int cell_or_skip(Dtype value, int num_spixels) {
  const int cell = ssn::index_value(value);
  return cell >= 0 && cell < num_spixels ? cell : -1;
}

// One thread per (n, k, p): dF[k, p] = sum over live j = nb(p, c) of
// G[k, j] / W[j] * Q[c, p].
template <typename Dtype>
__global__ void SpixelFeature2BackwardPixels(const int count,
    const Dtype* assoc, const Dtype* cells, const Dtype* weights,
    const Dtype* top_diff, const int channels, const int spatial,
    const int grid_h, const int grid_w, Dtype* pixel_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int p = index % spatial;
    const int k = (index / spatial) % channels;
    const int n = index / spatial / channels;
    const int num_spixels = grid_h * grid_w;
    const int cell = cell_or_skip(cells[n * spatial + p], num_spixels);
    const Dtype* q = assoc + n * ssn::kNumNeighbours * spatial + p;
    const Dtype* w = weights + n * num_spixels;
    const Dtype* g = top_diff + (n * channels + k) * num_spixels;
    Dtype diff = 0;
    for (int c = 0; cell >= 0 && c < ssn::kNumNeighbours; ++c) {
      const int j = ssn::neighbour_index(cell, c, grid_h, grid_w);
      if (j < 0 || !ssn::spixel_is_alive(w[j])) continue;
      diff += g[j] / w[j] * q[c * spatial];
    }
    pixel_diff[index] = diff;
  }
}

// One thread per (n, c, p): dQ[c, p] = sum_k G[k, j] / W[j] (F[k, p] - S[k, j])
// for live j = nb(p, c), else 0.
template <typename Dtype>
__global__ void SpixelFeature2BackwardAssoc(const int count,
    const Dtype* pixels, const Dtype* cells, const Dtype* weights,
    const Dtype* centroids, const Dtype* top_diff, const int channels,
    const int spatial, const int grid_h, const int grid_w,
    Dtype* assoc_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int p = index % spatial;
    const int c = (index / spatial) % ssn::kNumNeighbours;
    const int n = index / spatial / ssn::kNumNeighbours;
    const int num_spixels = grid_h * grid_w;
    const int cell = cell_or_skip(cells[n * spatial + p], num_spixels);
    const int j = cell < 0 ? -1 : ssn::neighbour_index(cell, c, grid_h, grid_w);
    const Dtype* w = weights + n * num_spixels;
    Dtype diff = 0;
    if (j >= 0 && ssn::spixel_is_alive(w[j])) {
      const Dtype* f = pixels + n * channels * spatial + p;
      const Dtype* g = top_diff + n * channels * num_spixels + j;
      const Dtype* s = centroids + n * channels * num_spixels + j;
      for (int k = 0; k < channels; ++k) {
        diff += g[k * num_spixels] / w[j] *
                (f[k * spatial] - s[k * num_spixels]);
      }
    }
    assoc_diff[index] = diff;
  }
}

template <typename Dtype>
void SpixelFeature2Layer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const int num = bottom[0]->num(), channels = bottom[0]->channels();
  const int height = bottom[0]->height(), width = bottom[0]->width();
  caffe_gpu_set(top[0]->count(), Dtype(0), top[0]->mutable_gpu_data());
  caffe_gpu_set(weights_.count(), Dtype(0), weights_.mutable_gpu_data());
  int* bad_index = ssn::reset_index_flag(&bad_index_);
  const int rows = num * height * ssn::kNumNeighbours * (channels + 1);
  // NOLINT_NEXT_LINE(whitespace/operators)
  ssn::AssociationSums<Dtype><<<ssn::gpu_blocks(rows),
                                 CAFFE_CUDA_NUM_THREADS>>>(
      rows, bottom[0]->gpu_data(), bottom[1]->gpu_data(),
      bottom[2]->gpu_data(), channels, height, width, grid_h_, grid_w_,
      top[0]->mutable_gpu_data(), weights_.mutable_gpu_data(), bad_index);
  CUDA_POST_KERNEL_CHECK;
  if (ssn::index_flag_raised(bad_index_)) {
    Forward_cpu(bottom, top);  // dies naming the out-of-range cell
    LOG(FATAL) << "SpixelFeature2 '" << this->layer_param_.name()
               << "': the cell map holds an id outside [0, "
               << grid_h_ * grid_w_ << ")";
  }
  const int count = top[0]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  ssn::NormaliseCentroids<Dtype><<<ssn::gpu_blocks(count),
                                    CAFFE_CUDA_NUM_THREADS>>>(
      count, weights_.gpu_data(), channels, grid_h_ * grid_w_,
      top[0]->mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
}

// Out-of-range cells were reported by the forward pass; here they are skipped.
template <typename Dtype>
void SpixelFeature2Layer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  CHECK(!propagate_down[2]) << "SpixelFeature2 '" << this->layer_param_.name()
                            << "': cannot backpropagate to the cell map";
  if (!propagate_down[0] && !propagate_down[1]) return;
  const int channels = bottom[0]->channels(), spatial = bottom[0]->count(2);
  const int pixel_count = bottom[0]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  SpixelFeature2BackwardPixels<Dtype><<<ssn::gpu_blocks(pixel_count),
                                        CAFFE_CUDA_NUM_THREADS>>>(
      pixel_count, bottom[1]->gpu_data(), bottom[2]->gpu_data(),
      weights_.gpu_data(), top[0]->gpu_diff(), channels, spatial, grid_h_,
      grid_w_, bottom[0]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
  const int assoc_count = bottom[1]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  SpixelFeature2BackwardAssoc<Dtype><<<ssn::gpu_blocks(assoc_count),
                                       CAFFE_CUDA_NUM_THREADS>>>(
      assoc_count, bottom[0]->gpu_data(), bottom[2]->gpu_data(),
      weights_.gpu_data(), top[0]->gpu_data(), top[0]->gpu_diff(), channels,
      spatial, grid_h_, grid_w_, bottom[1]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(SpixelFeature2Layer);

}  // namespace caffe
