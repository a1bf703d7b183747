// Float comparisons may trap by default, which keeps GCC from turning the
// selects below (maxima, the argmax) into vector code; nothing here reads the
// FP exception flags. Before every include: GCC inlines no function compiled
// with other optimisation options (such as math.hpp's argmax_takes).
#pragma GCC optimize("no-trapping-math")
// The 32-byte vectors below only pass between always-inlined functions of this
// file, never across an ABI boundary: GCC's note that the default (SSE2)
// clone passes them differently from AVX code does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

#include <algorithm>

#include "caffe/ssn/slic_iterations_kernels.hpp"
#include "caffe/ssn/math.hpp"
#include "caffe/ssn/vector_clones.hpp"
#include "caffe/ssn/vector_exp.hpp"
#include "caffe/ssn/vector_memory.hpp"

// Why explicit vectors: a block of pixels is short (a cell is about 20 pixels
// wide), and each pixel needs its 9 distances, the softmax over them and 9 x C
// weighted sums. Vectors of 8 pixels (4 in double) keep the 9 distances in
// registers while the C channels stream past, and the weighted sums are small
// matrix products over a chunk whose accumulators stay in registers. The lanes
// of a superpixel's accumulators are added up once per step, not per block.
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

template <typename V>
SSN_ALWAYS_INLINE V Max(const V& a, const V& b) {
  return b > a ? b : a;
}

template <typename T>
SSN_ALWAYS_INLINE typename Simd<T>::V Splat(T value) {
  const typename Simd<T>::V zero = {};
  return zero + value;
}

const int kCacheLine = 64;
// The packed features stream in from memory, a vector's C channels after
// another's (and a block's after the block before): reading them this many
// vectors ahead keeps the loads from waiting on memory.
const int kPrefetchVectors = 4;

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

// Channel by channel, then block by block: a channel's rows of a block are
// copied one after another into `staging` (zeros after them up to a whole
// vector), whose vectors then go to their places in the block. A channel's
// rows are read as `rows` streams that advance together, which the hardware
// prefetches, and the group's blocks stay in L2 between the channels.
template <typename T>
SSN_ALWAYS_INLINE void PackGroup(const T* pixels, int plane, int width, int rows, int channels,
                                 const int* bounds, int num_blocks, T* staging, T* packed) {
  typedef typename Simd<T>::V V;
  const int lanes = Simd<T>::kLanes;
  const size_t vector_size = static_cast<size_t>(channels) * lanes;
  for (int k = 0; k < channels; ++k) {
    const T* in = pixels + static_cast<size_t>(k) * plane;
    T* block = packed + k * lanes;
    for (int b = 0; b < num_blocks; ++b) {
      const int begin = bounds[b], length = bounds[b + 1] - begin, count = rows * length;
      const int vectors = slic_vectors<T>(count);
      for (int r = 0; r < rows; ++r) {
        CopyShort(in + static_cast<size_t>(r) * width + begin, length, staging + r * length);
      }
      std::fill(staging + count, staging + vectors * lanes, T(0));
      for (int v = 0; v < vectors; ++v) {
        Store(block + v * vector_size, Load<V>(staging + v * lanes));
      }
      block += vectors * vector_size;
    }
  }
}

