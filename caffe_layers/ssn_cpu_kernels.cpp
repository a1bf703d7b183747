#include <algorithm>
#include <cstddef>

#include "caffe/ssn/cpu_kernels.hpp"
#include "caffe/ssn/math.hpp"

// Float comparisons may trap by default, which keeps GCC from turning the
// selects below (clamps, maxima) into vector code; nothing here reads the FP
// exception flags.
#pragma GCC optimize("no-trapping-math")

#include "caffe/ssn/vector_clones.hpp"

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

}  // namespace ssn
}  // namespace caffe
