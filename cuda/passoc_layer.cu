// CUDA forward and backward of Passoc (see passoc_layer.hpp).
#include <vector>

#include "caffe/layers/passoc_layer.hpp"
#include "caffe/ssn/math.hpp"
#include "caffe/ssn/ssn_gpu_util.cuh"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// Initial cell of a pixel, or -1 (and the flag raised) when it is outside
// [0, num_spixels).
template <typename Dtype>
__device__ __forceinline__ int read_cell(Dtype value, int num_spixels,
                                         int* bad_index) {
  const int cell = ssn::index_value(value);
  if (cell >= 0 && cell < num_spixels) return cell;
  if (bad_index != NULL) ssn::raise_index_flag(bad_index);
  return -1;
}

// One thread per (n, c, p) of the N x 9 x H x W top:
// D[c, p] = scale * sum_k (F[k, p] - S[k, nb(p, c)])^2, or invalid (already
// scaled) when nb(p, c) is outside the grid.
template <typename Dtype>
__global__ void PassocForward(const int count, const Dtype* pixels,
    const Dtype* spixels, const Dtype* cells, const int channels,
    const int spatial, const int grid_h, const int grid_w, const Dtype scale,
    const Dtype invalid, Dtype* dist, int* bad_index) {
  CUDA_KERNEL_LOOP(index, count) {
    const int p = index % spatial;
    const int c = (index / spatial) % ssn::kNumNeighbours;
    const int n = index / spatial / ssn::kNumNeighbours;
    const int num_spixels = grid_h * grid_w;
    const int cell = read_cell(cells[n * spatial + p], num_spixels, bad_index);
    const int j = cell < 0 ? -1 : ssn::neighbour_index(cell, c, grid_h, grid_w);
    if (j < 0) {
      dist[index] = invalid;
      continue;
    }
    dist[index] = scale * ssn::squared_feature_distance(
        pixels + n * channels * spatial + p, spatial,
        spixels + n * channels * num_spixels + j, num_spixels, channels);
  }
}

// One thread per (n, k, p) of the pixel features:
// dF[k, p] = sum over valid c of 2 scale G[c, p] (F[k, p] - S[k, nb(p, c)]).
template <typename Dtype>
__global__ void PassocBackwardPixels(const int count, const Dtype* pixels,
    const Dtype* spixels, const Dtype* cells, const Dtype* dist_diff,
    const int channels, const int spatial, const int grid_h, const int grid_w,
    const Dtype twice_scale, Dtype* pixel_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int p = index % spatial;
    const int k = (index / spatial) % channels;
    const int n = index / spatial / channels;
    const int num_spixels = grid_h * grid_w;
    const int cell = read_cell(cells[n * spatial + p], num_spixels,
                               static_cast<int*>(NULL));
    const Dtype f = pixels[index];
    const Dtype* g = dist_diff + n * ssn::kNumNeighbours * spatial + p;
    const Dtype* s = spixels + (n * channels + k) * num_spixels;
    Dtype diff = 0;
    for (int c = 0; cell >= 0 && c < ssn::kNumNeighbours; ++c) {
      const int j = ssn::neighbour_index(cell, c, grid_h, grid_w);
      if (j >= 0) diff += twice_scale * g[c * spatial] * (f - s[j]);
    }
    pixel_diff[index] = diff;
  }
}

