// C++ tests of the SpixelToPixel layer (docs/LAYERS.md#spixeltopixel).
#include <vector>

#include "gtest/gtest.h"

#include "caffe/layers/spixel_to_pixel_layer.hpp"
#include "caffe/ssn/math.hpp"
#include "caffe/test/test_gradient_check_util.hpp"
#include "caffe/test/test_ssn_util.hpp"

namespace caffe {

template <typename TypeParam>
class SpixelToPixelLayerTest : public SsnLayerTest<TypeParam> {};

TYPED_TEST_CASE(SpixelToPixelLayerTest, TestDtypesAndDevices);

// Against direct sums over the 9 neighbours, odd sizes and batch 2 (2 x 3
// grid, so every border case occurs): border cells' outside neighbours add 0.
TYPED_TEST(SpixelToPixelLayerTest, MatchesDirectSums) {
  typedef typename TypeParam::Dtype Dtype;
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(this->spixels_);
  bottom.push_back(this->assoc_);
  bottom.push_back(this->cells_);
  SpixelToPixelLayer<Dtype> layer(this->GridParam(2, 3));
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  ASSERT_EQ(this->top_->shape(), this->features_->shape());
  for (int n = 0; n < 2; ++n) {
    for (int k = 0; k < 3; ++k) {
      for (int y = 0; y < 7; ++y) {
        for (int x = 0; x < 9; ++x) {
          const int cell = static_cast<int>(this->cells_->data_at(n, 0, y, x));
          double expected = 0;
          for (int i = 0; i < 9; ++i) {
            const int j = ssn::neighbour_index(cell, i, 2, 3);
            if (j < 0) continue;
            expected += this->assoc_->data_at(n, i, y, x) *
                        this->spixels_->data_at(n, k, 0, j);
          }
          EXPECT_NEAR(this->top_->data_at(n, k, y, x), expected, 1e-5);
        }
      }
    }
  }
}

TYPED_TEST(SpixelToPixelLayerTest, Gradient) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> spixels(2, 2, 1, 6), assoc(2, 9, 5, 7), cells(2, 1, 5, 7);
  FillGaussian(&spixels);
  FillUniform(&assoc, Dtype(0), Dtype(1));
  FillGridCells(&cells, 2, 3);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&spixels);
  bottom.push_back(&assoc);
  bottom.push_back(&cells);
  SpixelToPixelLayer<Dtype> layer(this->GridParam(2, 3));
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 0);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 1);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 1);
  EXPECT_FALSE(layer.AllowForceBackward(2));
}

}  // namespace caffe
