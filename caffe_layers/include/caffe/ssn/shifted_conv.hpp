// Convolution without im2col for 2-D, stride-1, single-group convolutions.
//
// Caffe's CPU convolution copies every input pixel into each of the kernel's
// taps (im2col: C * taps rows of Ho * Wo) and multiplies that by the weights.
// When the output has fewer channels than the input (M < C), it is cheaper to
// multiply first and shift afterwards: Y = W_taps (taps * M x C) * X (C x H*W),
// then out[m](o) = sum over taps t of Y[t, m](o + offset_t). The arithmetic is
// the same; the scratch is taps * M rows instead of taps * C. The SSN feature
// CNN's last convolution (197 channels to 15) needs 1.1 GB of im2col buffer on a
// 481x321 image against 83 MB here. Backward uses the same idea with the output
// gradient shifted instead of the input (patches/caffe/0009-convolution-skip-im2col.patch
// hooks it into BaseConvolutionLayer).
//
// When the output has at least as many channels as the input (M >= C, C large
// enough for an efficient product), the forward shifts the input instead: with
// the input zero-padded into planes of width Wp, tap t's input pixels for every
// output pixel form one strided matrix view (offset a * Wp + b), so
// out = sum over t of W_t (M x C) * view_t (C x Ho * Wp), computed in blocks of
// rows that stay in cache; the Wp - Wo extra columns per row are dropped at the
// end. The SSN feature CNN's 64-to-64 convolutions run about 1.7x faster this
// way, with one padded copy of the input as scratch instead of taps copies.
// Backward the same way: the input gradient is the output gradient, zero-padded
// by the kernel's reach less the padding, convolved with the flipped, transposed
// kernel (where the padding exceeds the reach, the shifted products instead);
// each tap's weight gradient is the output gradient times that tap's view of
// the padded input.
//
// The forward of 3x3 convolutions with enough channels and pixels (see
// kMinWinogradChannels) goes by Winograd F(4x4, 3x3) instead (winograd_conv.hpp):
// 4x4 output tiles from 6x6 input tiles, transformed so that the sum over
// input channels is 36 products (M x C) * (C x tiles) with 4 times fewer
// multiplications than the direct sum, in blocks of tiles that stay in cache.
// The SSN feature CNN's 64-to-64 convolutions run about 2x faster forward
// than by shifting inputs, its last (197 to 15) about 1.7x faster than by
// shifting products, and the forward's scratch no longer grows with the image
// (a few MB in all).
//
// The input gradient of such a convolution (stride 1, undilated, single group)
// with padding p <= 2 on each axis is itself a 3x3 convolution: of the output
// gradient, zero-padded by 2 - p, with the kernel rotated by 180 degrees and
// its input and output channels swapped (w'[c][m][a][b] = w[m][c][2-a][2-b]);
// its output is H x W because Ho + 2 (2 - p) - 2 = H. BackwardData runs it by
// the same Winograd forward (kMinWinogradChannels etc. with the roles of C and
// M swapped); with p > 2 the reach would be negative and the strategies above
// (or im2col) remain. The weight gradient goes by Winograd too where the
// forward would (WinogradConv::BackwardWeights: a^2 products over the tiles
// of the transformed output gradient and input, 4 times fewer multiplications
// than the 9 shifted ones).
#ifndef CAFFE_SSN_SHIFTED_CONV_HPP_
#define CAFFE_SSN_SHIFTED_CONV_HPP_

#include <cstddef>

#include "caffe/ssn/winograd_conv.hpp"

namespace caffe {

// Geometry of one 2-D, stride-1, single-group convolution of one image.
struct ShiftedConv {
  enum Strategy {
    kIm2col,          // not ours: Caffe's im2col path
    kShiftProducts,   // M < C: multiply, then shift the products (all passes)
    kShiftInputs,     // M >= C: shift the padded input into each tap (all passes)
  };
  // Inputs with fewer channels than this keep im2col when widening: their
  // im2col buffer is small and a product over so few channels is inefficient.
  static const int kMinShiftInputChannels = 16;
  // 3x3 convolutions (undilated) run their forward by Winograd F(4x4, 3x3)
  // (winograd_conv.hpp) from this many input channels, this many outputs and
  // this many output pixels. Below them it was no faster: from 5 input
  // channels (im2col), to 2 outputs (shifted products), or below about 32x32
  // pixels (transforming the weights costs what the small image saves). The
  // environment variable SSN_CONV_WINOGRAD=0 turns Winograd off and =1 on for
  // every 3x3 convolution of ours, whatever its size (for tests and
  // benchmarks; read on every call).
  static const int kMinWinogradChannels = 8;
  static const int kMinWinogradOutputs = 4;
  static const int kMinWinogradPixels = 1024;
  // SSN_CONV_WINOGRAD_BACKWARD likewise for the backward passes by Winograd
  // (0 off, 1 on wherever the identities hold, unset where it pays).

