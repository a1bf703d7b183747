// C++ tests of the SpixelFeature2 layer (docs/LAYERS.md#spixelfeature2).
#include <vector>

#include "gtest/gtest.h"

#include "caffe/layers/spixel_feature2_layer.hpp"
#include "caffe/test/test_gradient_check_util.hpp"
#include "caffe/test/test_ssn_util.hpp"

namespace caffe {

template <typename TypeParam>
class SpixelFeature2LayerTest : public SsnLayerTest<TypeParam> {};

TYPED_TEST_CASE(SpixelFeature2LayerTest, TestDtypesAndDevices);

TYPED_TEST(SpixelFeature2LayerTest, WorkedVector) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> features, cells(1, 1, 4, 6), assoc(1, 9, 4, 6);
  FillWorkedFeatures(&features);
  FillGridCells(&cells, 2, 3);
  for (int c = 0; c < 9; ++c) {
    caffe_set(24, Dtype((c + 1) / 45.0), assoc.mutable_cpu_data() + c * 24);
  }
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&features);
  bottom.push_back(&assoc);
  bottom.push_back(&cells);
  SpixelFeature2Layer<Dtype> layer(this->GridParam(2, 3));
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  const double expected[2][6] = {
      {7.333333, 8.547619, 10.125, 8.916667, 9.910256, 11.142857},
      {4.041667, 3.761905, 4.0, 4.083333, 3.794872, 3.892857}};
  for (int k = 0; k < 2; ++k) {
    for (int j = 0; j < 6; ++j) {
      EXPECT_NEAR(this->top_->data_at(0, k, 0, j), expected[k][j], 1e-5);
    }
  }
}

TYPED_TEST(SpixelFeature2LayerTest, Gradient) {
  typedef typename TypeParam::Dtype Dtype;
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(this->features_);
  bottom.push_back(this->assoc_);
  bottom.push_back(this->cells_);
  SpixelFeature2Layer<Dtype> layer(this->GridParam(2, 3));
  GradientChecker<Dtype> checker(1e-3, 2e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 0);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 1);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 1);
}

}  // namespace caffe
