// C++ tests of the LossWithoutSoftmax layer (docs/LAYERS.md#losswithoutsoftmax).
#include <algorithm>
#include <cmath>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/layers/loss_without_softmax_layer.hpp"
#include "caffe/layers/softmax_layer.hpp"
#include "caffe/test/test_gradient_check_util.hpp"
#include "caffe/test/test_ssn_util.hpp"

namespace caffe {

template <typename TypeParam>
class LossWithoutSoftmaxLayerTest : public SsnLayerTest<TypeParam> {};

TYPED_TEST_CASE(LossWithoutSoftmaxLayerTest, TestDtypesAndDevices);

TYPED_TEST(LossWithoutSoftmaxLayerTest, ValueAndGradient) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> prob(2, 4, 3, 5), labels(2, 1, 3, 5);
  FillUniform(&prob, Dtype(0.2), Dtype(1));
  for (int i = 0; i < labels.count(); ++i) {
    labels.mutable_cpu_data()[i] = i % 5 == 4 ? 255 : i % 4;  // some ignored
  }
  LayerParameter param;
  param.mutable_loss_param()->set_ignore_label(255);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&prob);
  bottom.push_back(&labels);
  LossWithoutSoftmaxLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  double expected = 0;
  int valid = 0;
  for (int n = 0; n < 2; ++n) {
    for (int p = 0; p < 15; ++p) {
      const int label = labels.cpu_data()[n * 15 + p];
      if (label == 255) continue;
      expected -= std::log(prob.data_at(n, label, p / 5, p % 5));
      ++valid;
    }
  }
  EXPECT_NEAR(this->top_->cpu_data()[0], expected / valid, 1e-5);
  GradientChecker<Dtype> checker(1e-3, 2e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
}

// The normalise option: each position's values x (some below -shift, outside
// the class sum) become p_c = (x_c + shift) / (sum_c max(x_c + shift, 0) +
// sum_shift) before the log; 3 classes, odd sizes, some labels ignored.
TYPED_TEST(LossWithoutSoftmaxLayerTest, NormalizeValueAndGradient) {
  typedef typename TypeParam::Dtype Dtype;
  const int num = 2, classes = 3, height = 3, width = 5, spatial = 15;
  const double shift = 0.125, sum_shift = 0.25;
  Blob<Dtype> values(num, classes, height, width), labels(num, 1, height, width);
  FillUniform(&values, Dtype(-0.5), Dtype(1));
  for (int i = 0; i < labels.count(); ++i) {
    const int label = i % 3;
    labels.mutable_cpu_data()[i] = i % 5 == 4 ? 255 : label;
    // The label's own value stays clear of the clamp (p <= 0).
    Dtype* own = values.mutable_cpu_data() + (i / spatial * classes + label) *
                 spatial + i % spatial;
    *own = std::fabs(*own) + Dtype(0.1);
  }
  LayerParameter param;
  param.mutable_loss_param()->set_ignore_label(255);
  LossWithoutSoftmaxParameter* option =
      param.mutable_loss_without_softmax_param();
  option->set_normalize(true);
  option->set_shift(shift);
  option->set_sum_shift(sum_shift);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&values);
  bottom.push_back(&labels);
  LossWithoutSoftmaxLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  double expected = 0;
  int valid = 0;
  for (int n = 0; n < num; ++n) {
    for (int p = 0; p < spatial; ++p) {
      const int label = labels.cpu_data()[n * spatial + p];
      if (label == 255) continue;
      double sum = sum_shift;
      for (int c = 0; c < classes; ++c) {
        sum += std::max(0.0, values.data_at(n, c, p / width, p % width) + shift);
      }
      expected -= std::log((values.data_at(n, label, p / width, p % width) +
                            shift) / sum);
      ++valid;
    }
  }
  EXPECT_NEAR(this->top_->cpu_data()[0], expected / valid, 1e-5);
  GradientChecker<Dtype> checker(1e-3, 2e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
}

TYPED_TEST(LossWithoutSoftmaxLayerTest, NormalizeRefusesBadShifts) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> values(1, 2, 2, 2), labels(1, 1, 2, 2);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&values);
  bottom.push_back(&labels);
  const float bad_sum_shifts[] = {0, -1e-12f, INFINITY};
  for (int i = 0; i < 3; ++i) {
    LayerParameter param;
    param.set_name("loss3");
    param.mutable_loss_without_softmax_param()->set_normalize(true);
    param.mutable_loss_without_softmax_param()->set_sum_shift(bad_sum_shifts[i]);
    LossWithoutSoftmaxLayer<Dtype> layer(param);
    EXPECT_DEATH(layer.SetUp(bottom, this->top_vec_),
                 "'loss3': sum_shift must be positive and finite");
  }
}

}  // namespace caffe
