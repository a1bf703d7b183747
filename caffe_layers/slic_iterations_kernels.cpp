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
#include <cstring>

#include "caffe/layers/slic_iterations_kernels.hpp"
#include "caffe/ssn/ssn_math.cuh"
#include "caffe/util/vector_clones.hpp"
#include "caffe/util/vector_exp.hpp"

// Why explicit vectors: a block of pixels is short (a cell is about 20 pixels
// wide), and each pixel needs its 9 distances, the softmax over them and 9 x C
// weighted sums. Vectors of 8 pixels (4 in double) keep the 9 distances in
// registers while the C channels stream past, so each feature is read once per
// step (from L1), and no full-image blob is written.
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

// Unaligned loads and stores (memcpy of a vector compiles to one instruction).
template <typename V>
SSN_ALWAYS_INLINE V Load(const void* from) {
  V value;
  std::memcpy(&value, from, sizeof(value));
  return value;
}

template <typename V>
SSN_ALWAYS_INLINE void Store(void* to, const V& value) {
  std::memcpy(to, &value, sizeof(value));
}

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

// Where the pixels of a chunk come from: `length` pixels of block row `row`
// from column `x` on, stored from `offset` in the chunk's scratch rows.
struct Piece {
  int row, x, length, offset;
};

// The scratch of one call, rows of kSlicChunk values: C channels of features,
// a row of ones (its sums are the weights) and rows of zeros up to whole
// vectors of channels, 9 associations, the argmax channel; then the centre
// table.
template <typename T>
struct Scratch {
  T* features;
  T* assoc;
  T* best;
  T* table;
  Scratch(T* scratch, int channels)
      : features(scratch), assoc(scratch + slic_feature_rows(channels) * kSlicChunk),
        best(assoc + kNumNeighbours * kSlicChunk), table(best + kSlicChunk) {}
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

// Copies the chunk's pixels into the scratch, zero-padded to whole vectors,
// and returns the padded length.
template <typename T>
SSN_ALWAYS_INLINE int GatherChunk(const T* pixels, int plane, int width, int channels,
                                  const Piece* pieces, int num_pieces, int count,
                                  T* features) {
  const int lanes = Simd<T>::kLanes;
  const int padded = (count + lanes - 1) / lanes * lanes;
  for (int k = 0; k < channels; ++k) {
    T* out = features + k * kSlicChunk;
    const T* in = pixels + static_cast<size_t>(k) * plane;
    for (int i = 0; i < num_pieces; ++i) {
      const Piece& piece = pieces[i];
      CopyShort(in + piece.row * width + piece.x, piece.length, out + piece.offset);
    }
    for (int x = count; x < padded; ++x) out[x] = 0;
  }
  return padded;
}

// q for every scratch pixel: the 9 scaled distances to the centres of `table`
// (for channel k and neighbour c, the vector at (9 k + c) * lanes), then the
// softmax over them, written to assoc (9 rows); with kArgmax, the argmax
// channel to best. Passoc and Softmax compute these in the same order.
template <typename T, bool kArgmax>
SSN_ALWAYS_INLINE void Associate(const T* features, const T* table, const bool* valid,
                                 int channels, int padded, T scale, T invalid, T* assoc,
                                 T* best) {
  typedef typename Simd<T>::V V;
  const int lanes = Simd<T>::kLanes;
  const V zero = {};
  for (int v = 0; v < padded; v += lanes) {
    V d[kNumNeighbours];
#pragma GCC unroll 9
    for (int c = 0; c < kNumNeighbours; ++c) d[c] = zero;
    // Passoc: sum_k (F - S)^2, channels in order.
    for (int k = 0; k < channels; ++k) {
      const V f = Load<V>(features + k * kSlicChunk + v);
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

// SpixelFeature2's sums over the chunk, for each valid c with j = j_c:
// sums[j (C + 1) + k] += sum_p q_c(p) F[k, p], k <= C, where row C of the
// features is ones (the weight). Lanes `lanes` channels at a time: one
// accumulator per channel, then LaneSums. Padding has q = 0.
template <typename T>
SSN_ALWAYS_INLINE void AccumulateChunk(const T* features, const T* assoc,
                                       const int* neighbours, int channels, int padded,
                                       T* sums) {
  typedef typename Simd<T>::V V;
  const int lanes = Simd<T>::kLanes, rows = channels + 1;
  const V zero = {};
  for (int c = 0; c < kNumNeighbours; ++c) {
    const int j = neighbours[c];
    if (j < 0) continue;
    const T* q = assoc + c * kSlicChunk;
    T* out = sums + static_cast<size_t>(j) * rows;
    for (int k0 = 0; k0 < rows; k0 += lanes) {
      // Rows past C + 1 are zeros: the last group of channels is whole too.
      const T* f = features + k0 * kSlicChunk;
      V a[Simd<T>::kLanes];
#pragma GCC unroll 8
      for (int i = 0; i < lanes; ++i) a[i] = zero;
      for (int v = 0; v < padded; v += lanes) {
        const V qv = Load<V>(q + v);
#pragma GCC unroll 8
        for (int i = 0; i < lanes; ++i) a[i] += qv * Load<V>(f + i * kSlicChunk + v);
      }
      const V total = LaneSums(a);
      if (k0 + lanes <= rows) {
        Store(out + k0, Load<V>(out + k0) + total);
      } else {
        for (int i = 0; k0 + i < rows; ++i) out[k0 + i] += total[i];
      }
    }
  }
}

// Runs `chunk(pieces, num_pieces, count)` over the block's pixels in chunks of
// at most kSlicChunk, row by row, splitting rows longer than a chunk.
template <typename Chunk>
SSN_ALWAYS_INLINE void ForEachChunk(int rows, int begin, int end, Chunk chunk) {
  Piece pieces[kSlicChunk];
  int num_pieces = 0, count = 0;
  for (int row = 0; row < rows; ++row) {
    for (int x = begin; x < end; x += kSlicChunk) {
      const int length = std::min(kSlicChunk, end - x);
      if (count + length > kSlicChunk) {
        chunk(pieces, num_pieces, count);
        num_pieces = count = 0;
      }
      const Piece piece = {row, x, length, count};
      pieces[num_pieces++] = piece;
      count += length;
    }
  }
  if (count > 0) chunk(pieces, num_pieces, count);
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
SSN_ALWAYS_INLINE void SlicUpdateBlock(
    const T* pixels, int plane, int width, int rows, int begin, int end,
    const T* centres, const int* neighbours, int channels, int num_spixels, T scale,
    T invalid, T* scratch, T* sums) {
  Scratch<T> buffers(scratch, channels);
  bool valid[kNumNeighbours];
  CentreTable(centres, neighbours, channels, num_spixels, buffers.table, valid);
  FillVectors(buffers.features + channels * kSlicChunk, kSlicChunk, T(1));
  FillVectors(buffers.features + (channels + 1) * kSlicChunk,
              (slic_feature_rows(channels) - channels - 1) * kSlicChunk, T(0));
  // Always inlined, as all of the above: the work runs in each clone's ISA.
  ForEachChunk(rows, begin, end, [&](const Piece* pieces, int num_pieces, int count)
               __attribute__((always_inline)) {
    const int padded = GatherChunk(pixels, plane, width, channels, pieces, num_pieces,
                                   count, buffers.features);
    Associate<T, false>(buffers.features, buffers.table, valid, channels, padded, scale,
                        invalid, buffers.assoc, buffers.best);
    for (int c = 0; c < kNumNeighbours; ++c) {
      std::fill(buffers.assoc + c * kSlicChunk + count, buffers.assoc + c * kSlicChunk + padded,
                T(0));
    }
    AccumulateChunk(buffers.features, buffers.assoc, neighbours, channels, padded, sums);
  });
}

template <typename T>
SSN_ALWAYS_INLINE void SlicAssignBlock(
    const T* pixels, int plane, int width, int rows, int begin, int end,
    const T* centres, const int* neighbours, const T* channel_labels, int channels,
    int num_spixels, T scale, T invalid, T* scratch, T* labels, T* assoc, int spatial) {
  Scratch<T> buffers(scratch, channels);
  bool valid[kNumNeighbours];
  CentreTable(centres, neighbours, channels, num_spixels, buffers.table, valid);
  ForEachChunk(rows, begin, end, [&](const Piece* pieces, int num_pieces, int count)
               __attribute__((always_inline)) {
    const int padded = GatherChunk(pixels, plane, width, channels, pieces, num_pieces,
                                   count, buffers.features);
    Associate<T, true>(buffers.features, buffers.table, valid, channels, padded, scale,
                       invalid, buffers.assoc, buffers.best);
    for (int i = 0; i < num_pieces; ++i) {
      const Piece& piece = pieces[i];
      const int at = piece.row * width + piece.x;
      for (int x = 0; x < piece.length; ++x) {
        labels[at + x] = channel_labels[static_cast<int>(buffers.best[piece.offset + x])];
      }
      if (assoc == NULL) continue;
      for (int c = 0; c < kNumNeighbours; ++c) {
        CopyShort(buffers.assoc + c * kSlicChunk + piece.offset, piece.length,
                  assoc + static_cast<size_t>(c) * spatial + at);
      }
    }
  });
}

}  // namespace

#define SSN_DEFINE_SLIC_KERNELS(T)                                                         \
  SSN_VECTOR_CLONES void slic_update_block(const T* pixels, int plane, int width,          \
      int rows, int begin, int end, const T* centres, const int* neighbours, int channels, \
      int num_spixels, T scale, T invalid, T* scratch, T* sums) {                          \
    SlicUpdateBlock(pixels, plane, width, rows, begin, end, centres, neighbours,           \
                    channels, num_spixels, scale, invalid, scratch, sums);                 \
  }                                                                                        \
  SSN_VECTOR_CLONES void slic_assign_block(const T* pixels, int plane, int width,          \
      int rows, int begin, int end, const T* centres, const int* neighbours,               \
      const T* channel_labels, int channels, int num_spixels, T scale, T invalid,          \
      T* scratch, T* labels, T* assoc, int spatial) {                                      \
    SlicAssignBlock(pixels, plane, width, rows, begin, end, centres, neighbours,           \
                    channel_labels, channels, num_spixels, scale, invalid, scratch, labels, \
                    assoc, spatial);                                                       \
  }

SSN_DEFINE_SLIC_KERNELS(float)
SSN_DEFINE_SLIC_KERNELS(double)
#undef SSN_DEFINE_SLIC_KERNELS

}  // namespace ssn
}  // namespace caffe
