#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "caffe/layers/loss_without_softmax_layer.hpp"
#include "caffe/ssn/normalised_nll.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

using ssn::kMinProbability;

namespace {

// Positions per block of the normalise option's CPU loops: a block's
// C x kPositionBlock class values stay in cache from the class sums to their
// use, and each class row is read in order.
const int kPositionBlock = 256;

// Parallel loops only over blobs at least this large.
const int kMinParallelCount = 65536;

// denominators[q] = sum_c max(x[c * stride + q] + shift, 0) + sum_shift for
// q < size, summed over c in order (as ssn::class_sum_denominator does).
template <typename Dtype>
void BlockDenominators(const Dtype* x, int num_classes, int stride, int size,
                       float shift, float sum_shift, double* denominators) {
  std::fill(denominators, denominators + size, 0.0);
  for (int c = 0; c < num_classes; ++c) {
    const Dtype* row = x + c * stride;
    for (int q = 0; q < size; ++q) {
      denominators[q] += ssn::positive_part(ssn::shifted_value(row[q], shift));
    }
  }
  for (int q = 0; q < size; ++q) denominators[q] += sum_shift;
}

}  // namespace

template <typename Dtype>
void LossWithoutSoftmaxLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                                                const vector<Blob<Dtype>*>& top) {
  LossLayer<Dtype>::LayerSetUp(bottom, top);
  const LossParameter& param = this->layer_param_.loss_param();
  has_ignore_label_ = param.has_ignore_label();
  ignore_label_ = param.ignore_label();
  if (!param.has_normalization() && param.has_normalize()) {
    normalization_ = param.normalize() ? LossParameter_NormalizationMode_VALID
                                       : LossParameter_NormalizationMode_BATCH_SIZE;
  } else {
    normalization_ = param.normalization();
  }
  const LossWithoutSoftmaxParameter& option =
      this->layer_param_.loss_without_softmax_param();
  normalize_ = option.normalize();
  shift_ = option.shift();
  sum_shift_ = option.sum_shift();
  CHECK(std::isfinite(shift_)) << "LossWithoutSoftmax '"
      << this->layer_param_.name() << "': shift must be finite, got " << shift_;
  CHECK(std::isfinite(sum_shift_) && sum_shift_ > 0) << "LossWithoutSoftmax '"
      << this->layer_param_.name()
      << "': sum_shift must be positive and finite, got " << sum_shift_;
}

template <typename Dtype>
void LossWithoutSoftmaxLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
                                             const vector<Blob<Dtype>*>& top) {
  LossLayer<Dtype>::Reshape(bottom, top);
  axis_ = bottom[0]->CanonicalAxisIndex(this->layer_param_.softmax_param().axis());
  outer_num_ = bottom[0]->count(0, axis_);
  inner_num_ = bottom[0]->count(axis_ + 1);
  num_classes_ = bottom[0]->shape(axis_);
  CHECK_EQ(outer_num_ * inner_num_, bottom[1]->count())
      << "LossWithoutSoftmax '" << this->layer_param_.name()
      << "': the label count must equal the probability count without the class "
         "axis (N*H*W)";
}

template <typename Dtype>
int LossWithoutSoftmaxLayer<Dtype>::LabelAt(const Dtype* labels, int i, int p) const {
  const int label = static_cast<int>(labels[i * inner_num_ + p]);
  if (has_ignore_label_ && label == ignore_label_) return -1;
  if (label < 0 || label >= num_classes_) {
    LOG(FATAL) << "LossWithoutSoftmax '" << this->layer_param_.name()
               << "': label " << label << " at position " << i * inner_num_ + p
               << " is outside [0, " << num_classes_ << ")";
  }
  return label;
}

template <typename Dtype>
int LossWithoutSoftmaxLayer<Dtype>::ValidCount(const Dtype* labels) const {
  int valid_count = 0;
  for (int i = 0; i < outer_num_; ++i) {
    for (int p = 0; p < inner_num_; ++p) {
      if (LabelAt(labels, i, p) >= 0) ++valid_count;
    }
  }
  return valid_count;
}

template <typename Dtype>
Dtype LossWithoutSoftmaxLayer<Dtype>::Normaliser(int valid_count) const {
  double normaliser = 1;
  switch (normalization_) {
    case LossParameter_NormalizationMode_FULL:
      normaliser = outer_num_ * inner_num_;
      break;
    case LossParameter_NormalizationMode_VALID:
      normaliser = valid_count;
      break;
    case LossParameter_NormalizationMode_BATCH_SIZE:
      normaliser = outer_num_;
      break;
    case LossParameter_NormalizationMode_NONE:
      normaliser = 1;
      break;
    default:
      LOG(FATAL) << "unknown normalization mode";
  }
  return static_cast<Dtype>(std::max(1.0, normaliser));
}

// Labels must have been checked (ValidCount): LabelAt dies in a parallel
// region otherwise. Blocks are summed in order, so the result does not depend
// on the number of threads.
template <typename Dtype>
double LossWithoutSoftmaxLayer<Dtype>::NormalisedLossSum(
    const Dtype* values, const Dtype* labels) const {
  const int blocks_per_row = (inner_num_ + kPositionBlock - 1) / kPositionBlock;
  const int num_blocks = outer_num_ * blocks_per_row;
  const int count = outer_num_ * num_classes_ * inner_num_;
  vector<double> block_loss(num_blocks, 0.0);
#pragma omp parallel for schedule(static) if (count >= kMinParallelCount)
  for (int b = 0; b < num_blocks; ++b) {
    const int i = b / blocks_per_row, p0 = (b % blocks_per_row) * kPositionBlock;
    const int size = std::min(kPositionBlock, inner_num_ - p0);
    const Dtype* x = values + i * num_classes_ * inner_num_ + p0;
    double denominators[kPositionBlock];
    BlockDenominators(x, num_classes_, inner_num_, size, shift_, sum_shift_,
                      denominators);
    double loss = 0;
    for (int q = 0; q < size; ++q) {
      const int label = LabelAt(labels, i, p0 + q);
      if (label < 0) continue;
      const double s_label = ssn::shifted_value(x[label * inner_num_ + q], shift_);
      loss += ssn::normalised_nll(s_label, denominators[q]);
    }
    block_loss[b] = loss;
  }
  double total = 0;
  for (int b = 0; b < num_blocks; ++b) total += block_loss[b];
  return total;
}

