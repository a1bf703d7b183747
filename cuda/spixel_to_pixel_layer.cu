// CUDA forward and backward of SpixelToPixel (see spixel_to_pixel_layer.hpp).
//
// The forward and dQ are gathers, one thread per output value. dS is the
// scatter sum_p G[k, p] Q[i, p] into S[k, nb(p, i)]: SpixelFeature2's forward
// sums with G in place of the features, so ssn::AssociationSums
// (ssn_gpu_util.cuh) computes it with one atomicAdd per run of equal cell
// along a row (its association totals W go to a scratch blob).
#include <vector>

#include "caffe/layers/spixel_to_pixel_layer.hpp"
#include "caffe/ssn/math.hpp"
#include "caffe/ssn/ssn_gpu_util.cuh"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// One thread per (n, k, p) of the N x C x H x W top:
// sum over valid i of Q[i, p] S[k, nb(p, i)]. A cell outside [0, K) raises
// the flag and gives 0.
template <typename Dtype>
__global__ void SpixelToPixelForward(const int count, const Dtype* spixels,
    const Dtype* assoc, const Dtype* cells, const int channels,
    const int spatial, const int grid_h, const int grid_w, Dtype* top,
    int* bad_index) {
  CUDA_KERNEL_LOOP(index, count) {
    const int p = index % spatial;
    const int k = (index / spatial) % channels;
    const int n = index / spatial / channels;
    const int num_spixels = grid_h * grid_w;
    const int cell = ssn::index_value(cells[n * spatial + p]);
    Dtype value = 0;
    if (cell < 0 || cell >= num_spixels) {
      ssn::raise_index_flag(bad_index);
    } else {
      const Dtype* q = assoc + n * ssn::kNumNeighbours * spatial + p;
      const Dtype* s = spixels + (n * channels + k) * num_spixels;
      for (int i = 0; i < ssn::kNumNeighbours; ++i) {
        const int j = ssn::neighbour_index(cell, i, grid_h, grid_w);
        if (j >= 0) value += q[i * spatial] * s[j];
      }
    }
    top[index] = value;
  }
}

// One thread per (n, i, p) of the N x 9 x H x W associations:
// dQ[i, p] = sum_k G[k, p] S[k, nb(p, i)], 0 for an invalid i or a bad cell.
template <typename Dtype>
__global__ void SpixelToPixelBackwardAssoc(const int count,
    const Dtype* spixels, const Dtype* cells, const Dtype* top_diff,
    const int channels, const int spatial, const int grid_h, const int grid_w,
    Dtype* assoc_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int p = index % spatial;
    const int i = (index / spatial) % ssn::kNumNeighbours;
    const int n = index / spatial / ssn::kNumNeighbours;
    const int num_spixels = grid_h * grid_w;
    const int cell = ssn::index_value(cells[n * spatial + p]);
    const int j = cell < 0 || cell >= num_spixels
        ? -1 : ssn::neighbour_index(cell, i, grid_h, grid_w);
    Dtype diff = 0;
    if (j >= 0) {
      const Dtype* g = top_diff + n * channels * spatial + p;
      const Dtype* s = spixels + n * channels * num_spixels + j;
      for (int k = 0; k < channels; ++k) {
        diff += g[k * spatial] * s[k * num_spixels];
      }
    }
    assoc_diff[index] = diff;
  }
}

template <typename Dtype>
void SpixelToPixelLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const int count = top[0]->count();
  int* bad_index = ssn::reset_index_flag(&bad_index_);
  // NOLINT_NEXT_LINE(whitespace/operators)
  SpixelToPixelForward<Dtype><<<ssn::gpu_blocks(count),
                                CAFFE_CUDA_NUM_THREADS>>>(
      count, bottom[0]->gpu_data(), bottom[1]->gpu_data(),
      bottom[2]->gpu_data(), top[0]->channels(), top[0]->count(2), grid_h_,
      grid_w_, top[0]->mutable_gpu_data(), bad_index);
  CUDA_POST_KERNEL_CHECK;
  if (ssn::index_flag_raised(bad_index_)) {
    Forward_cpu(bottom, top);  // dies naming the out-of-range cell
    LOG(FATAL) << "SpixelToPixel '" << this->layer_param_.name()
               << "': the cell map holds an id outside [0, "
               << grid_h_ * grid_w_ << ")";
  }
}

// Out-of-range cells were reported by the forward pass; here they are skipped.
template <typename Dtype>
void SpixelToPixelLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  CHECK(!propagate_down[2]) << "SpixelToPixel '" << this->layer_param_.name()
                            << "': cannot backpropagate to the cell map";
  if (!propagate_down[0] && !propagate_down[1]) return;
  const int num = top[0]->num(), channels = top[0]->channels();
  const int height = top[0]->height(), width = top[0]->width();
  const int assoc_count = bottom[1]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  SpixelToPixelBackwardAssoc<Dtype><<<ssn::gpu_blocks(assoc_count),
                                      CAFFE_CUDA_NUM_THREADS>>>(
      assoc_count, bottom[0]->gpu_data(), bottom[2]->gpu_data(),
      top[0]->gpu_diff(), channels, height * width, grid_h_, grid_w_,
      bottom[1]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
  caffe_gpu_set(bottom[0]->count(), Dtype(0), bottom[0]->mutable_gpu_diff());
  caffe_gpu_set(weights_.count(), Dtype(0), weights_.mutable_gpu_data());
  int* bad_index = ssn::reset_index_flag(&bad_index_);  // already reported
  const int rows = num * height * ssn::kNumNeighbours * (channels + 1);
  // NOLINT_NEXT_LINE(whitespace/operators)
  ssn::AssociationSums<Dtype><<<ssn::gpu_blocks(rows),
                                 CAFFE_CUDA_NUM_THREADS>>>(
      rows, top[0]->gpu_diff(), bottom[1]->gpu_data(), bottom[2]->gpu_data(),
      channels, height, width, grid_h_, grid_w_, bottom[0]->mutable_gpu_diff(),
      weights_.mutable_gpu_data(), bad_index);
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(SpixelToPixelLayer);

}  // namespace caffe
