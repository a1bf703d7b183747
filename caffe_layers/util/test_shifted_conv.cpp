// C++ tests of ShiftedConv (shifted_conv.hpp), the convolutions without
// im2col that the convolution patch routes Caffe's CPU Convolution through:
// forward and both gradients against direct sums, on both strategies and odd
// geometries, the Winograd forward (winograd_conv.hpp) likewise, and which
// layers take which.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <thread>  // NOLINT(build/c++11): a fresh thread has no scratch yet
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/conv_layer.hpp"
#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"
#include "caffe/ssn/shifted_conv.hpp"

namespace caffe {

template <typename Dtype>
void FillGaussian(Blob<Dtype>* blob, Dtype std = 1) {
  FillerParameter param;
  param.set_std(std);
  GaussianFiller<Dtype> filler(param);
  filler.Fill(blob);
}

// Direct sums of the convolution and of its two gradients, one image.
template <typename Dtype>
struct DirectConv {
  ShiftedConv g;

  template <typename Visit>
  void each_term(Visit visit) const {  // visit(output index, input index, weight index)
    for (int m = 0; m < g.out_channels; ++m)
      for (int oy = 0; oy < g.out_height; ++oy)
        for (int ox = 0; ox < g.out_width; ++ox)
          for (int c = 0; c < g.channels; ++c)
            for (int a = 0; a < g.kernel_h; ++a)
              for (int b = 0; b < g.kernel_w; ++b) {
                const int iy = oy - g.pad_h + a * g.dilation_h;
                const int ix = ox - g.pad_w + b * g.dilation_w;
                if (iy < 0 || iy >= g.height || ix < 0 || ix >= g.width) continue;
                visit((m * g.out_height + oy) * g.out_width + ox,
                      (c * g.height + iy) * g.width + ix,
                      ((m * g.channels + c) * g.kernel_h + a) * g.kernel_w + b);
              }
  }
};

// Geometries, first narrowing then widening (shifting products, then inputs):
// same-size 3x3; an asymmetric, dilated kernel that shrinks the image; padding
// as wide as the kernel reach, so the output is larger; and (widening only)
// padding wider than the reach, where BackwardData shifts products instead.
const int kTestGeometries = 7;
ShiftedConv TestGeometry(int which) {
  ShiftedConv g;
  const int shapes[kTestGeometries][11] = {
      // C, H, W, M, kh, kw, ph, pw, dh, dw
      {5, 7, 9, 3, 3, 3, 1, 1, 1, 1},
      {4, 8, 11, 2, 3, 5, 0, 2, 2, 1},
      {3, 5, 6, 2, 3, 3, 2, 2, 1, 1},
      {16, 7, 9, 16, 3, 3, 1, 1, 1, 1},
      {16, 8, 11, 20, 3, 5, 0, 2, 2, 1},
      {17, 5, 6, 17, 3, 3, 2, 2, 1, 1},
      {16, 5, 6, 18, 3, 3, 3, 1, 1, 1},
  };
  const int* s = shapes[which];
  g.strategy = s[3] < s[0] ? ShiftedConv::kShiftProducts : ShiftedConv::kShiftInputs;
  g.channels = s[0], g.height = s[1], g.width = s[2], g.out_channels = s[3];
  g.kernel_h = s[4], g.kernel_w = s[5], g.pad_h = s[6], g.pad_w = s[7];
  g.dilation_h = s[8], g.dilation_w = s[9];
  g.out_height = g.height + 2 * g.pad_h - g.dilation_h * (g.kernel_h - 1);
  g.out_width = g.width + 2 * g.pad_w - g.dilation_w * (g.kernel_w - 1);
  return g;
}

template <typename Dtype>
class ShiftedConvTest : public CPUDeviceTest<Dtype> {};

TYPED_TEST_CASE(ShiftedConvTest, TestDtypes);

TYPED_TEST(ShiftedConvTest, ForwardAndGradientsMatchDirectSums) {
  typedef TypeParam Dtype;
  Caffe::set_random_seed(1701);
  for (int which = 0; which < kTestGeometries; ++which) {
    const ShiftedConv g = TestGeometry(which);
    Blob<Dtype> input(1, g.channels, g.height, g.width);
    Blob<Dtype> weights(g.out_channels, g.channels, g.kernel_h, g.kernel_w);
    Blob<Dtype> output(1, g.out_channels, g.out_height, g.out_width);
    FillGaussian(&input);
    FillGaussian(&weights);
    FillGaussian(&output);  // also the output gradient
    vector<Dtype> out(output.count()), in_diff(input.count(), 0);
    vector<Dtype> weight_diff(weights.count(), Dtype(0.5));  // accumulates onto 0.5
    vector<Dtype> expected_out(output.count(), 0), expected_in(input.count(), 0);
    vector<Dtype> expected_w(weights.count(), Dtype(0.5));
    const Dtype* x = input.cpu_data();
    const Dtype* w = weights.cpu_data();
    const Dtype* dy = output.cpu_data();
    DirectConv<Dtype>{g}.each_term([&](int o, int i, int k) {
      expected_out[o] += w[k] * x[i];
      expected_in[i] += w[k] * dy[o];
      expected_w[k] += dy[o] * x[i];
    });
    g.Forward(x, w, out.data());
    std::fill(in_diff.begin(), in_diff.end(), Dtype(7));  // overwritten
    g.BackwardData(dy, w, in_diff.data());
    g.BackwardWeights(x, dy, weight_diff.data());
    const Dtype tol = sizeof(Dtype) == 4 ? 1e-4 : 1e-10;
    for (int o = 0; o < output.count(); ++o)
      EXPECT_NEAR(out[o], expected_out[o], tol) << "geometry " << which << " output " << o;
    for (int i = 0; i < input.count(); ++i)
      EXPECT_NEAR(in_diff[i], expected_in[i], tol) << "geometry " << which << " input " << i;
    for (int k = 0; k < weights.count(); ++k)
      EXPECT_NEAR(weight_diff[k], expected_w[k], tol) << "geometry " << which << " weight " << k;
  }
}

// Sets SSN_CONV_WINOGRAD (or another switch) for a test's lifetime (nullptr:
// unset), then unsets it.
class WinogradSetting {
 public:
  explicit WinogradSetting(const char* value, const char* name = "SSN_CONV_WINOGRAD")
      : name_(name) {
    if (value) {
      setenv(name_, value, 1);
    } else {
      unsetenv(name_);
    }
  }
  ~WinogradSetting() { unsetenv(name_); }

