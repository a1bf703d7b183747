// C++ tests of the Smear layer (docs/LAYERS.md#smear).
#include <vector>

#include "gtest/gtest.h"

#include "caffe/layers/smear_layer.hpp"
#include "caffe/test/test_gradient_check_util.hpp"
#include "caffe/test/test_ssn_util.hpp"

namespace caffe {

template <typename TypeParam>
class SmearLayerTest : public SsnLayerTest<TypeParam> {};

TYPED_TEST_CASE(SmearLayerTest, TestDtypesAndDevices);

TYPED_TEST(SmearLayerTest, GathersAndIgnores) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> ids(1, 1, 1, 3);
  const Dtype labels[] = {2, -1, 0};
  caffe_copy(3, labels, ids.mutable_cpu_data());
  Blob<Dtype> values(1, 3, 1, 6);
  FillGaussian(&values);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&values);
  bottom.push_back(&ids);
  SmearLayer<Dtype> layer((LayerParameter()));
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(this->top_->data_at(0, c, 0, 0), values.data_at(0, c, 0, 2));
    EXPECT_EQ(this->top_->data_at(0, c, 0, 1), -1000);
    EXPECT_EQ(this->top_->data_at(0, c, 0, 2), values.data_at(0, c, 0, 0));
  }
}

TYPED_TEST(SmearLayerTest, Gradient) {
  typedef typename TypeParam::Dtype Dtype;
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(this->spixels_);
  bottom.push_back(this->cells_);
  SmearLayer<Dtype> layer((LayerParameter()));
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
}

}  // namespace caffe
