#include "caffe/ssn/shifted_conv.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "caffe/ssn/layer_util.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

namespace {

// One growing scratch area per thread and type, shared by every shifted
// convolution: the layer's own im2col buffer is never touched (nor allocated).
template <typename Dtype>
std::vector<Dtype>& scratch_vector() {
  thread_local std::vector<Dtype> buffer;
  return buffer;
}

template <typename Dtype>
Dtype* scratch(size_t size) {
  std::vector<Dtype>& buffer = scratch_vector<Dtype>();
  if (buffer.size() < size) buffer.resize(size);
  return buffer.data();
}

// c (m x n, leading dimension ldc) = a (m x k, lda) * op(b) + beta * c, where
// op(b) is b (k x n, ldb) or, with transpose_b, the transpose of b (n x k, ldb).
void strided_gemm(bool transpose_b, int m, int n, int k, const float* a, int lda,
                  const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, transpose_b ? CblasTrans : CblasNoTrans, m, n, k,
              1.f, a, lda, b, ldb, beta, c, ldc);
}

void strided_gemm(bool transpose_b, int m, int n, int k, const double* a, int lda,
                  const double* b, int ldb, double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, CblasNoTrans, transpose_b ? CblasTrans : CblasNoTrans, m, n, k,
              1., a, lda, b, ldb, beta, c, ldc);
}

// out (channels x out_height x out_width) holds in (channels x height x width)
// at row `top` and column `left` of each plane, zeros elsewhere.
template <typename Dtype>
void PlaceInZeros(const Dtype* in, int channels, int height, int width, int top, int left,
                  int out_height, int out_width, Dtype* out) {
  ssn::parallel_rows(channels * out_height, [&](int row) {
    const int c = row / out_height, y = row % out_height - top;
    Dtype* line = out + static_cast<size_t>(row) * out_width;
    if (y < 0 || y >= height) {
      std::fill(line, line + out_width, Dtype(0));
      return;
    }
    const Dtype* source = in + (static_cast<size_t>(c) * height + y) * width;
    std::fill(line, line + left, Dtype(0));
    std::copy(source, source + width, line + left);
    std::fill(line + left + width, line + out_width, Dtype(0));
  });
}

// out (channels x rows x width) = the first `width` columns of sums
// (channels x rows x sums_width).
template <typename Dtype>
void DropExtraColumns(const Dtype* sums, int channels, int rows, int sums_width, int width,
                      Dtype* out) {
  ssn::parallel_rows(channels * rows, [&](int row) {
    const Dtype* line = sums + static_cast<size_t>(row) * sums_width;
    std::copy(line, line + width, out + static_cast<size_t>(row) * width);
  });
}

// Output rows per block of kShiftInputs products: the block's rows of sums (or
// of output gradient) stay in cache while the taps go over them.
const int kRowsPerBlock = 32;

// Whether the Winograd switch `name` (read on every call) lets a pass run by
// Winograd: "0" never, "1" always, anything else (or unset) where `worth_it`.
bool WinogradSwitch(const char* name, bool worth_it) {
  const char* setting = std::getenv(name);
  if (setting != nullptr && std::strcmp(setting, "0") == 0) return false;
  return worth_it || (setting != nullptr && std::strcmp(setting, "1") == 0);
}

}  // namespace

template <typename Dtype>
size_t ShiftedConv::scratch_held() {
  return scratch_vector<Dtype>().size();
}

