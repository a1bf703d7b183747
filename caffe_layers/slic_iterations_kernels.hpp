// CPU kernels of SlicIterations (the fused SLIC iterations) on one block of
// pixels that share their initial cell, hence their 9 candidate superpixels.
//
// A block is `rows` consecutive image rows of one image, columns [begin, end)
// of each; a group is a few rows whose blocks cover the width. Each step packs
// a group's features (slic_pack_group) so that every block is one contiguous
// array: slic_block_rows(C) rows of slic_padded(count) values (count = rows x
// (end - begin) pixels, row by row), the C channels, a row of ones (its sums
// are the weights) and rows of zeros; pixels past count are zeros. Centres are
// C x K (K = num_spixels) for one image. `neighbours[c]` is neighbour c of the
// block's cell, -1 outside the grid; neighbours[4] is the cell itself. Plain
// pointers and ints, no Caffe types. The layer runs groups in parallel.
//
// Both block kernels compute, per pixel, what Passoc and Softmax compute:
//   d_c = scale * sum_k (F[k] - S[k, j_c])^2     (j_c = neighbours[c] >= 0)
//   d_c = invalid                               (j_c < 0; already scaled)
//   q_c = exp(d_c - max_c' d_c') / sum_c'' exp(d_c'' - max_c' d_c')
// with the vectorised Softmax's exp (util/vector_exp.hpp), in float or double.
#ifndef CAFFE_SLIC_ITERATIONS_KERNELS_HPP_
#define CAFFE_SLIC_ITERATIONS_KERNELS_HPP_

#include "caffe/ssn/ssn_math.cuh"

namespace caffe {
namespace ssn {

// Pixels per chunk: a block's associations are computed and summed in chunks
// of at most this many pixels, so that a chunk's features and associations
// stay in L1 between the two.
const int kSlicChunk = 256;
// The widest vector, in bytes, and the most lanes of one (8 floats).
const int kSlicVectorBytes = 32;
const int kSlicMaxLanes = 8;
// The weighted sums multiply tiles of 3 neighbours by 3 feature rows.
const int kSlicTile = 3;

// Values per row of a packed block of `count` pixels: whole vectors.
inline int slic_padded(int count) {
  return (count + kSlicMaxLanes - 1) / kSlicMaxLanes * kSlicMaxLanes;
}

// Rows of a packed block: C channels, ones, zeros up to whole tiles.
inline int slic_block_rows(int channels) {
  return (channels + 1 + kSlicTile - 1) / kSlicTile * kSlicTile;
}

// Values of a packed block of `count` pixels.
inline int slic_block_size(int channels, int count) {
  return slic_block_rows(channels) * slic_padded(count);
}

// Elements of T that one call needs in `scratch` (one buffer per thread): a
// chunk's associations and argmax, the block's 9 x C centres and 9 x rows
// sums, one vector each (rows rounded up to whole vectors of lanes).
template <typename T>
inline int slic_scratch_size(int channels) {
  const int lanes = kSlicVectorBytes / static_cast<int>(sizeof(T));
  const int sum_rows = (slic_block_rows(channels) + lanes - 1) / lanes * lanes;
  return (kNumNeighbours + 1) * kSlicChunk +
         kNumNeighbours * (channels + sum_rows) * lanes;
}

#define SSN_DECLARE_SLIC_KERNELS(T)                                            \
  /* Packs the `num_blocks` blocks of a group of `rows` rows whose column  */ \
  /* bounds are bounds[0] = 0 < ... < bounds[num_blocks] = width, one      */ \
  /* after another from `packed` (block b at the sum of the sizes before  */ \
  /* it). `pixels` points at channel 0 of the group's first row; planes   */ \
  /* are `plane` values apart. */                                             \
  void slic_pack_group(const T* pixels, int plane, int width, int rows,         \
                       int channels, const int* bounds, int num_blocks,         \
                       T* packed);                                              \
  /* One update step on a packed block of `count` pixels: adds, for each  */ \
  /* valid c, sum_p q_c(p) F[k, p] into sums[j_c (C + 1) + k] and          */ \
  /* sum_p q_c(p) into sums[j_c (C + 1) + C]: SpixelFeature2's sums before */ \
  /* the division, per superpixel (K x (C + 1) for one image).             */ \
  void slic_update_block(const T* packed, int count, const T* centres,          \
                         const int* neighbours, int channels, int num_spixels,  \
                         T scale, T invalid, T* scratch, T* sums);              \
  /* The final assignment on a packed block of `rows` x `length` pixels:    */ \
  /* labels[r width + x] = channel_labels[c*] where c* is the argmax of q   */ \
  /* (ties to the highest c, as Caffe's ArgMax); with assoc != NULL, also   */ \
  /* assoc[c spatial + r width + x] = q_c. Both point at the block's first  */ \
  /* pixel. */                                                                \
  void slic_assign_block(const T* packed, int rows, int length, int width,      \
                         const T* centres, const int* neighbours,               \
                         const T* channel_labels, int channels,                 \
                         int num_spixels, T scale, T invalid, T* scratch,       \
                         T* labels, T* assoc, int spatial);

SSN_DECLARE_SLIC_KERNELS(float)
SSN_DECLARE_SLIC_KERNELS(double)
#undef SSN_DECLARE_SLIC_KERNELS

}  // namespace ssn
}  // namespace caffe

#endif  // CAFFE_SLIC_ITERATIONS_KERNELS_HPP_
