// Float comparisons may trap by default, which keeps GCC from turning the
// selects below (maxima, the argmax) into vector code; nothing here reads the
// FP exception flags. Before every include: GCC inlines no function compiled
// with other optimisation options (such as ssn_math.cuh's argmax_takes).
#pragma GCC optimize("no-trapping-math")
// The 32-byte vectors below only pass between always-inlined functions of this
// file, never across an ABI boundary: GCC's note that the default (SSE2)
// clone passes them differently from AVX code does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

#include <algorithm>

#include "caffe/layers/slic_iterations_kernels.hpp"
#include "caffe/ssn/ssn_math.cuh"
#include "caffe/util/vector_clones.hpp"
#include "caffe/util/vector_exp.hpp"
#include "caffe/util/vector_memory.hpp"

// Why explicit vectors: a block of pixels is short (a cell is about 20 pixels
// wide), and each pixel needs its 9 distances, the softmax over them and 9 x C
// weighted sums. Vectors of 8 pixels (4 in double) keep the 9 distances in
// registers while the C channels stream past, and the weighted sums are a small
// matrix product over a chunk; each step reads the features from memory once
// (packing them), and no full-image blob is written.
namespace caffe {
namespace ssn {
namespace {

template <typename T> struct Simd;
template <> struct Simd<float> {
  typedef Float8 V;
  typedef Int8 Index;  // shuffle masks
  static const int kLanes = 8;
};
template <> struct Simd<double> {
  typedef Double4 V;
  typedef int64_t Index __attribute__((vector_size(32)));
  static const int kLanes = 4;
};

// [sum of a[0]'s lanes, ..., sum of a[7]'s lanes]: the horizontal sums of 8
// vectors at once, by three rounds of pairwise shuffles and adds.
SSN_ALWAYS_INLINE Float8 LaneSums(const Float8* a) {
  const Int8 even = {0, 8, 2, 10, 4, 12, 6, 14}, odd = {1, 9, 3, 11, 5, 13, 7, 15};
  const Int8 low = {0, 1, 8, 9, 4, 5, 12, 13}, high = {2, 3, 10, 11, 6, 7, 14, 15};
  const Int8 first = {0, 1, 2, 3, 8, 9, 10, 11}, second = {4, 5, 6, 7, 12, 13, 14, 15};
  Float8 pairs[4], quads[2];
  for (int i = 0; i < 4; ++i) {
    pairs[i] = __builtin_shuffle(a[2 * i], a[2 * i + 1], even) +
               __builtin_shuffle(a[2 * i], a[2 * i + 1], odd);
  }
  for (int i = 0; i < 2; ++i) {
    quads[i] = __builtin_shuffle(pairs[2 * i], pairs[2 * i + 1], low) +
               __builtin_shuffle(pairs[2 * i], pairs[2 * i + 1], high);
  }
  return __builtin_shuffle(quads[0], quads[1], first) +
         __builtin_shuffle(quads[0], quads[1], second);
}

// The same for 4 vectors of 4 doubles.
SSN_ALWAYS_INLINE Double4 LaneSums(const Double4* a) {
  typedef Simd<double>::Index Index;
  const Index even = {0, 4, 2, 6}, odd = {1, 5, 3, 7};
  const Index first = {0, 1, 4, 5}, second = {2, 3, 6, 7};
  const Double4 pair0 = __builtin_shuffle(a[0], a[1], even) + __builtin_shuffle(a[0], a[1], odd);
  const Double4 pair1 = __builtin_shuffle(a[2], a[3], even) + __builtin_shuffle(a[2], a[3], odd);
  return __builtin_shuffle(pair0, pair1, first) + __builtin_shuffle(pair0, pair1, second);
}

// The scratch of one call: 9 rows of kSlicChunk associations, the argmax
// channel, the centre table, then the block's sums (9 x rows vectors).
template <typename T>
struct Scratch {
  T* assoc;
  T* best;
  T* table;
  T* sums;
  Scratch(T* scratch, int channels)
      : assoc(scratch), best(assoc + kNumNeighbours * kSlicChunk), table(best + kSlicChunk),
        sums(table + kNumNeighbours * channels * Simd<T>::kLanes) {}
};

// Sets `count` values (a multiple of the lanes) to `value`.
template <typename T>
SSN_ALWAYS_INLINE void FillVectors(T* to, int count, T value) {
  typedef typename Simd<T>::V V;
  const V zero = {};
  const V splat = zero + value;
  for (int x = 0; x < count; x += Simd<T>::kLanes) Store(to + x, splat);
}

// Copies `length` values (pieces are about a cell wide, too short for a memcpy
// call to pay): whole vectors, the last one overlapping the one before.
template <typename T>
SSN_ALWAYS_INLINE void CopyShort(const T* from, int length, T* to) {
  typedef typename Simd<T>::V V;
  const int lanes = Simd<T>::kLanes;
  if (length < lanes) {
    for (int x = 0; x < length; ++x) to[x] = from[x];
    return;
  }
  for (int x = 0; x + lanes <= length; x += lanes) Store(to + x, Load<V>(from + x));
  Store(to + length - lanes, Load<V>(from + length - lanes));
}

// Channel by channel and row by row, so that the reads are C x rows
// contiguous ranges (which the hardware prefetches), each scattered over the
// blocks it crosses; blocks go in batches whose destinations are worked out
// once.
template <typename T>
SSN_ALWAYS_INLINE void PackGroup(const T* pixels, int plane, int width, int rows, int channels,
                                 const int* bounds, int num_blocks, T* packed) {
  typedef typename Simd<T>::V V;
  const int lanes = Simd<T>::kLanes, block_rows = slic_block_rows(channels);
  const int kBatch = 64;
  T* start[kBatch];
  int length[kBatch], padded[kBatch];
  T* block = packed;
  for (int b0 = 0; b0 < num_blocks; b0 += kBatch) {
    const int batch = std::min(kBatch, num_blocks - b0);
    for (int i = 0; i < batch; ++i) {
      length[i] = bounds[b0 + i + 1] - bounds[b0 + i];
      const int count = rows * length[i];
      padded[i] = slic_padded(count);
      start[i] = block;
      block += block_rows * padded[i];
      // Zeros past the pixels (the copies below overwrite the valid part of
      // this last vector), then the ones and any rows of zeros.
      const V zero = {};
      for (int k = 0; k < channels; ++k) Store(start[i] + (k + 1) * padded[i] - lanes, zero);
      T* ones = start[i] + channels * padded[i];
      FillVectors(ones, padded[i], T(1));
      for (int x = count; x < padded[i]; ++x) ones[x] = 0;
      FillVectors(ones + padded[i], (block_rows - channels - 1) * padded[i], T(0));
    }
    const int begin = bounds[b0];
    for (int k = 0; k < channels; ++k) {
      for (int r = 0; r < rows; ++r) {
        const T* in = pixels + static_cast<size_t>(k) * plane + static_cast<size_t>(r) * width +
                      begin;
        for (int i = 0; i < batch; ++i) {
          CopyShort(in, length[i], start[i] + k * padded[i] + r * length[i]);
          in += length[i];
        }
      }
    }
  }
}

// q for the `padded` pixels of a chunk (features at `features`, rows `stride`
// apart): the 9 scaled distances to the centres of `table` (for channel k and
// neighbour c, the vector at (9 k + c) * lanes), then the softmax over them,
// written to assoc (9 rows of kSlicChunk); with kArgmax, the argmax channel to
// best. Passoc and Softmax compute these in the same order.
template <typename T, bool kArgmax>
SSN_ALWAYS_INLINE void Associate(const T* features, int stride, const T* table,
                                 const bool* valid, int channels, int padded, T scale,
                                 T invalid, T* assoc, T* best) {
  typedef typename Simd<T>::V V;
  const int lanes = Simd<T>::kLanes;
  const V zero = {};
  for (int v = 0; v < padded; v += lanes) {
    V d[kNumNeighbours];
#pragma GCC unroll 9
    for (int c = 0; c < kNumNeighbours; ++c) d[c] = zero;
    // Passoc: sum_k (F - S)^2, channels in order.
    for (int k = 0; k < channels; ++k) {
      const V f = Load<V>(features + k * stride + v);
      const T* s = table + kNumNeighbours * lanes * k;
#pragma GCC unroll 9
      for (int c = 0; c < kNumNeighbours; ++c) {
        const V t = f - Load<V>(s + c * lanes);
        d[c] += t * t;
      }
    }
#pragma GCC unroll 9
    for (int c = 0; c < kNumNeighbours; ++c) d[c] = valid[c] ? d[c] * scale : zero + invalid;
    // Softmax over the 9 channels, as util/vector_softmax.cpp computes it.
    V max_value = d[0];
#pragma GCC unroll 9
    for (int c = 1; c < kNumNeighbours; ++c) {
      max_value = d[c] > max_value ? d[c] : max_value;
    }
    V sum = zero;
#pragma GCC unroll 9
    for (int c = 0; c < kNumNeighbours; ++c) {
      d[c] = exp_nonpositive(d[c] - max_value);
      sum += d[c];
    }
    const V inverse = T(1) / sum;
#pragma GCC unroll 9
    for (int c = 0; c < kNumNeighbours; ++c) {
      d[c] *= inverse;
      Store(assoc + c * kSlicChunk + v, d[c]);
    }
    if (kArgmax) {
      V best_value = d[0], best_channel = zero;
#pragma GCC unroll 9
      for (int c = 1; c < kNumNeighbours; ++c) {
        const auto takes = argmax_takes(d[c], best_value);
        best_value = takes ? d[c] : best_value;
        best_channel = takes ? zero + T(c) : best_channel;
      }
      Store(best + v, best_channel);
    }
  }
}

// SpixelFeature2's sums over a chunk, as a small matrix product: for every
// neighbour c and feature row k (row C is the ones: the weight), the lanes of
// sums[(c * sum_rows + k) * lanes] add up q_c(p) F[k, p] over the chunk's
// pixels (the first chunk of a block stores them, later ones add). Tiles of
// 3 neighbours x 3 rows keep 9 accumulators, 3 associations and a feature
// vector in registers (6 loads per 9 FMAs). Padding has q = 0.
template <typename T>
SSN_ALWAYS_INLINE void AccumulateChunk(const T* features, int stride, const T* assoc,
                                       const bool* valid, int block_rows, int sum_rows,
                                       int padded, bool first, T* sums) {
  typedef typename Simd<T>::V V;
  const int lanes = Simd<T>::kLanes;
  const V zero = {};
  for (int c0 = 0; c0 < kNumNeighbours; c0 += kSlicTile) {
    if (!valid[c0] && !valid[c0 + 1] && !valid[c0 + 2]) continue;
    const T* q0 = assoc + c0 * kSlicChunk;
    const T* q1 = q0 + kSlicChunk;
    const T* q2 = q1 + kSlicChunk;
    for (int k0 = 0; k0 < block_rows; k0 += kSlicTile) {
      const T* f0 = features + k0 * stride;
      const T* f1 = f0 + stride;
      const T* f2 = f1 + stride;
      V a00 = zero, a01 = zero, a02 = zero, a10 = zero, a11 = zero, a12 = zero;
      V a20 = zero, a21 = zero, a22 = zero;
      for (int v = 0; v < padded; v += lanes) {
        const V x0 = Load<V>(q0 + v), x1 = Load<V>(q1 + v), x2 = Load<V>(q2 + v);
        V y = Load<V>(f0 + v);
        a00 += x0 * y;
        a10 += x1 * y;
        a20 += x2 * y;
        y = Load<V>(f1 + v);
        a01 += x0 * y;
        a11 += x1 * y;
        a21 += x2 * y;
        y = Load<V>(f2 + v);
        a02 += x0 * y;
        a12 += x1 * y;
        a22 += x2 * y;
      }
      T* out = sums + (c0 * sum_rows + k0) * lanes;
      const int next = sum_rows * lanes;  // the next neighbour's row
      if (!first) {
        a00 += Load<V>(out);
        a01 += Load<V>(out + lanes);
        a02 += Load<V>(out + 2 * lanes);
        a10 += Load<V>(out + next);
        a11 += Load<V>(out + next + lanes);
        a12 += Load<V>(out + next + 2 * lanes);
        a20 += Load<V>(out + 2 * next);
        a21 += Load<V>(out + 2 * next + lanes);
        a22 += Load<V>(out + 2 * next + 2 * lanes);
      }
      Store(out, a00);
      Store(out + lanes, a01);
      Store(out + 2 * lanes, a02);
      Store(out + next, a10);
      Store(out + next + lanes, a11);
      Store(out + next + 2 * lanes, a12);
      Store(out + 2 * next, a20);
      Store(out + 2 * next + lanes, a21);
      Store(out + 2 * next + 2 * lanes, a22);
    }
  }
}

// The block's centre table (for channel k and neighbour c, S[k, j_c] in every
// lane of the vector at (9 k + c) * lanes; the cell's own centre stands in for
// neighbours outside the grid) and validity flags.
template <typename T>
SSN_ALWAYS_INLINE void CentreTable(const T* centres, const int* neighbours, int channels,
                                   int num_spixels, T* table, bool* valid) {
  typedef typename Simd<T>::V V;
  const int lanes = Simd<T>::kLanes;
  const V zero = {};
  for (int c = 0; c < kNumNeighbours; ++c) valid[c] = neighbours[c] >= 0;
  for (int k = 0; k < channels; ++k) {
    for (int c = 0; c < kNumNeighbours; ++c) {
      const int j = valid[c] ? neighbours[c] : neighbours[4];
      Store(table + (kNumNeighbours * k + c) * lanes, zero + centres[k * num_spixels + j]);
    }
  }
}

template <typename T>
SSN_ALWAYS_INLINE void SlicUpdateBlock(const T* packed, int count, const T* centres,
                                       const int* neighbours, int channels, int num_spixels,
                                       T scale, T invalid, T* scratch, T* sums) {
  const int lanes = Simd<T>::kLanes;
  const int stride = slic_padded(count), block_rows = slic_block_rows(channels);
  const int sum_rows = (block_rows + lanes - 1) / lanes * lanes;
  Scratch<T> buffers(scratch, channels);
  bool valid[kNumNeighbours];
  CentreTable(centres, neighbours, channels, num_spixels, buffers.table, valid);
  // The first chunk stores the sums of every tile it computes, which covers
  // every valid neighbour; rows from block_rows to sum_rows stay zero.
  for (int c = 0; c < kNumNeighbours; ++c) {
    FillVectors(buffers.sums + (c * sum_rows + block_rows) * lanes,
                (sum_rows - block_rows) * lanes, T(0));
  }
  for (int v0 = 0; v0 < count; v0 += kSlicChunk) {
    const int chunk = std::min(kSlicChunk, count - v0);
    const int padded = std::min(kSlicChunk, stride - v0);
    Associate<T, false>(packed + v0, stride, buffers.table, valid, channels, padded, scale,
                        invalid, buffers.assoc, buffers.best);
    for (int c = 0; c < kNumNeighbours; ++c) {
      std::fill(buffers.assoc + c * kSlicChunk + chunk, buffers.assoc + c * kSlicChunk + padded,
                T(0));
    }
    AccumulateChunk(packed + v0, stride, buffers.assoc, valid, block_rows, sum_rows, padded,
                    v0 == 0, buffers.sums);
  }
  for (int c = 0; c < kNumNeighbours; ++c) {
    if (!valid[c]) continue;
    T* out = sums + static_cast<size_t>(neighbours[c]) * (channels + 1);
    for (int k0 = 0; k0 <= channels; k0 += lanes) {
      typename Simd<T>::V rows[Simd<T>::kLanes];
      for (int i = 0; i < lanes; ++i) {
        rows[i] = Load<typename Simd<T>::V>(buffers.sums + (c * sum_rows + k0 + i) * lanes);
      }
      const typename Simd<T>::V total = LaneSums(rows);
      for (int i = 0; i < lanes && k0 + i <= channels; ++i) out[k0 + i] += total[i];
    }
  }
}

template <typename T>
SSN_ALWAYS_INLINE void SlicAssignBlock(const T* packed, int rows, int length, int width,
                                       const T* centres, const int* neighbours,
                                       const T* channel_labels, int channels, int num_spixels,
                                       T scale, T invalid, T* scratch, T* labels, T* assoc,
                                       int spatial) {
  const int count = rows * length, stride = slic_padded(count);
  Scratch<T> buffers(scratch, channels);
  bool valid[kNumNeighbours];
  CentreTable(centres, neighbours, channels, num_spixels, buffers.table, valid);
  for (int v0 = 0; v0 < count; v0 += kSlicChunk) {
    const int chunk = std::min(kSlicChunk, count - v0);
    Associate<T, true>(packed + v0, stride, buffers.table, valid, channels,
                       std::min(kSlicChunk, stride - v0), scale, invalid, buffers.assoc,
                       buffers.best);
    // Back to the image, one piece of a row at a time.
    for (int i = 0; i < chunk;) {
      const int r = (v0 + i) / length, x = (v0 + i) % length;
      const int piece = std::min(length - x, chunk - i), at = r * width + x;
      for (int p = 0; p < piece; ++p) {
        labels[at + p] = channel_labels[static_cast<int>(buffers.best[i + p])];
      }
      if (assoc != NULL) {
        for (int c = 0; c < kNumNeighbours; ++c) {
          CopyShort(buffers.assoc + c * kSlicChunk + i, piece,
                    assoc + static_cast<size_t>(c) * spatial + at);
        }
      }
      i += piece;
    }
  }
}

}  // namespace

#define SSN_DEFINE_SLIC_KERNELS(T)                                                         \
  SSN_VECTOR_CLONES void slic_pack_group(const T* pixels, int plane, int width, int rows,  \
      int channels, const int* bounds, int num_blocks, T* packed) {                        \
    PackGroup(pixels, plane, width, rows, channels, bounds, num_blocks, packed);           \
  }                                                                                        \
  SSN_VECTOR_CLONES void slic_update_block(const T* packed, int count, const T* centres,   \
      const int* neighbours, int channels, int num_spixels, T scale, T invalid,            \
      T* scratch, T* sums) {                                                               \
    SlicUpdateBlock(packed, count, centres, neighbours, channels, num_spixels, scale,      \
                    invalid, scratch, sums);                                               \
  }                                                                                        \
  SSN_VECTOR_CLONES void slic_assign_block(const T* packed, int rows, int length,          \
      int width, const T* centres, const int* neighbours, const T* channel_labels,         \
      int channels, int num_spixels, T scale, T invalid, T* scratch, T* labels, T* assoc,  \
      int spatial) {                                                                       \
    SlicAssignBlock(packed, rows, length, width, centres, neighbours, channel_labels,      \
                    channels, num_spixels, scale, invalid, scratch, labels, assoc,         \
                    spatial);                                                              \
  }

SSN_DEFINE_SLIC_KERNELS(float)
SSN_DEFINE_SLIC_KERNELS(double)
#undef SSN_DEFINE_SLIC_KERNELS

}  // namespace ssn
}  // namespace caffe