ShiftedConv ShiftedConv::ForLayer(int num_spatial_axes, bool reversed_or_nd, int group,
                                  int channels, const int* input_shape, int out_channels,
                                  const int* output_shape, const int* kernel,
                                  const int* pad, const int* stride,
                                  const int* dilation) {
  ShiftedConv conv;
  if (num_spatial_axes != 2 || reversed_or_nd || group != 1 || stride[0] != 1 ||
      stride[1] != 1 || kernel[0] * kernel[1] == 1) {
    return conv;
  }
  if (out_channels < channels) {
    conv.strategy = kShiftProducts;
  } else if (channels >= kMinShiftInputChannels) {
    conv.strategy = kShiftInputs;
  }
  const bool winograd_kernel = kernel[0] == 3 && kernel[1] == 3 && dilation[0] == 1 &&
                               dilation[1] == 1;
  conv.winograd = winograd_kernel &&
      WinogradSwitch("SSN_CONV_WINOGRAD", channels >= kMinWinogradChannels &&
                     out_channels >= kMinWinogradOutputs &&
                     output_shape[0] * output_shape[1] >= kMinWinogradPixels);
  // The input gradient as a convolution of M to C channels on H x W pixels,
  // with padding 2 - p >= 0. Both gradients where the forward's sizes hold
  // (C and M swapped for the input's), except narrowing by more than 5: the
  // feature CNN's last convolution as one layer (197 to 15) was no faster by
  // Winograd than by shifting products (2 threads, batch 6 of 201x201: about
  // the same for the input gradient, 5-15% slower for the weights'), while
  // ConcatConvolution's 64-to-15 parts were about 1.5x faster by Winograd.
  conv.winograd_data = winograd_kernel && pad[0] <= 2 && pad[1] <= 2 &&
      WinogradSwitch("SSN_CONV_WINOGRAD_BACKWARD", out_channels >= kMinWinogradChannels &&
                     channels >= kMinWinogradOutputs && 5 * out_channels >= channels &&
                     input_shape[1] * input_shape[2] >= kMinWinogradPixels);
  conv.winograd_weights = winograd_kernel &&
      WinogradSwitch("SSN_CONV_WINOGRAD_BACKWARD", channels >= kMinWinogradChannels &&
                     out_channels >= kMinWinogradOutputs && 5 * out_channels >= channels &&
                     output_shape[0] * output_shape[1] >= kMinWinogradPixels);
  if (!conv.applies_forward() && !conv.applies_backward_data() &&
      !conv.applies_backward_weights()) {
    return conv;
  }
  conv.channels = channels;
  conv.height = input_shape[1];
  conv.width = input_shape[2];
  conv.out_channels = out_channels;
  conv.out_height = output_shape[0];
  conv.out_width = output_shape[1];
  conv.kernel_h = kernel[0];
  conv.kernel_w = kernel[1];
  conv.pad_h = pad[0];
  conv.pad_w = pad[1];
  conv.dilation_h = dilation[0];
  conv.dilation_w = dilation[1];
  return conv;
}

WinogradConv ShiftedConv::winograd_conv() const {
  WinogradConv conv;
  conv.channels = channels;
  conv.height = height;
  conv.width = width;
  conv.out_channels = out_channels;
  conv.out_height = out_height;
  conv.out_width = out_width;
  conv.pad_h = pad_h;
  conv.pad_w = pad_w;
  conv.threads = ssn::max_threads();
  conv.tile = 4;
  return conv;
}

WinogradConv ShiftedConv::winograd_data_conv() const {
  WinogradConv conv = winograd_conv();
  conv.channels = out_channels;
  conv.height = out_height;
  conv.width = out_width;
  conv.out_channels = channels;
  conv.out_height = height;
  conv.out_width = width;
  conv.pad_h = 2 - pad_h;
  conv.pad_w = 2 - pad_w;
  return conv;
}

size_t ShiftedConv::backward_data_scratch_size() const {
  if (!winograd_data) return backward_scratch_size();
  return static_cast<size_t>(channels) * out_channels * 9 +
         winograd_data_conv().scratch_size();
}

size_t ShiftedConv::backward_weights_scratch_size() const {
  return winograd_weights ? winograd_conv().weights_scratch_size() : backward_scratch_size();
}

size_t ShiftedConv::products_scratch_size() const {
  const size_t rows = static_cast<size_t>(taps()) * out_channels;
  return rows * channels + rows * height * width;
}

