// C++ tests of the ConcatConvolution layer (docs/LAYERS.md#concatconvolution).
#include <algorithm>
#include <cmath>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/layers/concat_convolution_layer.hpp"
#include "caffe/layers/concat_layer.hpp"
#include "caffe/layers/conv_layer.hpp"
#include "caffe/test/test_gradient_check_util.hpp"
#include "caffe/test/test_ssn_util.hpp"

namespace caffe {

template <typename TypeParam>
class ConcatConvolutionLayerTest : public SsnLayerTest<TypeParam> {};

TYPED_TEST_CASE(ConcatConvolutionLayerTest, TestDtypesAndDevices);

// A 3x3 convolution to 4 outputs with random weights and bias. Caffe's
// engine for the parts on GPU too: cuDNN may round through TF32 (pycaffe's
// test_gpu.py runs the default engine with TF32 off).
LayerParameter ConcatConvolutionParam(int pad, int stride) {
  LayerParameter param;
  param.set_type("ConcatConvolution");
  ConvolutionParameter* conv = param.mutable_convolution_param();
  conv->set_num_output(4);
  conv->add_kernel_size(3);
  conv->add_pad(pad);
  conv->add_stride(stride);
  conv->mutable_weight_filler()->set_type("gaussian");
  conv->mutable_bias_filler()->set_type("gaussian");
  conv->set_engine(ConvolutionParameter_Engine_CAFFE);
  return param;
}

// Bottoms of 1, 3 and 2 channels: the same output and gradients as Concat
// and a Convolution with the same weights (up to float summation order).
TYPED_TEST(ConcatConvolutionLayerTest, IsConvolutionOfConcat) {
  typedef typename TypeParam::Dtype Dtype;
  const double tolerance = sizeof(Dtype) == sizeof(float) ? 1e-5 : 1e-12;
  for (int geometry = 0; geometry < 2; ++geometry) {
    const int pad = geometry == 0 ? 1 : 0, stride = geometry == 0 ? 1 : 2;
    Blob<Dtype> first(2, 1, 7, 9), third(2, 2, 7, 9), joined, reference;
    FillGaussian(&first);
    FillGaussian(&third);
    vector<Blob<Dtype>*> bottom;
    bottom.push_back(&first);
    bottom.push_back(this->features_);
    bottom.push_back(&third);
    LayerParameter param = ConcatConvolutionParam(pad, stride);
    ConcatConvolutionLayer<Dtype> fused(param);
    fused.SetUp(bottom, this->top_vec_);
    ASSERT_EQ(fused.blobs().size(), 2);
    EXPECT_EQ(fused.blobs()[0]->shape_string(), "4 6 3 3 (216)");
    EXPECT_EQ(fused.blobs()[1]->shape_string(), "4 (4)");

    vector<Blob<Dtype>*> joined_vec(1, &joined), reference_vec(1, &reference);
    ConcatLayer<Dtype> concat((LayerParameter()));
    concat.SetUp(bottom, joined_vec);
    param.set_type("Convolution");
    ConvolutionLayer<Dtype> conv(param);
    conv.SetUp(joined_vec, reference_vec);
    for (int b = 0; b < 2; ++b) conv.blobs()[b]->CopyFrom(*fused.blobs()[b]);

    concat.Forward(bottom, joined_vec);
    conv.Forward(joined_vec, reference_vec);
    fused.Forward(bottom, this->top_vec_);
    Blob<Dtype>* top = this->top_;
    ASSERT_TRUE(top->shape() == reference.shape());
    for (int i = 0; i < top->count(); ++i) {
      EXPECT_NEAR(top->cpu_data()[i], reference.cpu_data()[i],
                  tolerance * std::max(Dtype(1), std::fabs(top->cpu_data()[i])));
    }
    FillGaussian(&reference);  // the top diff, through the diffs below
    caffe_copy(top->count(), reference.cpu_data(), top->mutable_cpu_diff());
    caffe_copy(top->count(), reference.cpu_data(), reference.mutable_cpu_diff());
    conv.Backward(reference_vec, vector<bool>(1, true), joined_vec);
    concat.Backward(joined_vec, vector<bool>(3, true), bottom);
    vector<vector<Dtype> > expected;
    for (int b = 0; b < 3; ++b) {
      expected.push_back(vector<Dtype>(bottom[b]->cpu_diff(),
                                       bottom[b]->cpu_diff() + bottom[b]->count()));
    }
    fused.Backward(this->top_vec_, vector<bool>(3, true), bottom);
    for (int b = 0; b < 3; ++b) {
      for (int i = 0; i < bottom[b]->count(); ++i) {
        EXPECT_NEAR(bottom[b]->cpu_diff()[i], expected[b][i],
                    tolerance * std::max(Dtype(1), std::fabs(expected[b][i])))
            << "bottom " << b << " diff " << i;
      }
    }
    for (int p = 0; p < 2; ++p) {
      const Blob<Dtype>& mine = *fused.blobs()[p];
      const Blob<Dtype>& theirs = *conv.blobs()[p];
      for (int i = 0; i < mine.count(); ++i) {
        EXPECT_NEAR(mine.cpu_diff()[i], theirs.cpu_diff()[i],
                    tolerance * std::max(Dtype(1), std::fabs(theirs.cpu_diff()[i])))
            << "param " << p << " diff " << i;
      }
    }
  }
}

TYPED_TEST(ConcatConvolutionLayerTest, Gradient) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> first(2, 3, 4, 5), second(2, 2, 4, 5);  // small: checked exhaustively
  FillGaussian(&first);
  FillGaussian(&second);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&first);
  bottom.push_back(&second);
  ConcatConvolutionLayer<Dtype> layer(ConcatConvolutionParam(1, 1));
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  // Every bottom, and the weights and bias.
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 1);
}

TYPED_TEST(ConcatConvolutionLayerTest, ReLUOutput) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> second(2, 5, 7, 9), plain;
  FillGaussian(&second);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(this->features_);
  bottom.push_back(&second);
  LayerParameter param = ConcatConvolutionParam(1, 1);
  ConcatConvolutionLayer<Dtype> linear(param);
  vector<Blob<Dtype>*> plain_vec(1, &plain);
  linear.SetUp(bottom, plain_vec);
  param.mutable_convolution_output_param()->set_relu(true);
  ConcatConvolutionLayer<Dtype> rectified(param);
  rectified.SetUp(bottom, this->top_vec_);
  for (int b = 0; b < 2; ++b) {
    rectified.blobs()[b]->CopyFrom(*linear.blobs()[b]);
  }
  linear.Forward(bottom, plain_vec);
  rectified.Forward(bottom, this->top_vec_);
  int negative = 0;
  for (int i = 0; i < plain.count(); ++i) {
    const Dtype value = plain.cpu_data()[i];
    negative += value < 0;
    EXPECT_EQ(this->top_->cpu_data()[i], value > 0 ? value : Dtype(0));
  }
  EXPECT_GT(negative, 0);
}

}  // namespace caffe
