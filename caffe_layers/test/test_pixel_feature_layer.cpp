// C++ tests of the PixelFeature layer (docs/LAYERS.md#pixelfeature).
#include <vector>

#include "gtest/gtest.h"

#include "caffe/layers/pixel_feature_layer.hpp"
#include "caffe/test/test_gradient_check_util.hpp"
#include "caffe/test/test_ssn_util.hpp"

namespace caffe {

template <typename TypeParam>
class PixelFeatureLayerTest : public SsnLayerTest<TypeParam> {};

TYPED_TEST_CASE(PixelFeatureLayerTest, TestDtypesAndDevices);

TYPED_TEST(PixelFeatureLayerTest, PositionAndRgb) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param;
  PixelFeatureParameter* pf = param.mutable_pixel_feature_param();
  pf->set_type(PixelFeatureParameter_Feature_POSITION_AND_RGB);
  pf->set_pos_scale(0.5);
  pf->set_color_scale(0.26);
  pf->set_offset_h(1);
  vector<Blob<Dtype>*> bottom(1, this->features_);
  PixelFeatureLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  ASSERT_EQ(this->top_->channels(), 5);
  for (int n = 0; n < 2; ++n) {
    for (int y = 0; y < 7; ++y) {
      for (int x = 0; x < 9; ++x) {
        EXPECT_FLOAT_EQ(this->top_->data_at(n, 0, y, x), 0.5 * y + 1);
        EXPECT_FLOAT_EQ(this->top_->data_at(n, 1, y, x), 0.5 * x);
        for (int c = 0; c < 3; ++c) {
          EXPECT_NEAR(this->top_->data_at(n, 2 + c, y, x),
                      0.26 * this->features_->data_at(n, c, y, x), 1e-6);
        }
      }
    }
  }
}

TYPED_TEST(PixelFeatureLayerTest, Gradient) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param;
  param.mutable_pixel_feature_param()->set_type(
      PixelFeatureParameter_Feature_RGB_AND_POSITION);
  param.mutable_pixel_feature_param()->set_color_scale(0.7);
  vector<Blob<Dtype>*> bottom(1, this->features_);
  PixelFeatureLayer<Dtype> layer(param);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
}

}  // namespace caffe
