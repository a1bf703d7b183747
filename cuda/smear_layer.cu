// CUDA forward and backward of Smear (see smear_layer.hpp).
#include <vector>

#include "caffe/layers/smear_layer.hpp"
#include "caffe/ssn/math.hpp"
#include "caffe/ssn/ssn_gpu_util.cuh"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// One thread per (n, c, p) of the N x C x H x W top: V[n, c, id(p)], or
// ignored for an ignored id. Threads of channel 0 also store the ids (-1:
// ignored, or out of [0, num_ids), which raises the flag).
template <typename Dtype>
__global__ void SmearForward(const int count, const Dtype* values,
    const Dtype* index_map, const int channels, const int spatial,
    const int num_ids, const float ignore_index, const Dtype ignored,
    Dtype* top, int* ids, int* bad_index) {
  CUDA_KERNEL_LOOP(index, count) {
    const int p = index % spatial;
    const int c = (index / spatial) % channels;
    const int n = index / spatial / channels;
    int id = ssn::index_value(index_map[n * spatial + p]);
    if (ssn::is_ignored_index(id, ignore_index)) {
      id = -1;
    } else if (id < 0 || id >= num_ids) {
      ssn::raise_index_flag(bad_index);
      id = -1;
    }
    if (c == 0) ids[n * spatial + p] = id;
    top[index] = id >= 0 ? values[(n * channels + c) * num_ids + id] : ignored;
  }
}

template <typename Dtype>
void SmearLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
                                    const vector<Blob<Dtype>*>& top) {
  const SmearParameter& param = this->layer_param_.smear_param();
  const int num_ids = bottom[0]->count(2), count = top[0]->count();
  gpu_ids_.Reshape(bottom[1]->shape());
  int* bad_index = ssn::reset_index_flag(&bad_index_);
  // NOLINT_NEXT_LINE(whitespace/operators)
  SmearForward<Dtype><<<ssn::gpu_blocks(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, bottom[0]->gpu_data(), bottom[1]->gpu_data(),
      top[0]->channels(), top[0]->count(2), num_ids, param.ignore_idx_value(),
      Dtype(param.ignore_feature_value()), top[0]->mutable_gpu_data(),
      gpu_ids_.mutable_gpu_data(), bad_index);
  CUDA_POST_KERNEL_CHECK;
  if (ssn::index_flag_raised(bad_index_)) {
    Forward_cpu(bottom, top);  // dies naming the out-of-range id
    LOG(FATAL) << "Smear '" << this->layer_param_.name()
               << "': the index map holds an id outside [0, " << num_ids
               << ")";
  }
}

template <typename Dtype>
void SmearLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  CHECK(!propagate_down[1]) << "Smear '" << this->layer_param_.name()
                            << "': cannot backpropagate to the index map";
  if (!propagate_down[0]) return;
  caffe_gpu_set(bottom[0]->count(), Dtype(0), bottom[0]->mutable_gpu_diff());
  const int rows = top[0]->num() * top[0]->channels() * top[0]->height();
  // NOLINT_NEXT_LINE(whitespace/operators)
  ssn::ScatterAddRowRuns<Dtype><<<ssn::gpu_blocks(rows),
                                 CAFFE_CUDA_NUM_THREADS>>>(
      rows, top[0]->gpu_diff(), gpu_ids_.gpu_data(), top[0]->channels(),
      top[0]->height(), top[0]->width(), bottom[0]->count(2),
      bottom[0]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(SmearLayer);

}  // namespace caffe
