// CUDA forward and backward of LossWithoutSoftmax
// (see loss_without_softmax_layer.hpp).
#include <algorithm>
#include <cfloat>
#include <vector>

#include "caffe/layers/loss_without_softmax_layer.hpp"
#include "caffe/ssn/normalised_nll.hpp"
#include "caffe/ssn/ssn_gpu_util.cuh"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// Label of flat position i * inner_num + p, or -1 when ignored; a label
// outside [0, num_classes) raises the flag and also gives -1.
template <typename Dtype>
__device__ __forceinline__ int loss_label(const Dtype* labels, int position,
    bool has_ignore_label, int ignore_label, int num_classes,
    int* bad_label) {
  const int label = static_cast<int>(labels[position]);
  if (has_ignore_label && label == ignore_label) return -1;
  if (label < 0 || label >= num_classes) {
    if (bad_label != NULL) ssn::raise_index_flag(bad_label);
    return -1;
  }
  return label;
}

// One block of ssn::kSumThreads threads: totals[0] = -sum of
// log(max(P[label], FLT_MIN)) over valid positions (in double, as on the
// CPU), totals[1] = the number of valid positions.
template <typename Dtype>
__global__ void LossWithoutSoftmaxSums(const int count, const Dtype* prob,
    const Dtype* labels, const int num_classes, const int inner_num,
    const bool has_ignore_label, const int ignore_label, double* totals,
    int* bad_label) {
  double loss = 0, valid = 0;
  for (int position = threadIdx.x; position < count;
       position += blockDim.x) {
    const int label = loss_label(labels, position, has_ignore_label,
                                 ignore_label, num_classes, bad_label);
    if (label < 0) continue;
    const int i = position / inner_num, p = position % inner_num;
    const double value = prob[(i * num_classes + label) * inner_num + p];
    loss -= log(max(value, static_cast<double>(FLT_MIN)));
    valid += 1;
  }
  loss = ssn::block_sum(loss);
  valid = ssn::block_sum(valid);
  if (threadIdx.x == 0) {
    totals[0] = loss;
    totals[1] = valid;
  }
}

// One thread per position: dP[label] = -1 / max(P[label], FLT_MIN) * scale
// for valid positions. The other entries of dP must be zero already.
template <typename Dtype>
__global__ void LossWithoutSoftmaxBackward(const int count, const Dtype* prob,
    const Dtype* labels, const int num_classes, const int inner_num,
    const bool has_ignore_label, const int ignore_label, const Dtype scale,
    Dtype* diff) {
  CUDA_KERNEL_LOOP(position, count) {
    const int label = loss_label(labels, position, has_ignore_label,
                                 ignore_label, num_classes,
                                 static_cast<int*>(NULL));
    if (label < 0) continue;
    const int i = position / inner_num, p = position % inner_num;
    const int at = (i * num_classes + label) * inner_num + p;
    diff[at] = -1 / max(prob[at], static_cast<Dtype>(FLT_MIN)) * scale;
  }
}

// The normalise option's forward sums are spread over at most this many
// blocks; a fixed grid keeps the order of the sums, hence the bits, fixed.
const int kMaxSumBlocks = 256;