// One thread per (n, y, c, k): scans image row y, sums
// -2 scale G[c, p] (F[k, p] - S[k, j]) over each run of pixels whose
// neighbour c is the same superpixel j, and adds each run's sum into
// dS[k, j] (one atomicAdd per run).
template <typename Dtype>
__global__ void PassocBackwardSpixels(const int count, const Dtype* pixels,
    const Dtype* spixels, const Dtype* cells, const Dtype* dist_diff,
    const int channels, const int height, const int width, const int grid_h,
    const int grid_w, const Dtype twice_scale, Dtype* spixel_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int k = index % channels;
    const int c = (index / channels) % ssn::kNumNeighbours;
    const int y = (index / channels / ssn::kNumNeighbours) % height;
    const int n = index / channels / ssn::kNumNeighbours / height;
    const int spatial = height * width, num_spixels = grid_h * grid_w;
    const Dtype* cell_row = cells + n * spatial + y * width;
    const Dtype* f = pixels + (n * channels + k) * spatial + y * width;
    const Dtype* g = dist_diff + (n * ssn::kNumNeighbours + c) * spatial +
                     y * width;
    const Dtype* s = spixels + (n * channels + k) * num_spixels;
    Dtype* ds = spixel_diff + (n * channels + k) * num_spixels;
    int run_cell = -1, j = -1;
    Dtype run_sum = 0;
    for (int x = 0; x < width; ++x) {
      const int cell = read_cell(cell_row[x], num_spixels,
                                 static_cast<int*>(NULL));
      if (cell != run_cell) {
        if (j >= 0) atomicAdd(ds + j, run_sum);
        run_cell = cell;
        j = cell < 0 ? -1 : ssn::neighbour_index(cell, c, grid_h, grid_w);
        run_sum = 0;
      }
      if (j >= 0) run_sum -= twice_scale * g[x] * (f[x] - s[j]);
    }
    if (j >= 0) atomicAdd(ds + j, run_sum);
  }
}

template <typename Dtype>
void PassocLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
                                     const vector<Blob<Dtype>*>& top) {
  const int count = top[0]->count();
  int* bad_index = ssn::reset_index_flag(&bad_index_);
  // NOLINT_NEXT_LINE(whitespace/operators)
  PassocForward<Dtype><<<ssn::gpu_blocks(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, bottom[0]->gpu_data(), bottom[1]->gpu_data(),
      bottom[2]->gpu_data(), bottom[0]->channels(), bottom[0]->count(2),
      grid_h_, grid_w_, scale_, scale_ * invalid_distance_,
      top[0]->mutable_gpu_data(), bad_index);
  CUDA_POST_KERNEL_CHECK;
  if (ssn::index_flag_raised(bad_index_)) {
    Forward_cpu(bottom, top);  // dies naming the out-of-range cell
    LOG(FATAL) << "Passoc '" << this->layer_param_.name()
               << "': the cell map holds an id outside [0, "
               << grid_h_ * grid_w_ << ")";
  }
}

// Out-of-range cells were reported by the forward pass; here they are skipped.
template <typename Dtype>
void PassocLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  CHECK(!propagate_down[2]) << "Passoc '" << this->layer_param_.name()
                            << "': cannot backpropagate to the cell map";
  if (!propagate_down[0] && !propagate_down[1]) return;
  const int num = bottom[0]->num(), channels = bottom[0]->channels();
  const int height = bottom[0]->height(), width = bottom[0]->width();
  const Dtype twice_scale = 2 * scale_;
  const int pixel_count = bottom[0]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  PassocBackwardPixels<Dtype><<<ssn::gpu_blocks(pixel_count),
                                CAFFE_CUDA_NUM_THREADS>>>(
      pixel_count, bottom[0]->gpu_data(), bottom[1]->gpu_data(),
      bottom[2]->gpu_data(), top[0]->gpu_diff(), channels, height * width,
      grid_h_, grid_w_, twice_scale, bottom[0]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
  caffe_gpu_set(bottom[1]->count(), Dtype(0), bottom[1]->mutable_gpu_diff());
  const int rows = num * height * ssn::kNumNeighbours * channels;
  // NOLINT_NEXT_LINE(whitespace/operators)
  PassocBackwardSpixels<Dtype><<<ssn::gpu_blocks(rows),
                                 CAFFE_CUDA_NUM_THREADS>>>(
      rows, bottom[0]->gpu_data(), bottom[1]->gpu_data(),
      bottom[2]->gpu_data(), top[0]->gpu_diff(), channels, height, width,
      grid_h_, grid_w_, twice_scale, bottom[1]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(PassocLayer);

}  // namespace caffe
