// CUDA forward and backward of ConcatConvolution (see
// concat_convolution_layer.hpp): the parts are Caffe's (or cuDNN's)
// convolutions; here are the weight slices, the sum and the ReLU.
#include <vector>

#include "caffe/layers/concat_convolution_layer.hpp"
#include "caffe/ssn/ssn_gpu_util.cuh"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// One thread per weight of a part: part[m, r] = weights[m, offset + r] with
// rows of part_row values in the part and of row values in the weights.
template <typename Dtype>
__global__ void CopyWeightSlice(const int count, const Dtype* weights,
    const int row, const int offset, const int part_row, Dtype* part) {
  CUDA_KERNEL_LOOP(index, count) {
    const int m = index / part_row, r = index % part_row;
    part[index] = weights[m * row + offset + r];
  }
}

// One thread per weight of a part: its diff added into the weights' diff
// (each weight belongs to one part: no two threads add to one value) and
// zeroed.
template <typename Dtype>
__global__ void MoveWeightDiffSlice(const int count, Dtype* part_diff,
    const int row, const int offset, const int part_row,
    Dtype* weight_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int m = index / part_row, r = index % part_row;
    weight_diff[m * row + offset + r] += part_diff[index];
    part_diff[index] = 0;
  }
}

// max(x, 0), as ReLU's own GPU kernel with negative_slope 0 computes it.
template <typename Dtype>
__global__ void ConcatConvolutionReLU(const int count, Dtype* data) {
  CUDA_KERNEL_LOOP(index, count) {
    data[index] = data[index] > 0 ? data[index] : data[index] * Dtype(0);
  }
}

template <typename Dtype>
void ConcatConvolutionLayer<Dtype>::CopyWeightsToParts_gpu() {
  const int row = this->blobs_[0]->count(1), taps = KernelSize();
  for (int i = 0; i < parts_.size(); ++i) {
    Blob<Dtype>* part = parts_[i]->blobs()[0].get();
    const int count = part->count();
    // NOLINT_NEXT_LINE(whitespace/operators)
    CopyWeightSlice<Dtype><<<ssn::gpu_blocks(count), CAFFE_CUDA_NUM_THREADS>>>(
        count, this->blobs_[0]->gpu_data(), row, offsets_[i] * taps,
        channels_[i] * taps, part->mutable_gpu_data());
    CUDA_POST_KERNEL_CHECK;
  }
}

template <typename Dtype>
void ConcatConvolutionLayer<Dtype>::MovePartWeightDiffs_gpu() {
  if (!this->param_propagate_down(0)) return;
  const int row = this->blobs_[0]->count(1), taps = KernelSize();
  for (int i = 0; i < parts_.size(); ++i) {
    Blob<Dtype>* part = parts_[i]->blobs()[0].get();
    const int count = part->count();
    // NOLINT_NEXT_LINE(whitespace/operators)
    MoveWeightDiffSlice<Dtype><<<ssn::gpu_blocks(count),
                                 CAFFE_CUDA_NUM_THREADS>>>(
        count, part->mutable_gpu_diff(), row, offsets_[i] * taps,
        channels_[i] * taps, this->blobs_[0]->mutable_gpu_diff());
    CUDA_POST_KERNEL_CHECK;
  }
}

template <typename Dtype>
void ConcatConvolutionLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  CopyWeightsToParts_gpu();
  for (int i = 0; i < parts_.size(); ++i) {
    ForwardPart(i, bottom[i]);
    if (i > 0) {
      caffe_gpu_axpy(top[0]->count(), Dtype(1), scratch_.gpu_data(),
                     top[0]->mutable_gpu_data());
    }
  }
  if (relu_output()) {
    const int count = top[0]->count();
    // NOLINT_NEXT_LINE(whitespace/operators)
    ConcatConvolutionReLU<Dtype><<<ssn::gpu_blocks(count),
                                   CAFFE_CUDA_NUM_THREADS>>>(
        count, top[0]->mutable_gpu_data());
    CUDA_POST_KERNEL_CHECK;
  }
}

template <typename Dtype>
void ConcatConvolutionLayer<Dtype>::Backward_gpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  RefuseBackwardAfterReLU();
  BackwardParts(propagate_down, bottom);
  MovePartWeightDiffs_gpu();
}

INSTANTIATE_LAYER_GPU_FUNCS(ConcatConvolutionLayer);

}  // namespace caffe