// Blocks of ssn::kSumThreads threads over the positions (grid-stride):
// block b writes partials[2b] = its sum of -log(max(p_label, FLT_MIN)) with p
// normalised per position (caffe/ssn/normalised_nll.hpp) and partials[2b + 1] its
// number of valid positions.
template <typename Dtype>
__global__ void NormalisedLossPartials(const int count, const Dtype* values,
    const Dtype* labels, const int num_classes, const int inner_num,
    const float shift, const float sum_shift, const bool has_ignore_label,
    const int ignore_label, double* partials, int* bad_label) {
  double loss = 0, valid = 0;
  for (int position = blockIdx.x * blockDim.x + threadIdx.x; position < count;
       position += blockDim.x * gridDim.x) {
    const int label = loss_label(labels, position, has_ignore_label,
                                 ignore_label, num_classes, bad_label);
    if (label < 0) continue;
    const int i = position / inner_num, p = position % inner_num;
    const Dtype* x = values + i * num_classes * inner_num + p;
    const double denominator = ssn::class_sum_denominator(
        x, num_classes, inner_num, shift, sum_shift);
    const double s_label = ssn::shifted_value(x[label * inner_num], shift);
    loss += ssn::normalised_nll(s_label, denominator);
    valid += 1;
  }
  loss = ssn::block_sum(loss);
  valid = ssn::block_sum(valid);
  if (threadIdx.x == 0) {
    partials[2 * blockIdx.x] = loss;
    partials[2 * blockIdx.x + 1] = valid;
  }
}

// One block of ssn::kSumThreads threads: totals[k] = sum_b partials[2b + k],
// k = 0, 1, for num_blocks blocks.
__global__ void SumPairs(const int num_blocks, const double* partials,
                         double* totals) {
  double loss = 0, valid = 0;
  for (int b = threadIdx.x; b < num_blocks; b += blockDim.x) {
    loss += partials[2 * b];
    valid += partials[2 * b + 1];
  }
  loss = ssn::block_sum(loss);
  valid = ssn::block_sum(valid);
  if (threadIdx.x == 0) {
    totals[0] = loss;
    totals[1] = valid;
  }
}

// One thread per position: every class's entry of the gradient of the
// normalised loss, times scale (zero at ignored positions).
template <typename Dtype>
__global__ void NormalisedLossBackward(const int count, const Dtype* values,
    const Dtype* labels, const int num_classes, const int inner_num,
    const float shift, const float sum_shift, const bool has_ignore_label,
    const int ignore_label, const double scale, Dtype* diff) {
  CUDA_KERNEL_LOOP(position, count) {
    const int label = loss_label(labels, position, has_ignore_label,
                                 ignore_label, num_classes,
                                 static_cast<int*>(NULL));
    const int i = position / inner_num, p = position % inner_num;
    const int offset = i * num_classes * inner_num + p;
    const Dtype* x = values + offset;
    ssn::NormalisedNllGradient terms;
    terms.label_term = terms.sum_term = 0;
    if (label >= 0) {
      const double denominator = ssn::class_sum_denominator(
          x, num_classes, inner_num, shift, sum_shift);
      const double s_label = ssn::shifted_value(x[label * inner_num], shift);
      terms = ssn::normalised_nll_gradient(s_label, denominator, scale);
    }
    for (int c = 0; c < num_classes; ++c) {
      double value = ssn::shifted_value(x[c * inner_num], shift) > 0
                         ? terms.sum_term : 0;
      if (c == label) value += terms.label_term;
      diff[offset + c * inner_num] = static_cast<Dtype>(value);
    }
  }
}

