#include "caffe/layers/shifted_conv.hpp"

#include <algorithm>
#include <vector>

#include "caffe/layers/ssn_layer_util.hpp"
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

// c (m x n, leading dimension ldc) = a (m x k, lda) * b (k x n, ldb) + beta * c.
void strided_gemm(int m, int n, int k, const float* a, int lda, const float* b, int ldb,
                  float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.f, a, lda, b, ldb,
              beta, c, ldc);
}

void strided_gemm(int m, int n, int k, const double* a, int lda, const double* b, int ldb,
                  double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1., a, lda, b, ldb,
              beta, c, ldc);
}

// Output rows per block of kShiftInputs products: the block's M x rows x Wp
// sums stay in cache while the taps accumulate into them.
const int kRowsPerBlock = 32;

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
  } else {
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

size_t ShiftedConv::scratch_size() const {
  const size_t rows = static_cast<size_t>(taps()) * out_channels;
  const size_t products = rows * channels + rows * height * width;
  const size_t padded_width = width + 2 * pad_w;
  const size_t padded_plane = (height + 2 * pad_h) * padded_width;
  const size_t inputs = rows * channels + channels * padded_plane +
                        (kernel_w - 1) * dilation_w +  // the last view's overhang
                        static_cast<size_t>(out_channels) * out_height * padded_width;
  return std::max(products, inputs);
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
  if (strategy == kShiftInputs) {
    ForwardShiftingInputs(input, weights, output);
  } else {
    ForwardShiftingProducts(input, weights, output);
  }
}

template <typename Dtype>
void ShiftedConv::ForwardShiftingInputs(const Dtype* input, const Dtype* weights,
                                        Dtype* output) const {
  const int T = taps(), M = out_channels, C = channels, H = height, W = width;
  const int Wp = W + 2 * pad_w, Hp = H + 2 * pad_h;
  const size_t plane = static_cast<size_t>(Hp) * Wp;
  const size_t sums_ld = static_cast<size_t>(out_height) * Wp;
  Dtype* arranged = scratch<Dtype>(scratch_size());
  Dtype* padded = arranged + static_cast<size_t>(T) * M * C;
  Dtype* sums = padded + C * plane + (kernel_w - 1) * dilation_w;
  ArrangeWeights(weights, arranged);
  ssn::parallel_rows(C * Hp, [&](int row) {
    const int c = row / Hp, py = row % Hp, iy = py - pad_h;
    Dtype* out = padded + static_cast<size_t>(row) * Wp;
    if (iy < 0 || iy >= H) {
      std::fill(out, out + Wp, Dtype(0));
      return;
    }
    const Dtype* in = input + (static_cast<size_t>(c) * H + iy) * W;
    std::fill(out, out + pad_w, Dtype(0));
    std::copy(in, in + W, out + pad_w);
    std::fill(out + pad_w + W, out + Wp, Dtype(0));
  });
  std::fill(padded + C * plane, sums, Dtype(0));
  // Output pixel (oy, ox) of tap (a, b) reads padded[(oy + a*dh) * Wp + ox + b*dw].
  for (int first_row = 0; first_row < out_height; first_row += kRowsPerBlock) {
    const int rows = std::min(kRowsPerBlock, out_height - first_row);
    for (int t = 0; t < T; ++t) {
      const int a = t / kernel_w, b = t % kernel_w;
      const Dtype* view = padded + static_cast<size_t>(first_row + a * dilation_h) * Wp +
                          b * dilation_w;
      strided_gemm(M, rows * Wp, C, arranged + static_cast<size_t>(t) * M * C, C, view,
                   static_cast<int>(plane), t == 0 ? Dtype(0) : Dtype(1),
                   sums + static_cast<size_t>(first_row) * Wp, static_cast<int>(sums_ld));
    }
  }
  ssn::parallel_rows(M * out_height, [&](int row) {
    const int m = row / out_height, oy = row % out_height;
    const Dtype* in = sums + m * sums_ld + static_cast<size_t>(oy) * Wp;
    std::copy(in, in + out_width, output + static_cast<size_t>(row) * out_width);
  });
}

template <typename Dtype>
void ShiftedConv::ForwardShiftingProducts(const Dtype* input, const Dtype* weights,
                                          Dtype* output) const {
  const int T = taps(), M = out_channels, H = height, W = width;
  Dtype* arranged = scratch<Dtype>(scratch_size());
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
  const int T = taps(), M = out_channels;
  Dtype* arranged = scratch<Dtype>(scratch_size());
  Dtype* shifted = arranged + static_cast<size_t>(T) * M * channels;
  ArrangeWeights(weights, arranged);
  ShiftOutputDiff(output_diff, shifted);
  caffe_cpu_gemm<Dtype>(CblasTrans, CblasNoTrans, channels, height * width, T * M,
                        Dtype(1), arranged, shifted, Dtype(0), input_diff);
}

template <typename Dtype>
void ShiftedConv::BackwardWeights(const Dtype* input, const Dtype* output_diff,
                                  Dtype* weight_diff) const {
  const int T = taps(), M = out_channels, C = channels;
  Dtype* per_tap = scratch<Dtype>(scratch_size());
  Dtype* shifted = per_tap + static_cast<size_t>(T) * M * C;
  ShiftOutputDiff(output_diff, shifted);
  caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasTrans, T * M, C, height * width, Dtype(1),
                        shifted, input, Dtype(0), per_tap);
  for (int m = 0; m < M; ++m) {
    for (int c = 0; c < C; ++c) {
      for (int t = 0; t < T; ++t) {
        weight_diff[(static_cast<size_t>(m) * C + c) * T + t] +=
            per_tap[(static_cast<size_t>(t) * M + m) * C + c];
      }
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
