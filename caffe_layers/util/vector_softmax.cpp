#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "caffe/util/vector_softmax.hpp"

// Float comparisons may trap by default, which keeps GCC from turning the
// selects below (clamps, maxima) into vector code; nothing here reads the FP
// exception flags.
#pragma GCC optimize("no-trapping-math")

#include "caffe/util/vector_clones.hpp"

namespace caffe {
namespace ssn {
namespace {

// Positions per block: a block's channels stay in L1 between the three passes.
const int kBlock = 256;

// exp(x) for x <= 0 by Cody-Waite reduction x = n ln 2 + r, |r| <= ln 2 / 2,
// and the Cephes minimax polynomial for exp(r); 0 below the float range.
SSN_ALWAYS_INLINE float exp_nonpositive(
    float x) {
  const float kLog2e = 1.44269504088896341f;
  const float kRound = 12582912.f;  // 1.5 * 2^23: adding it rounds to an integer
  const float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  const float clamped = x < -87.f ? -87.f : x;
  const float n = (clamped * kLog2e + kRound) - kRound;
  const float r = (clamped - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const float scale = __builtin_bit_cast(float, (static_cast<int32_t>(n) + 127) << 23);
  return x < -87.f ? 0.f : p * scale;
}

inline double exp_nonpositive(double x) { return std::exp(x); }

// Positions [begin, end) of one outer slice; in and out point at the slice.
// Always inlined, so that each clone below compiles it for its instruction set.
template <typename T>
SSN_ALWAYS_INLINE void SoftmaxBlock(
    const T* in, int channels, int inner, int begin, int end, T* out) {
  T max_value[kBlock], sum[kBlock];
  const int n = end - begin;
  in += begin;
  out += begin;
#pragma omp simd
  for (int p = 0; p < n; ++p) max_value[p] = in[p];
  for (int c = 1; c < channels; ++c) {
    const T* x = in + static_cast<size_t>(c) * inner;
#pragma omp simd
    for (int p = 0; p < n; ++p) max_value[p] = x[p] > max_value[p] ? x[p] : max_value[p];
  }
  std::fill(sum, sum + n, T(0));
  for (int c = 0; c < channels; ++c) {
    const T* x = in + static_cast<size_t>(c) * inner;
    T* y = out + static_cast<size_t>(c) * inner;
#pragma omp simd
    for (int p = 0; p < n; ++p) {
      y[p] = exp_nonpositive(x[p] - max_value[p]);
      sum[p] += y[p];
    }
  }
#pragma omp simd
  for (int p = 0; p < n; ++p) sum[p] = T(1) / sum[p];
  for (int c = 0; c < channels; ++c) {
    T* y = out + static_cast<size_t>(c) * inner;
#pragma omp simd
    for (int p = 0; p < n; ++p) y[p] *= sum[p];
  }
}

// One instance per type, each cloned per instruction set.
SSN_VECTOR_CLONES void SoftmaxBlockVectorised(const float* in, int channels, int inner,
                                              int begin, int end, float* out) {
  SoftmaxBlock(in, channels, inner, begin, end, out);
}

SSN_VECTOR_CLONES void SoftmaxBlockVectorised(const double* in, int channels, int inner,
                                              int begin, int end, double* out) {
  SoftmaxBlock(in, channels, inner, begin, end, out);
}

template <typename T>
void SoftmaxForward(const T* in, int outer, int channels, int inner, T* out) {
  const int blocks_per_slice = (inner + kBlock - 1) / kBlock;
  const int blocks = outer * blocks_per_slice;
  const size_t slice = static_cast<size_t>(channels) * inner;
#pragma omp parallel for schedule(static) if (static_cast<size_t>(outer) * slice >= 65536)
  for (int block = 0; block < blocks; ++block) {
    const int o = block / blocks_per_slice, begin = (block % blocks_per_slice) * kBlock;
    SoftmaxBlockVectorised(in + o * slice, channels, inner, begin,
                           std::min(inner, begin + kBlock), out + o * slice);
  }
}

}  // namespace

void softmax_forward(const float* in, int outer, int channels, int inner, float* out) {
  SoftmaxForward(in, outer, channels, inner, out);
}

void softmax_forward(const double* in, int outer, int channels, int inner, double* out) {
  SoftmaxForward(in, outer, channels, inner, out);
}

}  // namespace ssn
}  // namespace caffe
