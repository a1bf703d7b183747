// CPU kernels of Passoc and SpixelFeature2 on one run of pixels.
//
// Passoc and SpixelFeature2 work on one run of pixels: pixels
// [begin, end) of one image row that share their initial cell, hence their 9
// candidate superpixels `neighbours` (-1 where outside the grid). Plain
// pointers and ints, no Caffe types. Planes are `spatial` values apart;
// `pixels`, `dist`, `assoc` and their diffs point at the row's first pixel.
// Superpixel arrays are C x K (K = num_spixels). The layers run rows in
// parallel and call these once per run.
#ifndef CAFFE_SSN_CPU_KERNELS_HPP_
#define CAFFE_SSN_CPU_KERNELS_HPP_

namespace caffe {
namespace ssn {

#define SSN_DECLARE_RUN_KERNELS(T)                                            \
  /* dist[c][x] = scale * sum_k (pixels[k][x] - spixels[k][j_c])^2, or     */ \
  /* `invalid` where j_c < 0. */                                              \
  void passoc_forward_run(const T* pixels, const T* spixels,                 \
                          const int* neighbours, int channels, int spatial,  \
                          int num_spixels, T scale, T invalid, int begin,    \
                          int end, T* dist);                                  \
  /* pixel_diff[k][x] += sum_c g_c(x); spixel_diff[k][j_c] -= sum_x g_c(x) */ \
  /* with g_c(x) = twice_scale * dist_diff[c][x] (pixels - spixels).      */ \
  void passoc_backward_run(const T* pixels, const T* spixels,                \
                           const int* neighbours, int channels, int spatial, \
                           int num_spixels, T twice_scale, const T* dist_diff, \
                           int begin, int end, T* pixel_diff,                 \
                           T* spixel_diff);                                   \
  /* weights[j_c] += sum_x assoc[c][x];                                    */ \
  /* sums[k][j_c] += sum_x assoc[c][x] pixels[k][x]. */                       \
  void spixel_feature2_forward_run(const T* pixels, const T* assoc,          \
                                   const int* neighbours, int channels,      \
                                   int spatial, int num_spixels, int begin,  \
                                   int end, T* sums, T* weights);            \
  /* For live j_c (alive[j] != 0): pixel_diff[k][x] += g[k][j_c] assoc[c][x] */ \
  /* and assoc_diff[c][x] += sum_k g[k][j_c] (pixels[k][x] - centroids[k][j_c]) */ \
  /* with g = dL/dS / W. */                                                   \
  void spixel_feature2_backward_run(const T* pixels, const T* assoc,         \
                                    const T* centroids, const T* scaled_grad, \
                                    const unsigned char* alive,               \
                                    const int* neighbours, int channels,      \
                                    int spatial, int num_spixels, int begin,  \
                                    int end, T* pixel_diff, T* assoc_diff);

SSN_DECLARE_RUN_KERNELS(float)
SSN_DECLARE_RUN_KERNELS(double)
#undef SSN_DECLARE_RUN_KERNELS

}  // namespace ssn
}  // namespace caffe

#endif  // CAFFE_SSN_CPU_KERNELS_HPP_