bool ShiftedConv::backward_data_shifts_inputs() const {
  return strategy == kShiftInputs && backward_pad_h() >= 0 && backward_pad_w() >= 0;
}

size_t ShiftedConv::forward_scratch_size() const {
  return winograd ? winograd_conv().scratch_size() : backward_scratch_size();
}

size_t ShiftedConv::scratch_size() const {
  return std::max(std::max(forward_scratch_size(), backward_scratch_size()),
                  std::max(backward_data_scratch_size(), backward_weights_scratch_size()));
}

// The scratch of the backward passes, and of the forward without Winograd.
size_t ShiftedConv::backward_scratch_size() const {
  if (strategy == kIm2col) return 0;
  if (strategy != kShiftInputs) return products_scratch_size();
  const size_t weights = static_cast<size_t>(taps()) * out_channels * channels;
  const size_t overhang = (kernel_w - 1) * dilation_w;  // the last view reads past a plane
  const size_t padded_width = width + 2 * pad_w;
  const size_t input_side = channels * (height + 2 * pad_h) * padded_width + overhang +
                            static_cast<size_t>(out_channels) * out_height * padded_width;
  const size_t back_width = out_width + 2 * backward_pad_w();
  const size_t output_side = backward_data_shifts_inputs()
      ? static_cast<size_t>(out_channels) * (out_height + 2 * backward_pad_h()) * back_width +
            overhang + static_cast<size_t>(channels) * height * back_width
      : products_scratch_size() - weights;
  return weights + std::max(input_side, output_side);
}

// arranged (taps*M x C), row t*M + m: the weights of tap t for output m.
template <typename Dtype>
void ShiftedConv::ArrangeWeights(const Dtype* weights, Dtype* arranged) const {
  const int T = taps(), M = out_channels, C = channels;
  for (int m = 0; m < M; ++m) {
    for (int c = 0; c < C; ++c) {
      for (int t = 0; t < T; ++t) {
        arranged[(static_cast<size_t>(t) * M + m) * C + c] =
            weights[(static_cast<size_t>(m) * C + c) * T + t];
      }
    }
  }
}

// shifted (taps*M x H x W), row t*M + m: output_diff[m] moved onto the input
// pixels that tap t reads, zero where no output pixel reads them.
template <typename Dtype>
void ShiftedConv::ShiftOutputDiff(const Dtype* output_diff, Dtype* shifted) const {
  const int M = out_channels, H = height, W = width;
  ssn::parallel_rows(taps() * M * H, [&](int row) {
    const int iy = row % H, m = (row / H) % M, t = row / (H * M);
    const int a = t / kernel_w, b = t % kernel_w;
    Dtype* out = shifted + static_cast<size_t>(row) * W;
    const int oy = iy + pad_h - a * dilation_h;
    const int shift = pad_w - b * dilation_w;  // ox = ix + shift
    const int begin = std::min(W, std::max(0, -shift));
    const int end = std::max(begin, std::min(W, out_width - shift));
    if (oy < 0 || oy >= out_height) {
      std::fill(out, out + W, Dtype(0));
      return;
    }
    const Dtype* in = output_diff + (static_cast<size_t>(m) * out_height + oy) * out_width;
    std::fill(out, out + begin, Dtype(0));
    for (int ix = begin; ix < end; ++ix) out[ix] = in[ix + shift];
    std::fill(out + end, out + W, Dtype(0));
  });
}

template <typename Dtype>
void ShiftedConv::Forward(const Dtype* input, const Dtype* weights, Dtype* output) const {
  if (winograd) {
    const WinogradConv conv = winograd_conv();
    conv.Forward(input, weights, output, scratch<Dtype>(conv.scratch_size()));
  } else if (strategy == kShiftInputs) {
    ForwardShiftingInputs(input, weights, output);
  } else {
    ForwardShiftingProducts(input, weights, output);
  }
}