 private:
  const char* name_;
};

const char kBackwardSwitch[] = "SSN_CONV_WINOGRAD_BACKWARD";

// Odd geometries of the Winograd forward: C, M, H, W, pad_h, pad_w. One-row
// and one-column images, images smaller than a tile, partial tiles at both
// edges, M padded to whole products (15, 13, 3), input channels not a
// multiple of the vector width, padding 0, 1 and 2, and different on the axes.
const int kWinogradGeometries = 12;
const int kWinogradShapes[kWinogradGeometries][6] = {
    {13, 16, 1, 9, 1, 1}, {13, 16, 9, 1, 1, 1}, {16, 13, 2, 3, 1, 1}, {16, 16, 5, 7, 0, 0},
    {16, 16, 5, 7, 1, 1}, {5, 64, 17, 19, 1, 1}, {64, 64, 17, 19, 0, 0},
    {197, 15, 17, 19, 1, 1}, {13, 13, 17, 19, 2, 2}, {8, 3, 1, 1, 1, 1},
    {64, 64, 37, 70, 1, 1}, {16, 9, 11, 26, 0, 2},
};

// WinogradConv with both tile sizes and 1 or 3 threads against direct sums:
// |error| <= tolerance * (sum over the output's terms of |w x|), the scale of
// its rounding error. Scratch starts as NaN (nothing may depend on it) and the
// output as 7 (every value must be written).
TYPED_TEST(ShiftedConvTest, WinogradForwardMatchesDirectSums) {
  typedef TypeParam Dtype;
  Caffe::set_random_seed(1701);
  const bool is_float = sizeof(Dtype) == 4;
  for (int which = 0; which < kWinogradGeometries; ++which) {
    const int* s = kWinogradShapes[which];
    ShiftedConv g = TestGeometry(0);
    g.channels = s[0], g.out_channels = s[1], g.height = s[2], g.width = s[3];
    g.pad_h = s[4], g.pad_w = s[5];
    g.out_height = g.height + 2 * g.pad_h - 2, g.out_width = g.width + 2 * g.pad_w - 2;
    Blob<Dtype> input(1, g.channels, g.height, g.width);
    Blob<Dtype> weights(g.out_channels, g.channels, 3, 3);
    FillGaussian(&input);
    FillGaussian(&weights);
    const Dtype* x = input.cpu_data();
    const Dtype* w = weights.cpu_data();
    const int outputs = g.out_channels * g.out_height * g.out_width;
    vector<double> expected(outputs, 0), scale(outputs, 0);
    DirectConv<Dtype>{g}.each_term([&](int o, int i, int k) {
      expected[o] += static_cast<double>(w[k]) * x[i];
      scale[o] += std::fabs(static_cast<double>(w[k]) * x[i]);
    });
    for (int tile : {2, 4}) {
      for (int threads : {1, 3}) {
        WinogradConv conv;
        conv.tile = tile, conv.threads = threads;
        conv.channels = g.channels, conv.height = g.height, conv.width = g.width;
        conv.out_channels = g.out_channels, conv.out_height = g.out_height;
        conv.out_width = g.out_width, conv.pad_h = g.pad_h, conv.pad_w = g.pad_w;
        vector<Dtype> scratch(conv.scratch_size(), std::numeric_limits<Dtype>::quiet_NaN());
        vector<Dtype> out(outputs, Dtype(7));
        conv.Forward(x, w, out.data(), scratch.data());
        const double tolerance = !is_float ? 1e-13 : tile == 2 ? 2e-6 : 2e-5;
        double worst = 0;
        for (int o = 0; o < outputs; ++o) {
          worst = std::max(worst, std::fabs(out[o] - expected[o]) / (scale[o] + 1e-30));
        }
        EXPECT_LE(worst, tolerance) << "geometry " << which << ", F(" << tile << ", 3), "
                                    << threads << " threads";
      }
    }
  }
}

// The Winograd weight gradient (both tile sizes, 1 or 3 threads) and the input
// gradient by the rotated kernel (ShiftedConv::BackwardData) against direct
// sums, on the forward's odd geometries: |error| <= tolerance * (sum of the
// terms' magnitudes). Scratch starts as NaN, the weight gradient at 0.5 (it
// accumulates) and the input gradient at 7 (overwritten).
TYPED_TEST(ShiftedConvTest, WinogradBackwardMatchesDirectSums) {
  typedef TypeParam Dtype;
  Caffe::set_random_seed(1701);
  const bool is_float = sizeof(Dtype) == 4;
  for (int which = 0; which < kWinogradGeometries; ++which) {
    const int* s = kWinogradShapes[which];
    ShiftedConv g = TestGeometry(0);
    g.channels = s[0], g.out_channels = s[1], g.height = s[2], g.width = s[3];
    g.pad_h = s[4], g.pad_w = s[5];
    g.out_height = g.height + 2 * g.pad_h - 2, g.out_width = g.width + 2 * g.pad_w - 2;
    g.strategy = ShiftedConv::kIm2col, g.winograd_data = true;
    Blob<Dtype> input(1, g.channels, g.height, g.width);
    Blob<Dtype> weights(g.out_channels, g.channels, 3, 3);
    Blob<Dtype> output(1, g.out_channels, g.out_height, g.out_width);
    FillGaussian(&input);
    FillGaussian(&weights);
    FillGaussian(&output);
    const Dtype* x = input.cpu_data();
    const Dtype* w = weights.cpu_data();
    const Dtype* dy = output.cpu_data();
    // The 0.5 the gradient accumulates onto is one of its terms.
    vector<double> expected_w(weights.count(), 0.5), scale_w(weights.count(), 0.5);
    vector<double> expected_in(input.count(), 0), scale_in(input.count(), 0);
    DirectConv<Dtype>{g}.each_term([&](int o, int i, int k) {
      expected_w[k] += static_cast<double>(dy[o]) * x[i];
      scale_w[k] += std::fabs(static_cast<double>(dy[o]) * x[i]);
      expected_in[i] += static_cast<double>(w[k]) * dy[o];
      scale_in[i] += std::fabs(static_cast<double>(w[k]) * dy[o]);
    });
    for (int tile : {2, 4}) {
      for (int threads : {1, 3}) {
        WinogradConv conv = g.winograd_conv();
        conv.tile = tile, conv.threads = threads;
        vector<Dtype> scratch(conv.weights_scratch_size(),
                              std::numeric_limits<Dtype>::quiet_NaN());
        vector<Dtype> weight_diff(weights.count(), Dtype(0.5));
        conv.BackwardWeights(x, dy, weight_diff.data(), scratch.data());
        const double tolerance = !is_float ? 1e-13 : tile == 2 ? 2e-6 : 2e-5;
        double worst = 0;
        for (int k = 0; k < weights.count(); ++k) {
          worst = std::max(worst, std::fabs(weight_diff[k] - expected_w[k]) /
                                      (scale_w[k] + 1e-30));
        }
        EXPECT_LE(worst, tolerance) << "geometry " << which << ", F(" << tile << ", 3), "
                                    << threads << " threads";
      }
    }
    vector<Dtype> in_diff(input.count(), Dtype(7));
    g.BackwardData(dy, w, in_diff.data());
    double worst = 0;
    for (int i = 0; i < input.count(); ++i) {
      worst = std::max(worst, std::fabs(in_diff[i] - expected_in[i]) / (scale_in[i] + 1e-30));
    }
    EXPECT_LE(worst, is_float ? 2e-5 : 1e-13) << "geometry " << which << ", input gradient";
  }
}

// Which convolutions' gradients go by Winograd: those whose forward would (the
// input's with C and M swapped), unless narrowing by more than 5; the input's
// only with padding up to 2 (the reach of a 3x3 kernel). The switch is
// SSN_CONV_WINOGRAD_BACKWARD, SSN_CONV_WINOGRAD leaves them alone.
TYPED_TEST(ShiftedConvTest, WinogradBackwardForLarge3x3ConvolutionsWithSmallPadding) {
  const int output[2] = {40, 40}, kernel[2] = {3, 3}, one[2] = {1, 1}, two[2] = {2, 2};
  const int pad1[2] = {1, 1}, pad2[2] = {2, 0}, pad3[2] = {1, 3};
  const int large[2] = {42, 38}, small[2] = {20, 20};
  auto conv = [&](int C, int M, const int* pad, const int* out, const int* dilation) {
    const int in[3] = {C, out[0] + 2 - 2 * pad[0], out[1] + 2 - 2 * pad[1]};
    return ShiftedConv::ForLayer(2, false, 1, C, in, M, out, kernel, pad, one, dilation);
  };
  WinogradSetting automatic(nullptr, kBackwardSwitch);
  for (const char* forward : {"0", "1"}) {
    WinogradSetting forward_setting(forward);
    ShiftedConv g = conv(64, 64, pad1, output, one);
    EXPECT_TRUE(g.winograd_data && g.winograd_weights);
    EXPECT_TRUE(g.applies_backward_data() && g.applies_backward_weights());
    g = conv(8, 16, pad1, output, one);  // im2col before
    EXPECT_TRUE(g.winograd_data && g.winograd_weights && !g.applies());
    EXPECT_TRUE(conv(16, 16, pad2, large, one).winograd_data);
    g = conv(16, 16, pad3, large, one);  // padding 3: no 'same' input gradient
    EXPECT_FALSE(g.winograd_data);
    EXPECT_TRUE(g.winograd_weights);
    g = conv(197, 15, pad1, output, one);  // narrowing by over 5: shifted products
    EXPECT_FALSE(g.winograd_data || g.winograd_weights);
    EXPECT_TRUE(g.applies_backward_data() && g.applies_backward_weights());
    g = conv(64, 15, pad1, output, one);  // a part of ConcatConvolution: by 4.3
    EXPECT_TRUE(g.winograd_data && g.winograd_weights);
    EXPECT_FALSE(conv(76, 15, pad1, output, one).winograd_weights);  // by 5.07
    g = conv(5, 64, pad1, output, one);  // the weights' from few channels: im2col
    EXPECT_TRUE(g.winograd_data);
    EXPECT_FALSE(g.winograd_weights || g.applies());
    EXPECT_FALSE(conv(64, 64, pad1, small, one).winograd_weights);  // too small
    EXPECT_FALSE(conv(64, 64, pad1, output, two).winograd_weights);  // dilated
  }
  {
    WinogradSetting off("0", kBackwardSwitch);
    const ShiftedConv g = conv(64, 64, pad1, output, one);
    EXPECT_FALSE(g.winograd_data || g.winograd_weights);
    EXPECT_TRUE(g.winograd);
  }
  {
    WinogradSetting on("1", kBackwardSwitch);
    ShiftedConv g = conv(197, 15, pad1, output, one);
    EXPECT_TRUE(g.winograd_data && g.winograd_weights);
    g = conv(5, 64, pad1, small, one);
    EXPECT_TRUE(g.winograd_data && g.winograd_weights);
    g = conv(16, 16, pad3, large, one);
    EXPECT_FALSE(g.winograd_data);
    EXPECT_FALSE(conv(64, 64, pad1, output, two).winograd_weights);
  }
}

TYPED_TEST(ShiftedConvTest, AppliesOnlyToStrideOneConvolutionsOfEnoughChannels) {
  const int input[3] = {8, 10, 10}, output[2] = {10, 10}, kernel[2] = {3, 3};
  const int pad[2] = {1, 1}, one[2] = {1, 1}, two[2] = {2, 2}, unit[2] = {1, 1};
  const int wide[3] = {16, 10, 10};
  EXPECT_EQ(ShiftedConv::ForLayer(2, false, 1, 8, input, 4, output, kernel, pad, one,
                                  one).strategy, ShiftedConv::kShiftProducts);
  EXPECT_EQ(ShiftedConv::ForLayer(2, false, 1, 16, wide, 16, output, kernel, pad, one,
                                  one).strategy, ShiftedConv::kShiftInputs);
  EXPECT_EQ(ShiftedConv::ForLayer(2, false, 1, 16, wide, 64, output, kernel, pad, one,
                                  one).strategy, ShiftedConv::kShiftInputs);
  EXPECT_FALSE(ShiftedConv::ForLayer(2, false, 1, 8, input, 8, output, kernel, pad, one,
                                     one).applies());   // widening from few channels
  EXPECT_FALSE(ShiftedConv::ForLayer(2, false, 1, 8, input, 4, output, kernel, pad, two,
                                     one).applies());   // stride 2
  EXPECT_FALSE(ShiftedConv::ForLayer(2, false, 2, 8, input, 4, output, kernel, pad, one,
                                     one).applies());   // groups
  EXPECT_FALSE(ShiftedConv::ForLayer(2, true, 1, 8, input, 4, output, kernel, pad, one,
                                     one).applies());   // deconvolution or N-d im2col
  EXPECT_FALSE(ShiftedConv::ForLayer(2, false, 1, 8, input, 4, output, unit, pad, one,
                                     one).applies());   // 1x1
}

// Which convolutions' forward goes by Winograd: 3x3, undilated, from
// kMinWinogradChannels channels to kMinWinogradOutputs outputs, on at least
// kMinWinogradPixels output pixels; SSN_CONV_WINOGRAD=0 turns it off, =1 on
// regardless of the sizes.
TYPED_TEST(ShiftedConvTest, WinogradForwardOnlyForLargeEnough3x3Convolutions) {
  const int input[3] = {16, 40, 40}, few[3] = {8, 40, 40}, five[3] = {5, 40, 40};
  const int small_input[3] = {16, 20, 20};
  const int output[2] = {40, 40}, small[2] = {20, 20}, kernel[2] = {3, 3}, wide[2] = {3, 5};
  const int pad[2] = {1, 1}, one[2] = {1, 1}, two[2] = {2, 2};
  auto conv = [&](int C, const int* in, int M, const int* out, const int* k,
                  const int* dilation) {
    return ShiftedConv::ForLayer(2, false, 1, C, in, M, out, k, pad, one, dilation);
  };
  WinogradSetting automatic(nullptr);
  EXPECT_TRUE(conv(16, input, 16, output, kernel, one).winograd);   // widening
  EXPECT_TRUE(conv(16, input, 4, output, kernel, one).winograd);    // narrowing
  const ShiftedConv few_channels = conv(8, few, 8, output, kernel, one);
  EXPECT_TRUE(few_channels.winograd);   // backward by im2col
  EXPECT_FALSE(few_channels.applies());
  EXPECT_TRUE(few_channels.applies_forward());
  EXPECT_FALSE(conv(5, five, 64, output, kernel, one).applies_forward());  // im2col
  EXPECT_FALSE(conv(16, input, 2, output, kernel, one).winograd);   // too few outputs
  EXPECT_FALSE(conv(16, small_input, 16, small, kernel, one).winograd);  // too small
  EXPECT_FALSE(conv(16, input, 16, output, wide, one).winograd);    // not 3x3
  EXPECT_FALSE(conv(16, input, 16, output, kernel, two).winograd);  // dilated
  EXPECT_TRUE(conv(16, input, 16, output, kernel, one).applies());
  {
    WinogradSetting off("0");
    EXPECT_FALSE(conv(16, input, 16, output, kernel, one).winograd);
  }
  {
    WinogradSetting on("1");
    EXPECT_TRUE(conv(16, small_input, 16, small, kernel, one).winograd);
    EXPECT_TRUE(conv(5, five, 64, output, kernel, one).winograd);
    EXPECT_FALSE(conv(16, input, 16, output, wide, one).winograd);
  }
}

// A 3x3 ConvolutionLayer with padding 1 (or `pad`) and bias.
template <typename Dtype>
ConvolutionLayer<Dtype>* PaddedConvolution(int out_channels, int pad = 1) {
  LayerParameter param;
  ConvolutionParameter* conv = param.mutable_convolution_param();
  conv->set_num_output(out_channels);
  conv->add_kernel_size(3);
  conv->add_pad(pad);
  conv->mutable_weight_filler()->set_type("gaussian");
  conv->mutable_bias_filler()->set_type("gaussian");
  return new ConvolutionLayer<Dtype>(param);
}

// A same-size 3x3 ConvolutionLayer from C to M channels on a batch of 2 H x W
// images: its forward equals the direct sum plus bias, and it grows the shifted
// path's scratch to the geometry's size (larger than any test's before it), the
// evidence that it took that path.
template <typename Dtype>
void ExpectConvolutionLayerTakesShiftedPath(int C, int M, int H, int W) {
  Caffe::set_random_seed(1701);
  const int size = H * W;
  Blob<Dtype> bottom(2, C, H, W), top;
  FillGaussian(&bottom);
  vector<Blob<Dtype>*> bottoms(1, &bottom), tops(1, &top);
  shared_ptr<ConvolutionLayer<Dtype> > layer(PaddedConvolution<Dtype>(M));
  layer->SetUp(bottoms, tops);
  ShiftedConv g = TestGeometry(0);
  g.channels = C, g.height = g.out_height = H, g.width = g.out_width = W, g.out_channels = M;
  g.strategy = M < C ? ShiftedConv::kShiftProducts : ShiftedConv::kShiftInputs;
  ASSERT_GT(g.scratch_size(), ShiftedConv::scratch_held<Dtype>());
  layer->Forward(bottoms, tops);
  EXPECT_EQ(ShiftedConv::scratch_held<Dtype>(), g.scratch_size());
  const Dtype* w = layer->blobs()[0]->cpu_data();
  const Dtype* bias = layer->blobs()[1]->cpu_data();
  for (int n = 0; n < 2; ++n) {
    vector<Dtype> expected(M * size, 0);
    const Dtype* x = bottom.cpu_data() + n * C * size;
    DirectConv<Dtype>{g}.each_term([&](int o, int i, int k) { expected[o] += w[k] * x[i]; });
    for (int o = 0; o < M * size; ++o)
      EXPECT_NEAR(top.cpu_data()[n * M * size + o], expected[o] + bias[o / size], 1e-4);
  }
}

TYPED_TEST(ShiftedConvTest, NarrowingConvolutionLayerTakesTheShiftedPath) {
  WinogradSetting automatic(nullptr);
  ExpectConvolutionLayerTakesShiftedPath<TypeParam>(5, 2, 60, 61);
}

TYPED_TEST(ShiftedConvTest, WideningConvolutionLayerTakesTheShiftedPath) {
  WinogradSetting off("0");
  ExpectConvolutionLayerTakesShiftedPath<TypeParam>(16, 17, 50, 52);
}

// A same-size 3x3 ConvolutionLayer from C to M channels on a batch of 2 H x W
// images (large enough for Winograd): its forward equals the direct sum plus
// bias, and the scratch it grows to is the Winograd forward's (several times
// smaller than the shifted strategies'), the evidence that it took that path.
template <typename Dtype>
void ExpectConvolutionLayerTakesWinograd(int C, int M, int H, int W) {
  WinogradSetting automatic(nullptr);
  Caffe::set_random_seed(1701);
  const int size = H * W;
  Blob<Dtype> bottom(2, C, H, W), top;
  FillGaussian(&bottom);
  vector<Blob<Dtype>*> bottoms(1, &bottom), tops(1, &top);
  shared_ptr<ConvolutionLayer<Dtype> > layer(PaddedConvolution<Dtype>(M));
  layer->SetUp(bottoms, tops);
  const int input[3] = {C, H, W}, output[2] = {H, W}, kernel[2] = {3, 3}, pad[2] = {1, 1};
  const int one[2] = {1, 1};
  const ShiftedConv g = ShiftedConv::ForLayer(2, false, 1, C, input, M, output, kernel, pad,
                                              one, one);
  ASSERT_TRUE(g.winograd);
  size_t held = 0;  // by a new thread, whose scratch starts empty
  std::thread forward([&]() {
    layer->Forward(bottoms, tops);
    held = ShiftedConv::scratch_held<Dtype>();
  });
  forward.join();
  EXPECT_EQ(held, g.winograd_conv().scratch_size());
  EXPECT_EQ(held, g.forward_scratch_size());
  const Dtype* w = layer->blobs()[0]->cpu_data();
  const Dtype* bias = layer->blobs()[1]->cpu_data();
  const double tolerance = sizeof(Dtype) == 4 ? 2e-5 : 1e-13;
  for (int n = 0; n < 2; ++n) {
    vector<double> expected(M * size, 0), scale(M * size, 0);
    const Dtype* x = bottom.cpu_data() + n * C * size;
    DirectConv<Dtype>{g}.each_term([&](int o, int i, int k) {
      expected[o] += static_cast<double>(w[k]) * x[i];
      scale[o] += std::fabs(static_cast<double>(w[k]) * x[i]);
    });
    for (int o = 0; o < M * size; ++o) {
      EXPECT_NEAR(top.cpu_data()[n * M * size + o], expected[o] + bias[o / size],
                  tolerance * scale[o] + 1e-6) << "image " << n << " output " << o;
    }
  }
}

TYPED_TEST(ShiftedConvTest, WideningConvolutionLayerTakesWinograd) {
  ExpectConvolutionLayerTakesWinograd<TypeParam>(16, 17, 50, 52);
}

TYPED_TEST(ShiftedConvTest, NarrowingConvolutionLayerTakesWinograd) {
  ExpectConvolutionLayerTakesWinograd<TypeParam>(64, 15, 33, 35);
}

// From 13 channels: the backward keeps im2col.
TYPED_TEST(ShiftedConvTest, FewChannelConvolutionLayerTakesWinograd) {
  ExpectConvolutionLayerTakesWinograd<TypeParam>(13, 16, 33, 35);
}

TYPED_TEST(ShiftedConvTest, NarrowingConvolutionLayerGradient) {
  typedef TypeParam Dtype;
  Caffe::set_random_seed(1701);
  Blob<Dtype> bottom(2, 5, 6, 7), top;
  FillGaussian(&bottom);
  vector<Blob<Dtype>*> bottoms(1, &bottom), tops(1, &top);
  shared_ptr<ConvolutionLayer<Dtype> > layer(PaddedConvolution<Dtype>(2));
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(layer.get(), bottoms, tops);
}

// Widening (16 to 18 channels): the gradients of outputs at the corners, the
// edges and inside (every output would take minutes; the sum of all of them is
// too large a loss for float differences).
TYPED_TEST(ShiftedConvTest, WideningConvolutionLayerGradient) {
  typedef TypeParam Dtype;
  Caffe::set_random_seed(1701);
  const int H = 5, W = 6, M = 18;
  Blob<Dtype> bottom(2, 16, H, W), top;
  FillGaussian(&bottom);
  vector<Blob<Dtype>*> bottoms(1, &bottom), tops(1, &top);
  shared_ptr<ConvolutionLayer<Dtype> > layer(PaddedConvolution<Dtype>(M));
  layer->SetUp(bottoms, tops);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  const int outputs[] = {0, W - 1, 2 * W + 3, (M + 5) * H * W + W * (H - 1),
                         2 * M * H * W - 1};
  for (int output : outputs) {
    checker.CheckGradientSingle(layer.get(), bottoms, tops, -1, 0, output);
  }
}

// The gradients of a layer whose forward goes by Winograd (forced on these
// small images) and whose backward does not: from 8 channels (im2col
// backward) and from 16 (shifted inputs), at outputs on the corners, the
// edges and inside. A step of 0.1: the layer is linear, so a long step costs
// no accuracy, and F(4x4, 3x3) rounds float outputs by up to about 1e-5 of
// their magnitude, which differences over the usual 1e-2 would magnify to
// the threshold.
TYPED_TEST(ShiftedConvTest, WinogradConvolutionLayerGradient) {
  typedef TypeParam Dtype;
  WinogradSetting on("1");
  const int H = 6, W = 7, M = 9;
  for (int C : {8, 16}) {
    Caffe::set_random_seed(1701);
    Blob<Dtype> bottom(2, C, H, W), top;
    FillGaussian(&bottom);
    vector<Blob<Dtype>*> bottoms(1, &bottom), tops(1, &top);
    shared_ptr<ConvolutionLayer<Dtype> > layer(PaddedConvolution<Dtype>(M));
    layer->SetUp(bottoms, tops);
    size_t held = 0;
    std::thread forward([&]() {
      layer->Forward(bottoms, tops);
      held = ShiftedConv::scratch_held<Dtype>();
    });
    forward.join();
    const int input[3] = {C, H, W}, output[2] = {H, W}, kernel[2] = {3, 3}, pad[2] = {1, 1};
    const int one[2] = {1, 1};
    EXPECT_EQ(held, ShiftedConv::ForLayer(2, false, 1, C, input, M, output, kernel, pad, one,
                                          one).winograd_conv().scratch_size());
    GradientChecker<Dtype> checker(1e-1, 1e-3);
    const int outputs[] = {0, W - 1, 2 * W + 3, (M + 5) * H * W + W * (H - 1),
                           2 * M * H * W - 1};
    for (int output_index : outputs) {
      checker.CheckGradientSingle(layer.get(), bottoms, tops, -1, 0, output_index);
    }
  }
}

// The gradients of a layer whose forward and backward both go by Winograd
// (forced on these small images), from 8 channels (im2col before) and from 16,
// with padding 1 and 2 (0 has no outputs this small to spare), at outputs on
// the corners, the edges and inside; a step of 0.1 as above.
TYPED_TEST(ShiftedConvTest, WinogradBackwardConvolutionLayerGradient) {
  typedef TypeParam Dtype;
  WinogradSetting forward("1");
  WinogradSetting backward("1", kBackwardSwitch);
  const int H = 6, W = 7, M = 9;
  for (int C : {8, 16}) {
    for (int pad : {1, 2}) {
      Caffe::set_random_seed(1701);
      Blob<Dtype> bottom(2, C, H, W), top;
      FillGaussian(&bottom);
      vector<Blob<Dtype>*> bottoms(1, &bottom), tops(1, &top);
      shared_ptr<ConvolutionLayer<Dtype> > layer(PaddedConvolution<Dtype>(M, pad));
      layer->SetUp(bottoms, tops);
      const int Ho = H + 2 * pad - 2, Wo = W + 2 * pad - 2;
      const int input[3] = {C, H, W}, output[2] = {Ho, Wo}, kernel[2] = {3, 3};
      const int pads[2] = {pad, pad}, one[2] = {1, 1};
      const ShiftedConv g = ShiftedConv::ForLayer(2, false, 1, C, input, M, output, kernel,
                                                  pads, one, one);
      ASSERT_TRUE(g.winograd && g.winograd_data && g.winograd_weights);
      GradientChecker<Dtype> checker(1e-1, 1e-3);
      const int outputs[] = {0, Wo - 1, 2 * Wo + 3, (M + 5) * Ho * Wo + Wo * (Ho - 1),
                             2 * M * Ho * Wo - 1};
      for (int output_index : outputs) {
        checker.CheckGradientSingle(layer.get(), bottoms, tops, -1, 0, output_index);
      }
    }
  }
}

}  // namespace caffe
