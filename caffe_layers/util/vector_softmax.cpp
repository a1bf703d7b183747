#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "caffe/ssn/vector_softmax.hpp"

// Float comparisons may trap by default, which keeps GCC from turning the
// selects below (clamps, maxima) into vector code; nothing here reads the FP
// exception flags.
#pragma GCC optimize("no-trapping-math")

#include "caffe/ssn/vector_clones.hpp"
#include "caffe/ssn/vector_exp.hpp"

namespace caffe {
namespace ssn {
namespace {

// Positions per block: a block's channels stay in L1 between the three passes.
const int kBlock = 256;

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