// sums (out x rows x Wp) = sum over taps t of tap_weights[t] (out x in) times the
// view of padded (in planes of Hp x Wp, rows = Hp - dh (kh - 1)) that tap t
// reads: output pixel (y, x) of tap (a, b) reads padded[(y + a dh) Wp + x + b dw].
// The Wp - (Wp - dw (kw - 1)) last columns of each row of sums are spurious.
template <typename Dtype>
void ShiftedConv::TapProducts(const Dtype* padded, int in, int padded_height,
                              int padded_width, const Dtype* tap_weights, int out,
                              Dtype* sums) const {
  const int rows_out = padded_height - dilation_h * (kernel_h - 1);
  const int plane = padded_height * padded_width;
  const int sums_ld = rows_out * padded_width;
  for (int first_row = 0; first_row < rows_out; first_row += kRowsPerBlock) {
    const int rows = std::min(kRowsPerBlock, rows_out - first_row);
    for (int t = 0; t < taps(); ++t) {
      const int a = t / kernel_w, b = t % kernel_w;
      const Dtype* view = padded + static_cast<size_t>(first_row + a * dilation_h) *
                          padded_width + b * dilation_w;
      strided_gemm(false, out, rows * padded_width, in,
                   tap_weights + static_cast<size_t>(t) * out * in, in, view, plane,
                   t == 0 ? Dtype(0) : Dtype(1),
                   sums + static_cast<size_t>(first_row) * padded_width, sums_ld);
    }
  }
}

// out (out x out_rows x out_cols) = the convolution of in (in_planes x H x W),
// zero-padded by (pad_y, pad_x), with tap_weights (taps x out x in_planes), by
// TapProducts; `work` is scratch for the padded input and the sums.
template <typename Dtype>
void ShiftedConv::ConvolveByTaps(const Dtype* in, int in_planes, int in_height, int in_width,
                                 int pad_y, int pad_x, const Dtype* tap_weights, int out,
                                 int out_rows, int out_cols, Dtype* work,
                                 Dtype* result) const {
  const int Hp = in_height + 2 * pad_y, Wp = in_width + 2 * pad_x;
  const size_t overhang = (kernel_w - 1) * dilation_w;
  Dtype* padded = work;
  Dtype* sums = padded + static_cast<size_t>(in_planes) * Hp * Wp + overhang;
  PlaceInZeros(in, in_planes, in_height, in_width, pad_y, pad_x, Hp, Wp, padded);
  std::fill(sums - overhang, sums, Dtype(0));
  TapProducts(padded, in_planes, Hp, Wp, tap_weights, out, sums);
  DropExtraColumns(sums, out, out_rows, Wp, out_cols, result);
}

template <typename Dtype>
void ShiftedConv::ForwardShiftingInputs(const Dtype* input, const Dtype* weights,
                                        Dtype* output) const {
  Dtype* arranged = scratch<Dtype>(backward_scratch_size());
  ArrangeWeights(weights, arranged);
  ConvolveByTaps(input, channels, height, width, pad_h, pad_w, arranged, out_channels,
                 out_height, out_width, arranged + static_cast<size_t>(taps()) *
                 out_channels * channels, output);
}

template <typename Dtype>
void ShiftedConv::ForwardShiftingProducts(const Dtype* input, const Dtype* weights,
                                          Dtype* output) const {
  const int T = taps(), M = out_channels, H = height, W = width;
  Dtype* arranged = scratch<Dtype>(backward_scratch_size());
  Dtype* per_tap = arranged + static_cast<size_t>(T) * M * channels;
  ArrangeWeights(weights, arranged);
  caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, T * M, H * W, channels, Dtype(1),
                        arranged, input, Dtype(0), per_tap);
  ssn::parallel_rows(M * out_height, [&](int row) {
    const int m = row / out_height, oy = row % out_height;
    Dtype* out = output + static_cast<size_t>(row) * out_width;
    std::fill(out, out + out_width, Dtype(0));
    for (int a = 0; a < kernel_h; ++a) {
      const int iy = oy - pad_h + a * dilation_h;
      if (iy < 0 || iy >= H) continue;
      for (int b = 0; b < kernel_w; ++b) {
        const int shift = b * dilation_w - pad_w;  // ix = ox + shift
        const int begin = std::min(out_width, std::max(0, -shift));
        const int end = std::max(begin, std::min(out_width, W - shift));
        const Dtype* in = per_tap +
            ((static_cast<size_t>(a * kernel_w + b) * M + m) * H + iy) * W;
        for (int ox = begin; ox < end; ++ox) out[ox] += in[ox + shift];
      }
    }
  });
}