  Strategy strategy = kIm2col;  // of the backward, and of the forward without Winograd
  bool winograd = false;        // the forward by WinogradConv
  bool winograd_data = false;   // BackwardData by WinogradConv (rotated kernel)
  bool winograd_weights = false;  // BackwardWeights by WinogradConv
  int channels = 0, height = 0, width = 0;          // input C x H x W
  int out_channels = 0, out_height = 0, out_width = 0;
  int kernel_h = 0, kernel_w = 0;
  int pad_h = 0, pad_w = 0;
  int dilation_h = 1, dilation_w = 1;

  // The geometry and strategies of a BaseConvolutionLayer's convolution:
  // nothing of ours unless it is 2-D, stride 1, single-group and not 1x1; then
  // kIm2col unless narrowing or widening from at least kMinShiftInputChannels,
  // and Winograd for the forward as said above. input_shape is C, H, W;
  // output_shape is Ho, Wo; the others have 2 entries.
  static ShiftedConv ForLayer(int num_spatial_axes, bool reversed_or_nd, int group,
                              int channels, const int* input_shape, int out_channels,
                              const int* output_shape, const int* kernel,
                              const int* pad, const int* stride, const int* dilation);

  // Whether the shifted strategies handle this convolution (all passes).
  bool applies() const { return strategy != kIm2col; }
  // Whether Forward does.
  bool applies_forward() const { return winograd || applies(); }
  // Whether BackwardData does.
  bool applies_backward_data() const { return winograd_data || applies(); }
  // Whether BackwardWeights does.
  bool applies_backward_weights() const { return winograd_weights || applies(); }
  int taps() const { return kernel_h * kernel_w; }
  // Floats of scratch the calls of this strategy need (the most of the three).
  size_t scratch_size() const;
  // Floats of scratch Forward needs.
  size_t forward_scratch_size() const;
  // The Winograd forward of this geometry, on all threads.
  WinogradConv winograd_conv() const;
  // The Winograd convolution that BackwardData runs (M to C channels, Ho x Wo
  // to H x W, padding 2 - p), on all threads.
  WinogradConv winograd_data_conv() const;
  // Floats of scratch BackwardData needs.
  size_t backward_data_scratch_size() const;
  // Floats of scratch BackwardWeights needs.
  size_t backward_weights_scratch_size() const;
  // Floats of scratch this thread holds (it only grows): the tests' evidence
  // that a layer took this path.
  template <typename Dtype>
  static size_t scratch_held();

  // output (M x Ho x Wo) = conv(input (C x H x W), weights (M x C x kh x kw)).
  template <typename Dtype>
  void Forward(const Dtype* input, const Dtype* weights, Dtype* output) const;
  // input_diff (C x H x W) = gradient of the input from output_diff (overwrites).
  template <typename Dtype>
  void BackwardData(const Dtype* output_diff, const Dtype* weights,
                    Dtype* input_diff) const;
  // weight_diff (M x C x kh x kw) += gradient of the weights.
  template <typename Dtype>
  void BackwardWeights(const Dtype* input, const Dtype* output_diff,
                       Dtype* weight_diff) const;

 private:
  // The padding of the output gradient that makes BackwardData a convolution.
  int backward_pad_h() const { return dilation_h * (kernel_h - 1) - pad_h; }
  int backward_pad_w() const { return dilation_w * (kernel_w - 1) - pad_w; }
  bool backward_data_shifts_inputs() const;
  size_t products_scratch_size() const;
  size_t backward_scratch_size() const;

  template <typename Dtype>
  void TapProducts(const Dtype* padded, int in, int padded_height, int padded_width,
                   const Dtype* tap_weights, int out, Dtype* sums) const;
  template <typename Dtype>
  void ConvolveByTaps(const Dtype* in, int in_planes, int in_height, int in_width, int pad_y,
                      int pad_x, const Dtype* tap_weights, int out, int out_rows,
                      int out_cols, Dtype* work, Dtype* result) const;
  template <typename Dtype>
  void BackwardDataByWinograd(const Dtype* output_diff, const Dtype* weights,
                              Dtype* input_diff) const;
  template <typename Dtype>
  void BackwardDataShiftingInputs(const Dtype* output_diff, const Dtype* weights,
                                  Dtype* input_diff) const;
  template <typename Dtype>
  void BackwardDataShiftingProducts(const Dtype* output_diff, const Dtype* weights,
                                    Dtype* input_diff) const;
  template <typename Dtype>
  void TapWeightGradients(const Dtype* input, const Dtype* output_diff,
                          Dtype* per_tap) const;
  template <typename Dtype>
  void ForwardShiftingProducts(const Dtype* input, const Dtype* weights,
                               Dtype* output) const;
  template <typename Dtype>
  void ForwardShiftingInputs(const Dtype* input, const Dtype* weights,
                             Dtype* output) const;
  template <typename Dtype>
  void ArrangeWeights(const Dtype* weights, Dtype* arranged) const;
  template <typename Dtype>
  void ShiftOutputDiff(const Dtype* output_diff, Dtype* shifted) const;
};

}  // namespace caffe

#endif  // CAFFE_SSN_SHIFTED_CONV_HPP_