template <typename Dtype>
void LossWithoutSoftmaxLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const int count = outer_num_ * inner_num_;
  if (normalize_) {
    const int blocks = std::min(kMaxSumBlocks,
        std::max(1, (count + ssn::kSumThreads - 1) / ssn::kSumThreads));
    totals_.Reshape(vector<int>(1, 2 * (blocks + 1)));
    double* partials = totals_.mutable_gpu_data();
    int* bad_label = ssn::reset_index_flag(&bad_index_);
    // NOLINT_NEXT_LINE(whitespace/operators)
    NormalisedLossPartials<Dtype><<<blocks, ssn::kSumThreads>>>(
        count, bottom[0]->gpu_data(), bottom[1]->gpu_data(), num_classes_,
        inner_num_, shift_, sum_shift_, has_ignore_label_, ignore_label_,
        partials, bad_label);
    CUDA_POST_KERNEL_CHECK;
    // NOLINT_NEXT_LINE(whitespace/operators)
    SumPairs<<<1, ssn::kSumThreads>>>(blocks, partials, partials + 2 * blocks);
    CUDA_POST_KERNEL_CHECK;
    if (ssn::index_flag_raised(bad_index_)) {
      Forward_cpu(bottom, top);  // dies naming the out-of-range label
      LOG(FATAL) << "LossWithoutSoftmax '" << this->layer_param_.name()
                 << "': a label is outside [0, " << num_classes_ << ")";
    }
    const double* totals = totals_.cpu_data() + 2 * blocks;
    top[0]->mutable_cpu_data()[0] =
        totals[0] / Normaliser(static_cast<int>(totals[1]));
    return;
  }
  totals_.Reshape(vector<int>(1, 2));
  int* bad_label = ssn::reset_index_flag(&bad_index_);
  // NOLINT_NEXT_LINE(whitespace/operators)
  LossWithoutSoftmaxSums<Dtype><<<1, ssn::kSumThreads>>>(
      count, bottom[0]->gpu_data(), bottom[1]->gpu_data(), num_classes_,
      inner_num_, has_ignore_label_, ignore_label_,
      totals_.mutable_gpu_data(), bad_label);
  CUDA_POST_KERNEL_CHECK;
  if (ssn::index_flag_raised(bad_index_)) {
    Forward_cpu(bottom, top);  // dies naming the out-of-range label
    LOG(FATAL) << "LossWithoutSoftmax '" << this->layer_param_.name()
               << "': a label is outside [0, " << num_classes_ << ")";
  }
  const double* totals = totals_.cpu_data();
  top[0]->mutable_cpu_data()[0] =
      totals[0] / Normaliser(static_cast<int>(totals[1]));
}

// Labels out of range were reported by the forward pass; here they are
// skipped.
template <typename Dtype>
void LossWithoutSoftmaxLayer<Dtype>::Backward_gpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  CHECK(!propagate_down[1]) << "LossWithoutSoftmax '"
                            << this->layer_param_.name()
                            << "': cannot backpropagate to the labels";
  if (!propagate_down[0]) return;
  const int count = outer_num_ * inner_num_;
  // The valid count, as the CPU backward recounts it.
  totals_.Reshape(vector<int>(1, 2));
  // NOLINT_NEXT_LINE(whitespace/operators)
  LossWithoutSoftmaxSums<Dtype><<<1, ssn::kSumThreads>>>(
      count, bottom[0]->gpu_data(), bottom[1]->gpu_data(), num_classes_,
      inner_num_, has_ignore_label_, ignore_label_,
      totals_.mutable_gpu_data(), static_cast<int*>(NULL));
  CUDA_POST_KERNEL_CHECK;
  const Dtype scale = top[0]->cpu_diff()[0] /
                      Normaliser(static_cast<int>(totals_.cpu_data()[1]));
  Dtype* diff = bottom[0]->mutable_gpu_diff();
  if (normalize_) {  // writes every entry of diff
    // NOLINT_NEXT_LINE(whitespace/operators)
    NormalisedLossBackward<Dtype><<<ssn::gpu_blocks(count),
                                    CAFFE_CUDA_NUM_THREADS>>>(
        count, bottom[0]->gpu_data(), bottom[1]->gpu_data(), num_classes_,
        inner_num_, shift_, sum_shift_, has_ignore_label_, ignore_label_,
        scale, diff);
    CUDA_POST_KERNEL_CHECK;
    return;
  }
  caffe_gpu_set(bottom[0]->count(), Dtype(0), diff);
  // NOLINT_NEXT_LINE(whitespace/operators)
  LossWithoutSoftmaxBackward<Dtype><<<ssn::gpu_blocks(count),
                                      CAFFE_CUDA_NUM_THREADS>>>(
      count, bottom[0]->gpu_data(), bottom[1]->gpu_data(), num_classes_,
      inner_num_, has_ignore_label_, ignore_label_, scale, diff);
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(LossWithoutSoftmaxLayer);

}  // namespace caffe
