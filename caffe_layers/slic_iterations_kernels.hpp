// CPU kernels of SlicIterations (the fused SLIC iterations) on one block of
// pixels that share their initial cell, hence their 9 candidate superpixels.
//
// A block is `rows` consecutive image rows of one image, columns [begin, end)
// of each. `pixels` points at feature channel 0 of the block's first row's
// pixel 0 (channel k of pixel (r, x) is pixels[k * plane + r * width + x]: a
// feature blob, or the rows copied out of one); `labels` and `assoc` point at
// the same pixel of their maps (assoc: 9 planes `spatial` apart). Centres
// are C x K (K = num_spixels) for one image. `neighbours[c]` is neighbour c of
// the block's cell, -1 outside the grid; neighbours[4] is the cell itself.
// Plain pointers and ints, no Caffe types. The layer runs blocks in parallel
// and calls these once each.
//
// Both kernels compute, per pixel, what Passoc and Softmax compute:
//   d_c = scale * sum_k (F[k] - S[k, j_c])^2     (j_c = neighbours[c] >= 0)
//   d_c = invalid                               (j_c < 0; already scaled)
//   q_c = exp(d_c - max_c' d_c') / sum_c'' exp(d_c'' - max_c' d_c')
// with the vectorised Softmax's exp (util/vector_exp.hpp), in float or double.
#ifndef CAFFE_SLIC_ITERATIONS_KERNELS_HPP_
#define CAFFE_SLIC_ITERATIONS_KERNELS_HPP_

#include "caffe/ssn/ssn_math.cuh"

namespace caffe {
namespace ssn {

// Pixels per chunk: a block is processed in chunks of at most this many
// pixels, whose features are first copied into the scratch (a multiple of
// every vector width).
const int kSlicChunk = 256;
// The widest vector, in bytes (the centre table holds one per value).
const int kSlicVectorBytes = 32;

// Rows of a chunk's features in the scratch: C channels and a row of ones,
// rounded up to a multiple of 8 (the most lanes of a vector).
inline int slic_feature_rows(int channels) { return (channels + 1 + 7) / 8 * 8; }

// Elements of T that one call needs in `scratch` (one buffer per thread): a
// chunk's features, its associations and argmax, and the block's 9 x C
// centres, one vector each.
template <typename T>
inline int slic_scratch_size(int channels) {
  return (slic_feature_rows(channels) + kNumNeighbours + 1) * kSlicChunk +
         kNumNeighbours * channels * (kSlicVectorBytes / static_cast<int>(sizeof(T)));
}

#define SSN_DECLARE_SLIC_KERNELS(T)                                            \
  /* One update step on a block: adds, for each valid c, sum_p q_c(p)      */ \
  /* F[k, p] into sums[j_c (C + 1) + k] and sum_p q_c(p) into             */ \
  /* sums[j_c (C + 1) + C]: SpixelFeature2's sums before the division, per */ \
  /* superpixel (K x (C + 1) for one image).                               */ \
  void slic_update_block(const T* pixels, int plane, int width, int rows,       \
                         int begin, int end, const T* centres,                  \
                         const int* neighbours, int channels, int num_spixels,  \
                         T scale, T invalid, T* scratch, T* sums);              \
  /* The final assignment on a block: labels[p] = channel_labels[c*] where  */ \
  /* c* is the argmax of q (ties to the highest c, as Caffe's ArgMax);      */ \
  /* with assoc != NULL, also assoc[c * spatial + p] = q_c(p).              */ \
  void slic_assign_block(const T* pixels, int plane, int width, int rows,       \
                         int begin, int end, const T* centres,                  \
                         const int* neighbours, const T* channel_labels,        \
                         int channels, int num_spixels, T scale, T invalid,     \
                         T* scratch, T* labels, T* assoc, int spatial);

SSN_DECLARE_SLIC_KERNELS(float)
SSN_DECLARE_SLIC_KERNELS(double)
#undef SSN_DECLARE_SLIC_KERNELS

}  // namespace ssn
}  // namespace caffe

#endif  // CAFFE_SLIC_ITERATIONS_KERNELS_HPP_
