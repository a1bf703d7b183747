#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "caffe/layers/ssn_cpu_kernels.hpp"
#include "caffe/ssn/ssn_math.cuh"

// Float comparisons may trap by default, which keeps GCC from turning the
// selects below (clamps, maxima) into vector code; nothing here reads the FP
// exception flags.
#pragma GCC optimize("no-trapping-math")

// The exported kernels come in one clone per instruction set, picked when the
// library loads: x86-64-v3 (AVX2, FMA) runs the vector loops twice as wide as
// the SSE2 baseline. The bodies they call are inlined into each clone.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SSN_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SSN_VECTOR_CLONES
#endif
#define SSN_ALWAYS_INLINE inline __attribute__((always_inline))

namespace caffe {
namespace ssn {
namespace {

template <typename T>
SSN_ALWAYS_INLINE void PassocForwardRun(
    const T* pixels, const T* spixels, const int* neighbours, int channels,
    int spatial, int num_spixels, T scale, T invalid, int begin, int end,
    T* dist) {
  for (int c = 0; c < kNumNeighbours; ++c) {
    T* out = dist + c * spatial;
    const int j = neighbours[c];
    if (j < 0) {
      std::fill(out + begin, out + end, invalid);
      continue;
    }
    std::fill(out + begin, out + end, T(0));
    for (int k = 0; k < channels; ++k) {
      const T* f = pixels + k * spatial;
      const T s = spixels[k * num_spixels + j];
#pragma omp simd
      for (int x = begin; x < end; ++x) out[x] += (f[x] - s) * (f[x] - s);
    }
#pragma omp simd
    for (int x = begin; x < end; ++x) out[x] *= scale;
  }
}

template <typename T>
SSN_ALWAYS_INLINE void PassocBackwardRun(
    const T* pixels, const T* spixels, const int* neighbours, int channels,
    int spatial, int num_spixels, T twice_scale, const T* dist_diff, int begin,
    int end, T* pixel_diff, T* spixel_diff) {
  for (int c = 0; c < kNumNeighbours; ++c) {
    const int j = neighbours[c];
    if (j < 0) continue;
    const T* g = dist_diff + c * spatial;
    for (int k = 0; k < channels; ++k) {
      const T* f = pixels + k * spatial;
      T* df = pixel_diff + k * spatial;
      const T s = spixels[k * num_spixels + j];
      T ds = 0;
#pragma omp simd reduction(+:ds)
      for (int x = begin; x < end; ++x) {
        const T step = twice_scale * g[x] * (f[x] - s);
        df[x] += step;
        ds -= step;
      }
      spixel_diff[k * num_spixels + j] += ds;
    }
  }
}

template <typename T>
SSN_ALWAYS_INLINE void SpixelFeature2ForwardRun(
    const T* pixels, const T* assoc, const int* neighbours, int channels,
    int spatial, int num_spixels, int begin, int end, T* sums, T* weights) {
  for (int c = 0; c < kNumNeighbours; ++c) {
    const int j = neighbours[c];
    if (j < 0) continue;
    const T* q = assoc + c * spatial;
    T weight = 0;
#pragma omp simd reduction(+:weight)
    for (int x = begin; x < end; ++x) weight += q[x];
    weights[j] += weight;
    for (int k = 0; k < channels; ++k) {
      const T* f = pixels + k * spatial;
      T sum = 0;
#pragma omp simd reduction(+:sum)
      for (int x = begin; x < end; ++x) sum += q[x] * f[x];
      sums[k * num_spixels + j] += sum;
    }
  }
}

template <typename T>
SSN_ALWAYS_INLINE void SpixelFeature2BackwardRun(
    const T* pixels, const T* assoc, const T* centroids, const T* scaled_grad,
    const unsigned char* alive, const int* neighbours, int channels,
    int spatial, int num_spixels, int begin, int end, T* pixel_diff,
    T* assoc_diff) {
  for (int c = 0; c < kNumNeighbours; ++c) {
    const int j = neighbours[c];
    if (j < 0 || !alive[j]) continue;
    const T* q = assoc + c * spatial;
    T* dq = assoc_diff + c * spatial;
    for (int k = 0; k < channels; ++k) {
      const T* f = pixels + k * spatial;
      T* df = pixel_diff + k * spatial;
      const T g = scaled_grad[k * num_spixels + j];
      const T s = centroids[k * num_spixels + j];
#pragma omp simd
      for (int x = begin; x < end; ++x) {
        df[x] += g * q[x];
        dq[x] += g * (f[x] - s);
      }
    }
  }
}

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

#define SSN_DEFINE_RUN_KERNELS(T)                                             \
  SSN_VECTOR_CLONES void passoc_forward_run(const T* pixels, const T* spixels,      \
      const int* neighbours, int channels, int spatial, int num_spixels,      \
      T scale, T invalid, int begin, int end, T* dist) {                      \
    PassocForwardRun(pixels, spixels, neighbours, channels, spatial,          \
                     num_spixels, scale, invalid, begin, end, dist);          \
  }                                                                           \
  SSN_VECTOR_CLONES void passoc_backward_run(const T* pixels, const T* spixels,     \
      const int* neighbours, int channels, int spatial, int num_spixels,      \
      T twice_scale, const T* dist_diff, int begin, int end, T* pixel_diff,   \
      T* spixel_diff) {                                                       \
    PassocBackwardRun(pixels, spixels, neighbours, channels, spatial,         \
                      num_spixels, twice_scale, dist_diff, begin, end,        \
                      pixel_diff, spixel_diff);                               \
  }                                                                           \
  SSN_VECTOR_CLONES void spixel_feature2_forward_run(const T* pixels,               \
      const T* assoc, const int* neighbours, int channels, int spatial,       \
      int num_spixels, int begin, int end, T* sums, T* weights) {             \
    SpixelFeature2ForwardRun(pixels, assoc, neighbours, channels, spatial,    \
                             num_spixels, begin, end, sums, weights);         \
  }                                                                           \
  SSN_VECTOR_CLONES void spixel_feature2_backward_run(const T* pixels,              \
      const T* assoc, const T* centroids, const T* scaled_grad,               \
      const unsigned char* alive, const int* neighbours, int channels,        \
      int spatial, int num_spixels, int begin, int end, T* pixel_diff,        \
      T* assoc_diff) {                                                        \
    SpixelFeature2BackwardRun(pixels, assoc, centroids, scaled_grad, alive,   \
                              neighbours, channels, spatial, num_spixels,     \
                              begin, end, pixel_diff, assoc_diff);            \
  }

SSN_DEFINE_RUN_KERNELS(float)
SSN_DEFINE_RUN_KERNELS(double)
#undef SSN_DEFINE_RUN_KERNELS

void softmax_forward(const float* in, int outer, int channels, int inner, float* out) {
  SoftmaxForward(in, outer, channels, inner, out);
}

void softmax_forward(const double* in, int outer, int channels, int inner, double* out) {
  SoftmaxForward(in, outer, channels, inner, out);
}

}  // namespace ssn
}  // namespace caffe