// q for `vectors` packed vectors from `features`: the 9 scaled distances to
// the centres (channel k of neighbour c at centres[c] + k lanes), then the
// softmax over them, written to assoc (vector v of neighbour c at
// (c kSlicChunkVectors + v) lanes); with kArgmax, the argmax channel to best
// (vector v at v lanes). The distances add up in Passoc's order; the softmax
// takes its maximum and sum by pairs.
template <typename T, bool kArgmax>
SSN_ALWAYS_INLINE void Associate(const T* features, int channels, int vectors,
                                 const T* const* centres, const bool* valid, T scale,
                                 T invalid, T* assoc, T* best) {
  typedef typename Simd<T>::V V;
  const int lanes = Simd<T>::kLanes, vector_size = channels * lanes;
  const V zero = {};
  for (int v = 0; v < vectors; ++v) {
    const T* f = features + v * vector_size;
    for (int k = 0; k < vector_size; k += kCacheLine / sizeof(T)) {
      __builtin_prefetch(f + kPrefetchVectors * vector_size + k);
    }
    V d[kNumNeighbours];
#pragma GCC unroll 9
    for (int c = 0; c < kNumNeighbours; ++c) d[c] = zero;
    // Passoc: sum_k (F - S)^2, channels in order.
    for (int k = 0; k < vector_size; k += lanes) {
      const V x = Load<V>(f + k);
#pragma GCC unroll 9
      for (int c = 0; c < kNumNeighbours; ++c) {
        const V t = x - Load<V>(centres[c] + k);
        d[c] += t * t;
      }
    }
#pragma GCC unroll 9
    for (int c = 0; c < kNumNeighbours; ++c) d[c] = valid[c] ? d[c] * scale : zero + invalid;
    // Softmax over the 9 channels, with util/vector_softmax.cpp's exp; the
    // maximum and the sum go by pairs (shorter chains of dependent adds).
    const V max01 = Max(d[0], d[1]), max23 = Max(d[2], d[3]);
    const V max45 = Max(d[4], d[5]), max67 = Max(d[6], d[7]);
    const V max_value = Max(Max(Max(max01, max23), Max(max45, max67)), d[8]);
#pragma GCC unroll 9
    for (int c = 0; c < kNumNeighbours; ++c) d[c] = exp_nonpositive(d[c] - max_value);
    const V sum = (((d[0] + d[1]) + (d[2] + d[3])) + ((d[4] + d[5]) + (d[6] + d[7]))) + d[8];
    const V inverse = T(1) / sum;
#pragma GCC unroll 9
    for (int c = 0; c < kNumNeighbours; ++c) {
      d[c] *= inverse;
      Store(assoc + (c * kSlicChunkVectors + v) * lanes, d[c]);
    }
    if (kArgmax) {
      V best_value = d[0], best_channel = zero;
#pragma GCC unroll 9
      for (int c = 1; c < kNumNeighbours; ++c) {
        const auto takes = argmax_takes(d[c], best_value);
        best_value = takes ? d[c] : best_value;
        best_channel = takes ? zero + T(c) : best_channel;
      }
      Store(best + v * lanes, best_channel);
    }
  }
}

