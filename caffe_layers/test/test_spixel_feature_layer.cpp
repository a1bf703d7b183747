// C++ tests of the SpixelFeature layer (docs/LAYERS.md#spixelfeature).
#include <vector>

#include "gtest/gtest.h"

#include "caffe/layers/spixel_feature_layer.hpp"
#include "caffe/test/test_gradient_check_util.hpp"
#include "caffe/test/test_ssn_util.hpp"

namespace caffe {

template <typename TypeParam>
class SpixelFeatureLayerTest : public SsnLayerTest<TypeParam> {};

TYPED_TEST_CASE(SpixelFeatureLayerTest, TestDtypesAndDevices);

TYPED_TEST(SpixelFeatureLayerTest, WorkedVector) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> features, cells(1, 1, 4, 6);
  FillWorkedFeatures(&features);
  FillGridCells(&cells, 2, 3);
  LayerParameter param;
  SpixelFeatureParameter* sf = param.mutable_spixel_feature_param();
  sf->set_type(SpixelFeatureParameter_Feature_AVGRGB);
  sf->set_max_spixels(6);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&features);
  bottom.push_back(&cells);
  SpixelFeatureLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  const double expected[2][6] = {{3.5, 5.5, 7.5, 15.5, 17.5, 19.5},
                                 {2, 6, 2.5, 6, 2.5, 4}};
  for (int k = 0; k < 2; ++k) {
    for (int j = 0; j < 6; ++j) {
      EXPECT_NEAR(this->top_->data_at(0, k, 0, j), expected[k][j], 1e-5);
    }
  }
}

TYPED_TEST(SpixelFeatureLayerTest, IgnoresAndMarksEmpty) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> features(1, 1, 1, 4), ids(1, 1, 1, 4);
  const Dtype values[] = {1, 2, 3, 4}, labels[] = {0, -10, 0, 2};
  caffe_copy(4, values, features.mutable_cpu_data());
  caffe_copy(4, labels, ids.mutable_cpu_data());
  LayerParameter param;
  SpixelFeatureParameter* sf = param.mutable_spixel_feature_param();
  sf->set_type(SpixelFeatureParameter_Feature_AVGRGB);
  sf->set_max_spixels(3);
  sf->set_ignore_idx_value(-10);
  sf->set_ignore_feature_value(255);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&features);
  bottom.push_back(&ids);
  this->top_vec_.push_back(this->top2_);
  SpixelFeatureLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  EXPECT_NEAR(this->top_->cpu_data()[0], 2, 1e-6);
  EXPECT_EQ(this->top_->cpu_data()[1], 255);  // empty superpixel
  EXPECT_NEAR(this->top_->cpu_data()[2], 4, 1e-6);
  EXPECT_EQ(this->top2_->cpu_data()[1], 255);  // ignored pixel
  EXPECT_NEAR(this->top2_->cpu_data()[3], 4, 1e-6);
}

TYPED_TEST(SpixelFeatureLayerTest, GradientBothTops) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param;
  SpixelFeatureParameter* sf = param.mutable_spixel_feature_param();
  sf->set_type(SpixelFeatureParameter_Feature_AVGRGBXYRGBXY);
  sf->set_max_spixels(7);  // one more than the grid: an empty superpixel
  sf->set_rgb_scale(0.5);
  sf->set_rgbxy_rgb_scale(2);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(this->features_);
  bottom.push_back(this->cells_);
  this->top_vec_.push_back(this->top2_);
  SpixelFeatureLayer<Dtype> layer(param);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
}

}  // namespace caffe
