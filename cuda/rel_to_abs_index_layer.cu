// CUDA forward and backward of RelToAbsIndex (see rel_to_abs_index_layer.hpp).
#include <vector>

#include "caffe/layers/rel_to_abs_index_layer.hpp"
#include "caffe/ssn/math.hpp"
#include "caffe/ssn/ssn_gpu_util.cuh"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// One thread per pixel: the id of neighbour R(p) of cell init(p), clamped
// per axis to the grid. A channel outside [0, 9) or a cell outside [0, K)
// raises the flag and writes -1.
template <typename Dtype>
__global__ void RelToAbsIndexForward(const int count, const Dtype* relative,
    const Dtype* cells, const int grid_h, const int grid_w, Dtype* absolute,
    int* bad_index) {
  CUDA_KERNEL_LOOP(index, count) {
    const int c = ssn::index_value(relative[index]);
    const int cell = ssn::index_value(cells[index]);
    if (c < 0 || c >= ssn::kNumNeighbours || cell < 0 ||
        cell >= grid_h * grid_w) {
      ssn::raise_index_flag(bad_index);
      absolute[index] = -1;
      continue;
    }
    absolute[index] = ssn::neighbour_index_clamped(cell, c, grid_h, grid_w);
  }
}

template <typename Dtype>
void RelToAbsIndexLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const int count = bottom[0]->count();
  int* bad_index = ssn::reset_index_flag(&bad_index_);
  // NOLINT_NEXT_LINE(whitespace/operators)
  RelToAbsIndexForward<Dtype><<<ssn::gpu_blocks(count),
                                CAFFE_CUDA_NUM_THREADS>>>(
      count, bottom[0]->gpu_data(), bottom[1]->gpu_data(), grid_h_, grid_w_,
      top[0]->mutable_gpu_data(), bad_index);
  CUDA_POST_KERNEL_CHECK;
  if (ssn::index_flag_raised(bad_index_)) {
    Forward_cpu(bottom, top);  // dies naming the out-of-range value
    LOG(FATAL) << "RelToAbsIndex '" << this->layer_param_.name()
               << "': an input holds an out-of-range index";
  }
}

// The map is piecewise constant: zero diffs, as on the CPU.
template <typename Dtype>
void RelToAbsIndexLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  for (int i = 0; i < 2; ++i) {
    if (propagate_down[i]) {
      caffe_gpu_set(bottom[i]->count(), Dtype(0),
                    bottom[i]->mutable_gpu_diff());
    }
  }
}

INSTANTIATE_LAYER_GPU_FUNCS(RelToAbsIndexLayer);

}  // namespace caffe
