#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "caffe/layers/loss_without_softmax_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// The one clamp of the probabilities, in forward and backward alike.
const double kMinProbability = FLT_MIN;

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

template <typename Dtype>
void LossWithoutSoftmaxLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
                                                 const vector<Blob<Dtype>*>& top) {
  const Dtype* prob = bottom[0]->cpu_data();
  const Dtype* labels = bottom[1]->cpu_data();
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