// Adds, for kN neighbours i and kR feature rows r, the lanes of
// q_i(p) F[r, p] over a chunk's `vectors` to out[i] + r lanes; the kN x kR
// accumulators (up to 12, so that 12 FMAs can be in flight), kN associations
// and a feature vector stay in the 16 vector registers.
template <typename T, int kN, int kR>
SSN_ALWAYS_INLINE void AccumulateTile(const T* features, int vector_size, int vectors,
                                      const T* const* q, T* const* out) {
  typedef typename Simd<T>::V V;
  const int lanes = Simd<T>::kLanes;
  V a[kN][kR];
#pragma GCC unroll 4
  for (int i = 0; i < kN; ++i) {
#pragma GCC unroll 4
    for (int r = 0; r < kR; ++r) a[i][r] = Load<V>(out[i] + r * lanes);
  }
  for (int v = 0; v < vectors; ++v) {
    V x[kN];
#pragma GCC unroll 4
    for (int i = 0; i < kN; ++i) x[i] = Load<V>(q[i] + v * lanes);
    const T* f = features + v * vector_size;
#pragma GCC unroll 4
    for (int r = 0; r < kR; ++r) {
      const V y = Load<V>(f + r * lanes);
#pragma GCC unroll 4
      for (int i = 0; i < kN; ++i) a[i][r] += x[i] * y;
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < kN; ++i) {
#pragma GCC unroll 4
    for (int r = 0; r < kR; ++r) Store(out[i] + r * lanes, a[i][r]);
  }
}

// The same for the weights: the lanes of q_i(p) over the chunk added to
// out[i].
template <typename T, int kN>
SSN_ALWAYS_INLINE void AccumulateWeights(int vectors, const T* const* q, T* const* out) {
  typedef typename Simd<T>::V V;
  const int lanes = Simd<T>::kLanes;
  V a[kN];
#pragma GCC unroll 4
  for (int i = 0; i < kN; ++i) a[i] = Load<V>(out[i]);
  for (int v = 0; v < vectors; ++v) {
#pragma GCC unroll 4
    for (int i = 0; i < kN; ++i) a[i] += Load<V>(q[i] + v * lanes);
  }
#pragma GCC unroll 4
  for (int i = 0; i < kN; ++i) Store(out[i], a[i]);
}

// SpixelFeature2's sums over a chunk for kN neighbours: every feature row in
// tiles of up to 4, then the weights.
template <typename T, int kN>
SSN_ALWAYS_INLINE void AccumulateNeighbours(const T* features, int channels, int vectors,
                                            const T* const* q, T* const* sums) {
  const int lanes = Simd<T>::kLanes, vector_size = channels * lanes;
  T* out[kN];
  int k = 0;
  for (; k + 4 <= channels; k += 4) {
    for (int i = 0; i < kN; ++i) out[i] = sums[i] + k * lanes;
    AccumulateTile<T, kN, 4>(features + k * lanes, vector_size, vectors, q, out);
  }
  for (int i = 0; i < kN; ++i) out[i] = sums[i] + k * lanes;
  const T* rest = features + k * lanes;
  switch (channels - k) {
    case 3: AccumulateTile<T, kN, 3>(rest, vector_size, vectors, q, out); break;
    case 2: AccumulateTile<T, kN, 2>(rest, vector_size, vectors, q, out); break;
    case 1: AccumulateTile<T, kN, 1>(rest, vector_size, vectors, q, out); break;
  }
  for (int i = 0; i < kN; ++i) out[i] = sums[i] + channels * lanes;
  AccumulateWeights<T, kN>(vectors, q, out);
}

// The neighbours' centres (a neighbour outside the grid reads the cell's own:
// its distance is replaced) and validity.
template <typename T>
SSN_ALWAYS_INLINE void NeighbourCentres(const T* table, const int* neighbours, int channels,
                                        const T** centres, bool* valid) {
  for (int c = 0; c < kNumNeighbours; ++c) {
    valid[c] = neighbours[c] >= 0;
    const int j = valid[c] ? neighbours[c] : neighbours[4];
    centres[c] = table + static_cast<size_t>(j) * channels * Simd<T>::kLanes;
  }
}

template <typename T>
SSN_ALWAYS_INLINE void SlicUpdateBlock(const T* packed, int count, const T* table,
                                       const int* neighbours, int channels, T scale,
                                       T invalid, T* scratch, T* sums) {
  const int lanes = Simd<T>::kLanes, vector_size = channels * lanes;
  const int vectors = slic_vectors<T>(count), sum_rows = slic_sum_rows<T>(channels);
  const T* centres[kNumNeighbours];
  bool valid[kNumNeighbours];
  NeighbourCentres(table, neighbours, channels, centres, valid);
  // The valid neighbours' associations and accumulators, in tiles of 3.
  const T* q[kNumNeighbours];
  T* out[kNumNeighbours];
  int num_valid = 0;
  for (int c = 0; c < kNumNeighbours; ++c) {
    if (!valid[c]) continue;
    q[num_valid] = scratch + c * kSlicChunkVectors * lanes;
    out[num_valid++] = sums + static_cast<size_t>(neighbours[c]) * sum_rows * lanes;
  }
  const int padding = vectors * lanes - count;
  for (int v0 = 0; v0 < vectors; v0 += kSlicChunkVectors) {
    const int chunk = std::min(kSlicChunkVectors, vectors - v0);
    const T* features = packed + static_cast<size_t>(v0) * vector_size;
    Associate<T, false>(features, channels, chunk, centres, valid, scale, invalid, scratch,
                        scratch + kNumNeighbours * kSlicChunkVectors * lanes);
    if (v0 + chunk == vectors && padding > 0) {  // padding lanes take no part in the sums
      for (int c = 0; c < kNumNeighbours; ++c) {
        T* last = scratch + (c * kSlicChunkVectors + chunk) * lanes;
        std::fill(last - padding, last, T(0));
      }
    }
    int i = 0;
    for (; i + 3 <= num_valid; i += 3) {
      AccumulateNeighbours<T, 3>(features, channels, chunk, q + i, out + i);
    }
    if (num_valid - i == 2) AccumulateNeighbours<T, 2>(features, channels, chunk, q + i, out + i);
    if (num_valid - i == 1) AccumulateNeighbours<T, 1>(features, channels, chunk, q + i, out + i);
  }
}

template <typename T>
SSN_ALWAYS_INLINE void FillTable(const T* centres, int channels, int num_spixels, int spixel,
                                 T* table) {
  const int lanes = Simd<T>::kLanes;
  T* row = table + static_cast<size_t>(spixel) * channels * lanes;
  for (int k = 0; k < channels; ++k) {
    Store(row + k * lanes, Splat(centres[static_cast<size_t>(k) * num_spixels + spixel]));
  }
}

template <typename T>
SSN_ALWAYS_INLINE void ReduceSums(T* partial, size_t partial_stride, int num_partial,
                                  int channels, int num_spixels, int spixel, T* centres,
                                  T* table) {
  typedef typename Simd<T>::V V;
  const int lanes = Simd<T>::kLanes, sum_rows = slic_sum_rows<T>(channels);
  const V zero = {};
  T totals[Simd<T>::kLanes];  // one group of rows
  T inverse = 0;
  // The weight's group first: it scales every feature row.
  for (int g = sum_rows - lanes; g >= 0; g -= lanes) {
    V total = zero;
    for (int t = 0; t < num_partial; ++t) {
      T* sums = partial + t * partial_stride + (static_cast<size_t>(spixel) * sum_rows + g) * lanes;
      V rows[Simd<T>::kLanes];
      for (int i = 0; i < lanes; ++i) {
        rows[i] = Load<V>(sums + i * lanes);
        Store(sums + i * lanes, zero);
      }
      total += LaneSums(rows);
    }
    Store(totals, total);
    if (g + lanes > channels) {
      const T weight = totals[channels - g];
      inverse = spixel_is_alive(weight) ? 1 / weight : 0;
    }
    for (int i = 0; i < lanes && g + i < channels; ++i) {
      centres[static_cast<size_t>(g + i) * num_spixels + spixel] = totals[i] * inverse;
    }
  }
  FillTable(centres, channels, num_spixels, spixel, table);
}

template <typename T>
SSN_ALWAYS_INLINE void SlicAssignBlock(const T* packed, int rows, int length, int width,
                                       const T* table, const int* neighbours,
                                       const T* channel_labels, int channels, T scale,
                                       T invalid, T* scratch, T* labels, T* assoc,
                                       int spatial) {
  const int lanes = Simd<T>::kLanes, vector_size = channels * lanes;
  const int count = rows * length, vectors = slic_vectors<T>(count);
  const T* centres[kNumNeighbours];
  bool valid[kNumNeighbours];
  NeighbourCentres(table, neighbours, channels, centres, valid);
  T* best = scratch + kNumNeighbours * kSlicChunkVectors * lanes;
  for (int v0 = 0; v0 < vectors; v0 += kSlicChunkVectors) {
    const int chunk = std::min(kSlicChunkVectors, vectors - v0);
    Associate<T, true>(packed + static_cast<size_t>(v0) * vector_size, channels, chunk, centres,
                       valid, scale, invalid, scratch, best);
    // Back to the image, one piece of a row at a time.
    const int first = v0 * lanes, pixels = std::min(chunk * lanes, count - first);
    for (int i = 0; i < pixels;) {
      const int r = (first + i) / length, x = (first + i) % length;
      const int piece = std::min(length - x, pixels - i), at = r * width + x;
      for (int p = 0; p < piece; ++p) {
        labels[at + p] = channel_labels[static_cast<int>(best[i + p])];
      }
      if (assoc != NULL) {
        for (int c = 0; c < kNumNeighbours; ++c) {
          const T* q = scratch + c * kSlicChunkVectors * lanes + i;
          T* to = assoc + static_cast<size_t>(c) * spatial + at;
          for (int p = 0; p < piece; ++p) to[p] = q[p];
        }
      }
      i += piece;
    }
  }
}

}  // namespace