template <typename Dtype>
void ShiftedConv::BackwardData(const Dtype* output_diff, const Dtype* weights,
                               Dtype* input_diff) const {
  if (winograd_data) {
    BackwardDataByWinograd(output_diff, weights, input_diff);
  } else if (backward_data_shifts_inputs()) {
    BackwardDataShiftingInputs(output_diff, weights, input_diff);
  } else {
    BackwardDataShiftingProducts(output_diff, weights, input_diff);
  }
}

// input_diff (C x H x W) = the Winograd convolution of output_diff (M x Ho x Wo),
// zero-padded by 2 - p, with rotated[c][m][a][b] = w[m][c][2 - a][2 - b].
template <typename Dtype>
void ShiftedConv::BackwardDataByWinograd(const Dtype* output_diff, const Dtype* weights,
                                         Dtype* input_diff) const {
  const int M = out_channels, C = channels;
  const WinogradConv conv = winograd_data_conv();
  Dtype* rotated = scratch<Dtype>(backward_data_scratch_size());
  for (int c = 0; c < C; ++c) {
    for (int m = 0; m < M; ++m) {
      const Dtype* kernel = weights + (static_cast<size_t>(m) * C + c) * 9;
      Dtype* turned = rotated + (static_cast<size_t>(c) * M + m) * 9;
      for (int t = 0; t < 9; ++t) turned[t] = kernel[8 - t];
    }
  }
  conv.Forward(output_diff, rotated, input_diff,
               rotated + static_cast<size_t>(C) * M * 9);
}

// input_diff[c](y, x) = sum over m, a, b of w[m][c][a][b] output_diff[m](y + ph -
// a dh, x + pw - b dw): a convolution of output_diff, zero-padded by
// dh (kh - 1) - ph and dw (kw - 1) - pw, with the flipped, transposed kernel.
template <typename Dtype>
void ShiftedConv::BackwardDataShiftingInputs(const Dtype* output_diff, const Dtype* weights,
                                             Dtype* input_diff) const {
  const int T = taps(), M = out_channels, C = channels;
  Dtype* flipped = scratch<Dtype>(backward_scratch_size());
  for (int t = 0; t < T; ++t) {  // flipped[t][c][m] = w[m][c][T - 1 - t]
    for (int c = 0; c < C; ++c) {
      for (int m = 0; m < M; ++m) {
        flipped[(static_cast<size_t>(t) * C + c) * M + m] =
            weights[(static_cast<size_t>(m) * C + c) * T + T - 1 - t];
      }
    }
  }
  ConvolveByTaps(output_diff, M, out_height, out_width, backward_pad_h(), backward_pad_w(),
                 flipped, C, height, width, flipped + static_cast<size_t>(T) * C * M,
                 input_diff);
}

template <typename Dtype>
void ShiftedConv::BackwardDataShiftingProducts(const Dtype* output_diff, const Dtype* weights,
                                               Dtype* input_diff) const {
  const int T = taps(), M = out_channels;
  Dtype* arranged = scratch<Dtype>(backward_scratch_size());
  Dtype* shifted = arranged + static_cast<size_t>(T) * M * channels;
  ArrangeWeights(weights, arranged);
  ShiftOutputDiff(output_diff, shifted);
  caffe_cpu_gemm<Dtype>(CblasTrans, CblasNoTrans, channels, height * width, T * M,
                        Dtype(1), arranged, shifted, Dtype(0), input_diff);
}

