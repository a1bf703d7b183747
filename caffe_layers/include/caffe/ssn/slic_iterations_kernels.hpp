// CPU kernels of SlicIterations (the fused SLIC iterations) on one block of
// pixels that share their initial cell, hence their 9 candidate superpixels.
//
// A block is `rows` consecutive image rows of one image, columns [begin, end)
// of each; a group is a few rows whose blocks cover the width. Packing
// (slic_pack_group) turns a block's count = rows x (end - begin) pixels, row
// by row, into slic_vectors(count) vectors of `lanes` pixels (8 floats or 4
// doubles), each followed in memory by the next: vector v holds, for channel
// k, the lanes at v * C * lanes + k * lanes; pixels past count are zeros. One
// step then reads a block as one contiguous stream.
//
// The centres come as a table: for superpixel j and channel k, S[k, j] in
// every lane of the vector at (j C + k) lanes (slic_fill_table). The sums go to
// per-superpixel accumulators of slic_sum_rows(C) vectors (C feature rows, the
// weight, rows of zeros): each lane adds up its own pixels, and the lanes are
// added together once per step (slic_reduce_sums). `neighbours[c]` is
// neighbour c of the block's cell, -1 outside the grid; neighbours[4] is the
// cell itself. Plain pointers and ints, no Caffe types. The layer runs groups
// in parallel.
//
// Both block kernels compute, per pixel, what Passoc and Softmax compute:
//   d_c = scale * sum_k (F[k] - S[k, j_c])^2     (j_c = neighbours[c] >= 0)
//   d_c = invalid                               (j_c < 0; already scaled)
//   q_c = exp(d_c - max_c' d_c') / sum_c'' exp(d_c'' - max_c' d_c')
// with the vectorised Softmax's exp (caffe/ssn/vector_exp.hpp), in float or double.
#ifndef CAFFE_SSN_SLIC_ITERATIONS_KERNELS_HPP_
#define CAFFE_SSN_SLIC_ITERATIONS_KERNELS_HPP_

#include <cstddef>

#include "caffe/ssn/math.hpp"

namespace caffe {
namespace ssn {

// The widest vector, in bytes: lanes of T per vector.
const int kSlicVectorBytes = 32;
template <typename T>
inline int slic_lanes() {
  return kSlicVectorBytes / static_cast<int>(sizeof(T));
}

// Vectors per chunk: a block's associations are computed and summed in chunks
// of at most this many vectors, so that a chunk's features and associations
// stay in L1 between the two.
const int kSlicChunkVectors = 32;

// Vectors of a packed block of `count` pixels.
template <typename T>
inline int slic_vectors(int count) {
  return (count + slic_lanes<T>() - 1) / slic_lanes<T>();
}

// Values of a packed block of `count` pixels.
template <typename T>
inline size_t slic_block_size(int channels, int count) {
  return static_cast<size_t>(slic_vectors<T>(count)) * channels * slic_lanes<T>();
}

// Vectors of one superpixel's accumulators: C feature rows and the weight,
// rounded up to whole groups of `lanes` rows (the reduction adds the lanes of
// `lanes` rows at once).
template <typename T>
inline int slic_sum_rows(int channels) {
  return (channels + 1 + slic_lanes<T>() - 1) / slic_lanes<T>() * slic_lanes<T>();
}

// Elements of T that one block call needs in `scratch` (one buffer per
// thread): a chunk's associations and argmax.
template <typename T>
inline int slic_scratch_size() {
  return (kNumNeighbours + 1) * kSlicChunkVectors * slic_lanes<T>();
}

// Elements of T that packing a group of `rows` rows of `width` pixels needs
// in its staging buffer: one channel of its largest possible block, and a
// vector of zeros.
template <typename T>
inline size_t slic_staging_size(int rows, int width) {
  return static_cast<size_t>(rows) * width + slic_lanes<T>();
}

#define SSN_DECLARE_SLIC_KERNELS(T)                                            \
  /* Packs the `num_blocks` blocks of a group of `rows` rows whose column  */ \
  /* bounds are bounds[0] = 0 < ... < bounds[num_blocks] = width, one      */ \
  /* after another from `packed` (block b at the sum of the sizes before  */ \
  /* it). `pixels` points at channel 0 of the group's first row; planes   */ \
  /* are `plane` values apart. `staging`: slic_staging_size(rows, width)   */ \
  /* values of scratch. */                                                    \
  void slic_pack_group(const T* pixels, int plane, int width, int rows,         \
                       int channels, const int* bounds, int num_blocks,         \
                       T* staging, T* packed);                                  \
  /* The table row of superpixel `spixel` of one image from its centres  */ \
  /* (C x K, K = num_spixels): table + spixel C lanes. */                     \
  void slic_fill_table(const T* centres, int channels, int num_spixels,         \
                       int spixel, T* table);                                   \
  /* One update step on a packed block of `count` pixels: adds, for each  */ \
  /* valid c, q_c(p) F[k, p] to the lanes of row k and q_c(p) to those of  */ \
  /* row C of superpixel j_c's accumulators (sums + j_c sum_rows lanes).  */ \
  /* `table` is the image's centre table. */                                  \
  void slic_update_block(const T* packed, int count, const T* table,            \
                         const int* neighbours, int channels, T scale,          \
                         T invalid, T* scratch, T* sums);                       \
  /* The new centre of superpixel `spixel` of one image: adds the lanes  */ \
  /* of the `num_partial` accumulators (`partial_stride` values apart),   */ \
  /* then S[k, spixel] = sum_k / weight (0 for a dead superpixel) into    */ \
  /* `centres` (C x K) and the table; zeroes the accumulators it read. */    \
  void slic_reduce_sums(T* partial, size_t partial_stride, int num_partial,     \
                        int channels, int num_spixels, int spixel, T* centres,  \
                        T* table);                                              \
  /* The final assignment on a packed block of `rows` x `length` pixels:    */ \
  /* labels[r width + x] = channel_labels[c*] where c* is the argmax of q   */ \
  /* (ties to the highest c, as Caffe's ArgMax); with assoc != NULL, also   */ \
  /* assoc[c spatial + r width + x] = q_c. Both point at the block's first  */ \
  /* pixel. */                                                                \
  void slic_assign_block(const T* packed, int rows, int length, int width,      \
                         const T* table, const int* neighbours,                 \
                         const T* channel_labels, int channels, T scale,        \
                         T invalid, T* scratch, T* labels, T* assoc,            \
                         int spatial);

SSN_DECLARE_SLIC_KERNELS(float)
SSN_DECLARE_SLIC_KERNELS(double)
#undef SSN_DECLARE_SLIC_KERNELS

}  // namespace ssn
}  // namespace caffe

#endif  // CAFFE_SSN_SLIC_ITERATIONS_KERNELS_HPP_
