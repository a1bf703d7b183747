// C++ tests of the Interp layer (docs/LAYERS.md#interp).
#include <vector>

#include "gtest/gtest.h"

#include "caffe/layers/interp_layer.hpp"
#include "caffe/test/test_gradient_check_util.hpp"
#include "caffe/test/test_ssn_util.hpp"

namespace caffe {

template <typename TypeParam>
class InterpLayerTest : public SsnLayerTest<TypeParam> {};

TYPED_TEST_CASE(InterpLayerTest, TestDtypesAndDevices);

TYPED_TEST(InterpLayerTest, ZoomTwoWorkedVector) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> input(1, 1, 3, 3);
  for (int i = 0; i < 9; ++i) input.mutable_cpu_data()[i] = i;
  LayerParameter param;
  param.mutable_interp_param()->set_zoom_factor(2);
  vector<Blob<Dtype>*> bottom(1, &input);
  InterpLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  ASSERT_EQ(this->top_->height(), 5);
  ASSERT_EQ(this->top_->width(), 5);
  const double expected[5][5] = {{0, .5, 1, 1.5, 2}, {1.5, 2, 2.5, 3, 3.5},
                                 {3, 3.5, 4, 4.5, 5}, {4.5, 5, 5.5, 6, 6.5},
                                 {6, 6.5, 7, 7.5, 8}};
  for (int h = 0; h < 5; ++h) {
    for (int w = 0; w < 5; ++w) {
      EXPECT_NEAR(this->top_->data_at(0, 0, h, w), expected[h][w], 1e-6);
    }
  }
}

TYPED_TEST(InterpLayerTest, GradientWithCropAndSize) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param;
  param.mutable_interp_param()->set_height(11);
  param.mutable_interp_param()->set_width(4);
  param.mutable_interp_param()->set_pad_beg(-1);
  vector<Blob<Dtype>*> bottom(1, this->features_);
  InterpLayer<Dtype> layer(param);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
}

// With a reference bottom, Interp's output is the top-left corner of its
// output without one, bit for bit, and so is the gradient: that of the top
// diff padded with zeros. The reference has another batch size and channels.
TYPED_TEST(InterpLayerTest, ReferenceIsInterpThenCrop) {
  typedef typename TypeParam::Dtype Dtype;
  const int sizes[][2] = {{16, 25}, {19, 24}, {1, 1}, {19, 25}};
  for (int s = 0; s < 4; ++s) {
    LayerParameter param;
    param.mutable_interp_param()->set_zoom_factor(3);  // 7 x 9 -> 19 x 25
    Blob<Dtype> reference(1, 4, sizes[s][0], sizes[s][1]), full;
    vector<Blob<Dtype>*> bottom(1, this->features_), both(bottom);
    both.push_back(&reference);
    vector<Blob<Dtype>*> full_top(1, &full);
    InterpLayer<Dtype> whole(param), cropping(param);
    whole.SetUp(bottom, full_top);
    whole.Forward(bottom, full_top);
    cropping.SetUp(both, this->top_vec_);
    cropping.Forward(both, this->top_vec_);
    Blob<Dtype>* top = this->top_;
    ASSERT_EQ(top->num(), 2);
    ASSERT_EQ(top->channels(), 3);
    ASSERT_EQ(top->height(), sizes[s][0]);
    ASSERT_EQ(top->width(), sizes[s][1]);
    FillGaussian(top);
    caffe_copy(top->count(), top->cpu_data(), top->mutable_cpu_diff());
    cropping.Forward(both, this->top_vec_);
    caffe_set(full.count(), Dtype(0), full.mutable_cpu_diff());
    for (int n = 0; n < 2; ++n) {
      for (int c = 0; c < 3; ++c) {
        for (int h = 0; h < top->height(); ++h) {
          for (int w = 0; w < top->width(); ++w) {
            ASSERT_EQ(top->data_at(n, c, h, w), full.data_at(n, c, h, w));
            full.mutable_cpu_diff()[full.offset(n, c, h, w)] =
                top->diff_at(n, c, h, w);
          }
        }
      }
    }
    caffe_set(reference.count(), Dtype(7), reference.mutable_cpu_diff());
    cropping.Backward(this->top_vec_, vector<bool>(2, true), both);
    const vector<Dtype> cropped_diff(this->features_->cpu_diff(),
        this->features_->cpu_diff() + this->features_->count());
    whole.Backward(full_top, vector<bool>(1, true), bottom);
    for (int i = 0; i < this->features_->count(); ++i) {
      ASSERT_EQ(cropped_diff[i], this->features_->cpu_diff()[i]) << i;
    }
    // The reference's gradient is zero, written when asked for.
    EXPECT_EQ(caffe_cpu_asum(reference.count(), reference.cpu_diff()), 0);
    EXPECT_FALSE(cropping.AllowForceBackward(1));
  }
}

TYPED_TEST(InterpLayerTest, ReferenceGradient) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param;
  param.mutable_interp_param()->set_zoom_factor(2);  // 7 x 9 -> 13 x 17
  param.mutable_interp_param()->set_pad_beg(-1);     // 6 x 8 -> 11 x 15
  Blob<Dtype> reference(2, 1, 10, 14);
  vector<Blob<Dtype>*> bottom(1, this->features_);
  bottom.push_back(&reference);
  InterpLayer<Dtype> layer(param);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
}

}  // namespace caffe
