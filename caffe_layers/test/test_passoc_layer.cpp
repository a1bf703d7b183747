// C++ tests of the Passoc layer (docs/LAYERS.md#passoc).
#include <vector>

#include "gtest/gtest.h"

#include "caffe/layers/passoc_layer.hpp"
#include "caffe/test/test_gradient_check_util.hpp"
#include "caffe/test/test_ssn_util.hpp"

namespace caffe {

template <typename TypeParam>
class PassocLayerTest : public SsnLayerTest<TypeParam> {};

TYPED_TEST_CASE(PassocLayerTest, TestDtypesAndDevices);

TYPED_TEST(PassocLayerTest, WorkedVector) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> features, cells(1, 1, 4, 6), spixels(1, 2, 1, 6);
  FillWorkedFeatures(&features);
  FillGridCells(&cells, 2, 3);
  const Dtype s0[] = {3.5, 5.5, 7.5, 15.5, 17.5, 19.5, 2, 6, 2.5, 6, 2.5, 4};
  caffe_copy(12, s0, spixels.mutable_cpu_data());
  LayerParameter param = this->GridParam(2, 3);
  param.mutable_spixel_feature2_param()->set_scale_value(-1);
  param.mutable_spixel_feature2_param()->set_invalid_distance(10000);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&features);
  bottom.push_back(&spixels);
  bottom.push_back(&cells);
  PassocLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  const double at_1_2[9] = {-10000, -10000, -10000, -36.25, -6.25, -12.5,
                            -56.25, -102.5, -136.25};
  const double at_0_0[9] = {-10000, -10000, -10000, -10000, -16.25, -66.25,
                            -10000, -276.25, -312.5};
  for (int c = 0; c < 9; ++c) {
    EXPECT_NEAR(this->top_->data_at(0, c, 1, 2), at_1_2[c], 1e-3);
    EXPECT_NEAR(this->top_->data_at(0, c, 0, 0), at_0_0[c], 1e-3);
  }
}

TYPED_TEST(PassocLayerTest, DefaultInvalidNeverWins) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param = this->GridParam(2, 3);
  param.mutable_spixel_feature2_param()->set_scale_value(-1);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(this->features_);
  bottom.push_back(this->spixels_);
  bottom.push_back(this->cells_);
  PassocLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  // Pixel (0, 0) lies in the top-left cell: channel 0 (up-left) is invalid.
  EXPECT_LE(this->top_->data_at(0, 0, 0, 0), -1e29);
  EXPECT_GT(this->top_->data_at(0, 4, 0, 0), -1e3);
}

TYPED_TEST(PassocLayerTest, Gradient) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param = this->GridParam(2, 3);
  param.mutable_spixel_feature2_param()->set_scale_value(-0.5);
  param.mutable_spixel_feature2_param()->set_invalid_distance(3);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(this->features_);
  bottom.push_back(this->spixels_);
  bottom.push_back(this->cells_);
  PassocLayer<Dtype> layer(param);
  GradientChecker<Dtype> checker(1e-2, 2e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 0);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 1);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 1);
}

}  // namespace caffe