template <typename Dtype>
void ShiftedConv::BackwardWeights(const Dtype* input, const Dtype* output_diff,
                                  Dtype* weight_diff) const {
  if (winograd_weights) {
    const WinogradConv conv = winograd_conv();
    conv.BackwardWeights(input, output_diff, weight_diff,
                         scratch<Dtype>(conv.weights_scratch_size()));
    return;
  }
  const int T = taps(), M = out_channels, C = channels;
  Dtype* per_tap = scratch<Dtype>(backward_scratch_size());
  if (strategy == kShiftInputs) {
    TapWeightGradients(input, output_diff, per_tap);
  } else {
    Dtype* shifted = per_tap + static_cast<size_t>(T) * M * C;
    ShiftOutputDiff(output_diff, shifted);
    caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasTrans, T * M, C, height * width, Dtype(1),
                          shifted, input, Dtype(0), per_tap);
  }
  for (int m = 0; m < M; ++m) {
    for (int c = 0; c < C; ++c) {
      for (int t = 0; t < T; ++t) {
        weight_diff[(static_cast<size_t>(m) * C + c) * T + t] +=
            per_tap[(static_cast<size_t>(t) * M + m) * C + c];
      }
    }
  }
}

// per_tap (taps*M x C), row t*M + m: sum over output pixels o of
// output_diff[m](o) input[c](o + offset of tap t), as products of the output
// gradient (rows widened to Wp with zeros) with each tap's view of the padded input.
template <typename Dtype>
void ShiftedConv::TapWeightGradients(const Dtype* input, const Dtype* output_diff,
                                     Dtype* per_tap) const {
  const int M = out_channels, C = channels;
  const int Hp = height + 2 * pad_h, Wp = width + 2 * pad_w, plane = Hp * Wp;
  const size_t overhang = (kernel_w - 1) * dilation_w;
  Dtype* padded = per_tap + static_cast<size_t>(taps()) * M * C;
  Dtype* widened = padded + static_cast<size_t>(C) * plane + overhang;
  PlaceInZeros(input, C, height, width, pad_h, pad_w, Hp, Wp, padded);
  std::fill(widened - overhang, widened, Dtype(0));
  PlaceInZeros(output_diff, M, out_height, out_width, 0, 0, out_height, Wp, widened);
  for (int first_row = 0; first_row < out_height; first_row += kRowsPerBlock) {
    const int rows = std::min(kRowsPerBlock, out_height - first_row);
    for (int t = 0; t < taps(); ++t) {
      const int a = t / kernel_w, b = t % kernel_w;
      const Dtype* view = padded + static_cast<size_t>(first_row + a * dilation_h) * Wp +
                          b * dilation_w;
      strided_gemm(true, M, C, rows * Wp, widened + static_cast<size_t>(first_row) * Wp,
                   out_height * Wp, view, plane, first_row == 0 ? Dtype(0) : Dtype(1),
                   per_tap + static_cast<size_t>(t) * M * C, C);
    }
  }
}

#define INSTANTIATE_SHIFTED_CONV(Dtype)                                              \
  template size_t ShiftedConv::scratch_held<Dtype>();                                \
  template void ShiftedConv::Forward<Dtype>(const Dtype*, const Dtype*, Dtype*) const; \
  template void ShiftedConv::BackwardData<Dtype>(const Dtype*, const Dtype*,         \
                                                 Dtype*) const;                      \
  template void ShiftedConv::BackwardWeights<Dtype>(const Dtype*, const Dtype*,      \
                                                    Dtype*) const;
INSTANTIATE_SHIFTED_CONV(float)
INSTANTIATE_SHIFTED_CONV(double)

}  // namespace caffe