// Writes every entry of diff (zero at ignored positions). Labels must have
// been checked, as for NormalisedLossSum.
template <typename Dtype>
void LossWithoutSoftmaxLayer<Dtype>::NormalisedGradient(
    const Dtype* values, const Dtype* labels, double scale, Dtype* diff) const {
  const int blocks_per_row = (inner_num_ + kPositionBlock - 1) / kPositionBlock;
  const int num_blocks = outer_num_ * blocks_per_row;
  const int count = outer_num_ * num_classes_ * inner_num_;
#pragma omp parallel for schedule(static) if (count >= kMinParallelCount)
  for (int b = 0; b < num_blocks; ++b) {
    const int i = b / blocks_per_row, p0 = (b % blocks_per_row) * kPositionBlock;
    const int size = std::min(kPositionBlock, inner_num_ - p0);
    const int offset = i * num_classes_ * inner_num_ + p0;
    const Dtype* x = values + offset;
    double denominators[kPositionBlock];
    BlockDenominators(x, num_classes_, inner_num_, size, shift_, sum_shift_,
                      denominators);
    int block_labels[kPositionBlock];
    ssn::NormalisedNllGradient terms[kPositionBlock];
    for (int q = 0; q < size; ++q) {
      block_labels[q] = LabelAt(labels, i, p0 + q);
      terms[q].label_term = terms[q].sum_term = 0;
      if (block_labels[q] < 0) continue;
      const double s_label =
          ssn::shifted_value(x[block_labels[q] * inner_num_ + q], shift_);
      terms[q] = ssn::normalised_nll_gradient(s_label, denominators[q], scale);
    }
    for (int c = 0; c < num_classes_; ++c) {
      const Dtype* row = x + c * inner_num_;
      Dtype* diff_row = diff + offset + c * inner_num_;
      for (int q = 0; q < size; ++q) {
        double value = ssn::shifted_value(row[q], shift_) > 0 ? terms[q].sum_term : 0;
        if (c == block_labels[q]) value += terms[q].label_term;
        diff_row[q] = static_cast<Dtype>(value);
      }
    }
  }
}

template <typename Dtype>
void LossWithoutSoftmaxLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
                                                 const vector<Blob<Dtype>*>& top) {
  const Dtype* prob = bottom[0]->cpu_data();
  const Dtype* labels = bottom[1]->cpu_data();
  if (normalize_) {
    const int valid_count = ValidCount(labels);
    top[0]->mutable_cpu_data()[0] =
        NormalisedLossSum(prob, labels) / Normaliser(valid_count);
    return;
  }
  const int class_stride = inner_num_;
  double loss = 0;
  int valid_count = 0;
  for (int i = 0; i < outer_num_; ++i) {
    for (int p = 0; p < inner_num_; ++p) {
      const int label = LabelAt(labels, i, p);
      if (label < 0) continue;
      const Dtype value = prob[(i * num_classes_ + label) * class_stride + p];
      loss -= std::log(std::max(static_cast<double>(value), kMinProbability));
      ++valid_count;
    }
  }
  top[0]->mutable_cpu_data()[0] = loss / Normaliser(valid_count);
}

template <typename Dtype>
void LossWithoutSoftmaxLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
                                                  const vector<bool>& propagate_down,
                                                  const vector<Blob<Dtype>*>& bottom) {
  CHECK(!propagate_down[1]) << "LossWithoutSoftmax '" << this->layer_param_.name()
                            << "': cannot backpropagate to the labels";
  if (!propagate_down[0]) return;
  const Dtype* prob = bottom[0]->cpu_data();
  const Dtype* labels = bottom[1]->cpu_data();
  Dtype* diff = bottom[0]->mutable_cpu_diff();
  if (normalize_) {
    const double scale = top[0]->cpu_diff()[0] / Normaliser(ValidCount(labels));
    NormalisedGradient(prob, labels, scale, diff);
    return;
  }
  caffe_set(bottom[0]->count(), Dtype(0), diff);
  int valid_count = 0;
  for (int i = 0; i < outer_num_; ++i) {
    for (int p = 0; p < inner_num_; ++p) {
      const int label = LabelAt(labels, i, p);
      if (label < 0) continue;
      const int at = (i * num_classes_ + label) * inner_num_ + p;
      diff[at] = -1 / std::max(prob[at], static_cast<Dtype>(kMinProbability));
      ++valid_count;
    }
  }
  caffe_scal(bottom[0]->count(), top[0]->cpu_diff()[0] / Normaliser(valid_count),
             diff);
}

#ifdef CPU_ONLY
STUB_GPU(LossWithoutSoftmaxLayer);
#endif

INSTANTIATE_CLASS(LossWithoutSoftmaxLayer);
REGISTER_LAYER_CLASS(LossWithoutSoftmax);

}  // namespace caffe