#define SSN_DEFINE_SLIC_KERNELS(T)                                                         \
  SSN_VECTOR_CLONES void slic_pack_group(const T* pixels, int plane, int width, int rows,  \
      int channels, const int* bounds, int num_blocks, T* staging, T* packed) {            \
    PackGroup(pixels, plane, width, rows, channels, bounds, num_blocks, staging, packed);  \
  }                                                                                        \
  void slic_fill_table(const T* centres, int channels, int num_spixels, int spixel,        \
      T* table) {                                                                          \
    FillTable(centres, channels, num_spixels, spixel, table);                              \
  }                                                                                        \
  SSN_VECTOR_CLONES void slic_update_block(const T* packed, int count, const T* table,     \
      const int* neighbours, int channels, T scale, T invalid, T* scratch, T* sums) {      \
    SlicUpdateBlock(packed, count, table, neighbours, channels, scale, invalid, scratch,   \
                    sums);                                                                 \
  }                                                                                        \
  SSN_VECTOR_CLONES void slic_reduce_sums(T* partial, size_t partial_stride,               \
      int num_partial, int channels, int num_spixels, int spixel, T* centres, T* table) {  \
    ReduceSums(partial, partial_stride, num_partial, channels, num_spixels, spixel,        \
               centres, table);                                                            \
  }                                                                                        \
  SSN_VECTOR_CLONES void slic_assign_block(const T* packed, int rows, int length,          \
      int width, const T* table, const int* neighbours, const T* channel_labels,           \
      int channels, T scale, T invalid, T* scratch, T* labels, T* assoc, int spatial) {    \
    SlicAssignBlock(packed, rows, length, width, table, neighbours, channel_labels,        \
                    channels, scale, invalid, scratch, labels, assoc, spatial);            \
  }

SSN_DEFINE_SLIC_KERNELS(float)
SSN_DEFINE_SLIC_KERNELS(double)
#undef SSN_DEFINE_SLIC_KERNELS

}  // namespace ssn
}  // namespace caffe
