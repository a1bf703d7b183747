// The 32-byte vectors below only pass between always-inlined functions of this
// file, never across an ABI boundary: GCC's note that the default (SSE2) clone
// passes them differently from AVX code does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

#include "caffe/ssn/winograd_conv.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "caffe/ssn/layer_util.hpp"
#include "caffe/util/mkl_alternate.hpp"
#include "caffe/ssn/vector_clones.hpp"
#include "caffe/ssn/vector_exp.hpp"
#include "caffe/ssn/vector_memory.hpp"

namespace caffe {
namespace ssn {
namespace {

// The most lanes of a vector (8 floats): blocks and lines are padded by this
// much so that whole vectors may run past their ends.
const int kMaxLanes = 8;
// Values between one position's rows and the next's in a block: a^2 planes a
// multiple of 4 KiB apart would share a few sets of the L1 cache, and the
// transforms read or write all of them at once.
const int kPositionSkew = 16;

// Vectors and the shuffles of the tile transforms. The gathers may put a
// vector's tiles in another order than the line's (whatever takes one
// instruction in each 16-byte half), and the matching scatters put them back:
// the products do not mind the order of their columns.
template <typename T> struct Simd;
template <> struct Simd<float> {
  typedef Float8 V;
  typedef Int8 Index;
  static const int kLanes = 8;
  // F(2, 3): columns 0 and 1 of 8 tiles from 2 vectors of the line
  // (tiles 0, 1, 4, 5, 2, 3, 6, 7); back to consecutive outputs.
  static SSN_ALWAYS_INLINE void Gather2(V a, V b, V* column0, V* column1) {
    *column0 = __builtin_shuffle(a, b, Index{0, 2, 8, 10, 4, 6, 12, 14});
    *column1 = __builtin_shuffle(a, b, Index{1, 3, 9, 11, 5, 7, 13, 15});
  }
  static SSN_ALWAYS_INLINE void Scatter2(V column0, V column1, V* out) {
    out[0] = __builtin_shuffle(column0, column1, Index{0, 8, 1, 9, 4, 12, 5, 13});
    out[1] = __builtin_shuffle(column0, column1, Index{2, 10, 3, 11, 6, 14, 7, 15});
  }
  // F(4, 3): a 4 x 4 transpose in each half. From 4 vectors of the line (2
  // tiles of 4 columns each), column k of 8 tiles (0, 2, 4, 6, 1, 3, 5, 7); and
  // back, as the transpose is its own inverse.
  static SSN_ALWAYS_INLINE void Transpose4(const V* a, V* r) {
    const Index low{0, 8, 1, 9, 4, 12, 5, 13}, high{2, 10, 3, 11, 6, 14, 7, 15};
    const Index low_pairs{0, 1, 8, 9, 4, 5, 12, 13}, high_pairs{2, 3, 10, 11, 6, 7, 14, 15};
    const V t0 = __builtin_shuffle(a[0], a[1], low), t1 = __builtin_shuffle(a[0], a[1], high);
    const V t2 = __builtin_shuffle(a[2], a[3], low), t3 = __builtin_shuffle(a[2], a[3], high);
    r[0] = __builtin_shuffle(t0, t2, low_pairs);
    r[1] = __builtin_shuffle(t0, t2, high_pairs);
    r[2] = __builtin_shuffle(t1, t3, low_pairs);
    r[3] = __builtin_shuffle(t1, t3, high_pairs);
  }
};
template <> struct Simd<double> {
  typedef Double4 V;
  typedef int64_t Index __attribute__((vector_size(32)));
  static const int kLanes = 4;
  // Tiles 0, 2, 1, 3.
  static SSN_ALWAYS_INLINE void Gather2(V a, V b, V* column0, V* column1) {
    *column0 = __builtin_shuffle(a, b, Index{0, 4, 2, 6});
    *column1 = __builtin_shuffle(a, b, Index{1, 5, 3, 7});
  }
  static SSN_ALWAYS_INLINE void Scatter2(V column0, V column1, V* out) {
    out[0] = __builtin_shuffle(column0, column1, Index{0, 4, 2, 6});
    out[1] = __builtin_shuffle(column0, column1, Index{1, 5, 3, 7});
  }
  // A 4 x 4 transpose: one tile a vector; tiles in order.
  static SSN_ALWAYS_INLINE void Transpose4(const V* a, V* r) {
    const Index low{0, 4, 2, 6}, high{1, 5, 3, 7}, first{0, 1, 4, 5}, second{2, 3, 6, 7};
    const V t0 = __builtin_shuffle(a[0], a[1], low), t1 = __builtin_shuffle(a[0], a[1], high);
    const V t2 = __builtin_shuffle(a[2], a[3], low), t3 = __builtin_shuffle(a[2], a[3], high);
    r[0] = __builtin_shuffle(t0, t2, first);
    r[1] = __builtin_shuffle(t1, t3, first);
    r[2] = __builtin_shuffle(t0, t2, second);
    r[3] = __builtin_shuffle(t1, t3, second);
  }
};

// The one-dimensional transforms of F(m, 3), on values or vectors of them
// (lanes are independent): Input is B^T d (a values to a), Output A^T q (a to
// m), and Kernel G g (3 to a, in double: the weights are transformed once a
// call). Gather reads the a input columns of `lanes` tiles from a line (tile
// j's columns at line[m j + k]); Interleave turns m vectors of output columns
// (vector k: column k of each tile) into m vectors of consecutive outputs.
template <int m> struct Transforms;

template <> struct Transforms<2> {
  static const int kAlpha = 4;

  template <typename T, typename V>
  static SSN_ALWAYS_INLINE void Input(const V* d, V* t) {
    t[0] = d[0] - d[2];
    t[1] = d[1] + d[2];
    t[2] = d[2] - d[1];
    t[3] = d[1] - d[3];
  }

  template <typename T, typename V>
  static SSN_ALWAYS_INLINE void Output(const V* q, V* y) {
    y[0] = q[0] + q[1] + q[2];
    y[1] = q[1] - q[2] - q[3];
  }

  static SSN_ALWAYS_INLINE void Kernel(const double* g, double* u) {
    u[0] = g[0];
    u[1] = (g[0] + g[1] + g[2]) * 0.5;
    u[2] = (g[0] - g[1] + g[2]) * 0.5;
    u[3] = g[2];
  }

  template <typename T>
  static SSN_ALWAYS_INLINE void Gather(const T* line, typename Simd<T>::V* d) {
    typedef typename Simd<T>::V V;
    const int lanes = Simd<T>::kLanes;
    Simd<T>::Gather2(Load<V>(line), Load<V>(line + lanes), &d[0], &d[1]);
    Simd<T>::Gather2(Load<V>(line + 2), Load<V>(line + 2 + lanes), &d[2], &d[3]);
  }

  template <typename T>
  static SSN_ALWAYS_INLINE void Interleave(const typename Simd<T>::V* y,
                                           typename Simd<T>::V* out) {
    Simd<T>::Scatter2(y[0], y[1], out);
  }

  // The transposes for the weight gradient: A y (m values to a) and G^T u (a
  // to 3); GatherOutput reads the m columns of `lanes` tiles of a line in the
  // order Gather puts them.
  template <typename T, typename V>
  static SSN_ALWAYS_INLINE void OutputTransposed(const V* y, V* z) {
    z[0] = y[0];
    z[1] = y[0] + y[1];
    z[2] = y[0] - y[1];
    z[3] = T(0) - y[1];
  }

  static SSN_ALWAYS_INLINE void KernelTransposed(const double* u, double* g) {
    g[0] = u[0] + (u[1] + u[2]) * 0.5;
    g[1] = (u[1] - u[2]) * 0.5;
    g[2] = (u[1] + u[2]) * 0.5 + u[3];
  }

  template <typename T>
  static SSN_ALWAYS_INLINE void GatherOutput(const T* line, typename Simd<T>::V* y) {
    typedef typename Simd<T>::V V;
    Simd<T>::Gather2(Load<V>(line), Load<V>(line + Simd<T>::kLanes), &y[0], &y[1]);
  }
};

// F(4, 3) on the points 0, 1, -1, 2, -2 and infinity:
//   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0;
//          0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1],
//   G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6;
//        1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1],
//   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1].
template <> struct Transforms<4> {
  static const int kAlpha = 6;

  template <typename T, typename V>
  static SSN_ALWAYS_INLINE void Input(const V* d, V* t) {
    const V d42 = d[4] - d[2], d31 = d[3] - d[1];
    t[0] = d[0] * T(4) - d[2] * T(5) + d[4];
    t[1] = (d[3] + d[4]) - (d[1] + d[2]) * T(4);
    t[2] = (d[4] - d[3]) + (d[1] - d[2]) * T(4);
    t[3] = d42 + d31 * T(2);
    t[4] = d42 - d31 * T(2);
    t[5] = d[1] * T(4) - d[3] * T(5) + d[5];
  }

  template <typename T, typename V>
  static SSN_ALWAYS_INLINE void Output(const V* q, V* y) {
    const V sum12 = q[1] + q[2], difference12 = q[1] - q[2];
    const V sum34 = q[3] + q[4], difference34 = q[3] - q[4];
    y[0] = q[0] + sum12 + sum34;
    y[1] = difference12 + difference34 * T(2);
    y[2] = sum12 + sum34 * T(4);
    y[3] = difference12 + difference34 * T(8) + q[5];
  }

  static SSN_ALWAYS_INLINE void Kernel(const double* g, double* u) {
    const double outer = g[0] + g[2], weighted = g[0] + 4 * g[2];
    u[0] = g[0] * 0.25;
    u[1] = (outer + g[1]) * (-1. / 6);
    u[2] = (outer - g[1]) * (-1. / 6);
    u[3] = (weighted + 2 * g[1]) * (1. / 24);
    u[4] = (weighted - 2 * g[1]) * (1. / 24);
    u[5] = g[2];
  }

  // Columns 0 to 3 of the tiles by a transpose of 4 vectors; columns 4 and 5
  // are columns 0 and 1 of the tiles one on.
  template <typename T>
  static SSN_ALWAYS_INLINE void Gather(const T* line, typename Simd<T>::V* d) {
    typedef typename Simd<T>::V V;
    const int lanes = Simd<T>::kLanes;
    V a[4], next[4], columns[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      a[k] = Load<V>(line + k * lanes);
      next[k] = Load<V>(line + 4 + k * lanes);
    }
    Simd<T>::Transpose4(a, d);
    Simd<T>::Transpose4(next, columns);
    d[4] = columns[0];
    d[5] = columns[1];
  }

  template <typename T>
  static SSN_ALWAYS_INLINE void Interleave(const typename Simd<T>::V* y,
                                           typename Simd<T>::V* out) {
    Simd<T>::Transpose4(y, out);
  }

  template <typename T, typename V>
  static SSN_ALWAYS_INLINE void OutputTransposed(const V* y, V* z) {
    const V even = y[0] + y[2], odd = y[1] + y[3];
    const V even4 = y[0] + y[2] * T(4), odd8 = y[1] * T(2) + y[3] * T(8);
    z[0] = y[0];
    z[1] = even + odd;
    z[2] = even - odd;
    z[3] = even4 + odd8;
    z[4] = even4 - odd8;
    z[5] = y[3];
  }

  static SSN_ALWAYS_INLINE void KernelTransposed(const double* u, double* g) {
    const double sum12 = u[1] + u[2], sum34 = u[3] + u[4];
    g[0] = u[0] * 0.25 - sum12 * (1. / 6) + sum34 * (1. / 24);
    g[1] = (u[2] - u[1]) * (1. / 6) + (u[3] - u[4]) * (1. / 12);
    g[2] = (sum34 - sum12) * (1. / 6) + u[5];
  }

  // Columns 0 to 3 of the tiles by a transpose of 4 vectors, as Gather.
  template <typename T>
  static SSN_ALWAYS_INLINE void GatherOutput(const T* line, typename Simd<T>::V* y) {
    typedef typename Simd<T>::V V;
    V a[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) a[k] = Load<V>(line + k * Simd<T>::kLanes);
    Simd<T>::Transpose4(a, y);
  }
};

// A block of tiles: `rows` tile-rows from ty, tiles tx + [0, count) of each;
// row r's tiles at places r spacing + [0, count) of the block's rows, where
// spacing is count rounded up to whole vectors (the gathers may move tiles
// within a vector).
struct Block {
  int ty, rows, tx, count, spacing;
};

// The input transforms B^T d B of the block's tiles: v (a^2 blocks of C rows
// of `stride` values, `position` values apart), row c of block xi, column b:
// position xi = a i + j of tile b's transform for channel c. Rows outside the
// image read `zeros` (a row of zeros); `lines` holds a lines of line_size
// values.
template <typename T, int kTile>
SSN_ALWAYS_INLINE void InputBlock(const T* input, int channels, int height, int width,
                                  int pad_h, int pad_w, Block block, const T* zeros, T* lines,
                                  int line_size, T* v, int stride, size_t position) {
  typedef typename Simd<T>::V V;
  typedef Transforms<kTile> F;
  const int lanes = Simd<T>::kLanes, kAlpha = F::kAlpha;
  const size_t plane = static_cast<size_t>(height) * width;
  const int run = block.count, x = kTile * block.tx - pad_w;
  for (int r = 0; r < block.rows; ++r) {
    const int y = kTile * (block.ty + r) - pad_h, place = r * block.spacing;
    // Line p is input column x + p; the tiles read p in [0, m run + 2), whole
    // vectors [0, m (run + lanes)); columns outside the image are zeros.
    const int length = kTile * (run + lanes);
    const int begin = std::min(length, std::max(0, -x));
    const int end = std::max(begin, std::min(length, width - x));
    for (int c = 0; c < channels; ++c) {
      const T* row[kAlpha];  // row[i][x + p]: line p of input row y + i
      T* z[kAlpha];
      for (int i = 0; i < kAlpha; ++i) {
        row[i] = y + i >= 0 && y + i < height
                     ? input + c * plane + static_cast<size_t>(y + i) * width : zeros;
        z[i] = lines + i * line_size;
        std::fill(z[i], z[i] + begin, T(0));
        std::fill(z[i] + end, z[i] + length, T(0));
      }
      // Down the columns: z = B^T d, line by line.
      int p = begin;
      for (; p + lanes <= end; p += lanes) {
        V d[kAlpha], t[kAlpha];
#pragma GCC unroll 8
        for (int i = 0; i < kAlpha; ++i) d[i] = Load<V>(row[i] + (x + p));
        F::template Input<T>(d, t);
#pragma GCC unroll 8
        for (int i = 0; i < kAlpha; ++i) Store(z[i] + p, t[i]);
      }
      for (; p < end; ++p) {
        T d[kAlpha], t[kAlpha];
#pragma GCC unroll 8
        for (int i = 0; i < kAlpha; ++i) d[i] = row[i][x + p];
        F::template Input<T>(d, t);
#pragma GCC unroll 8
        for (int i = 0; i < kAlpha; ++i) z[i][p] = t[i];
      }
      // Along the rows: z B, tile j reading line values m j + [0, a).
      for (int i = 0; i < kAlpha; ++i) {
        T* out = v + static_cast<size_t>(kAlpha * i) * position +
                 static_cast<size_t>(c) * stride + place;
        for (int j = 0; j < run; j += lanes) {
          V d[kAlpha], t[kAlpha];
          F::template Gather<T>(z[i] + kTile * j, d);
          F::template Input<T>(d, t);
#pragma GCC unroll 8
          for (int k = 0; k < kAlpha; ++k) Store(out + k * position + j, t[k]);
        }
      }
    }
  }
}

// The transposed output transforms A y A^T of the block's tiles of the output
// gradient y (M x Ho x Wo, zero outside it): z (a^2 blocks of M rows of
// `stride` values, `position` apart), row o of block xi, column b: position
// xi of tile b's transform for output channel o, the tiles in the order of
// InputBlock's. Rows outside the output read `zeros` (at least Wo zeros);
// `lines` holds a lines of line_size values.
template <typename T, int kTile>
SSN_ALWAYS_INLINE void OutputDiffBlock(const T* output_diff, int out_channels,
                                       int out_height, int out_width, Block block,
                                       const T* zeros, T* lines, int line_size, T* z,
                                       int stride, size_t position) {
  typedef typename Simd<T>::V V;
  typedef Transforms<kTile> F;
  const int lanes = Simd<T>::kLanes, kAlpha = F::kAlpha;
  const size_t plane = static_cast<size_t>(out_height) * out_width;
  const int run = block.count, x = kTile * block.tx;
  // Line p is output column x + p; the gathers read whole vectors of
  // [0, m run rounded up to lanes tiles); columns past the output are zeros.
  const int length = kTile * ((run + lanes - 1) / lanes * lanes);
  const int end = std::max(0, std::min(length, out_width - x));
  for (int r = 0; r < block.rows; ++r) {
    const int y = kTile * (block.ty + r), place = r * block.spacing;
    for (int o = 0; o < out_channels; ++o) {
      const T* row[kTile];
      T* lz[kAlpha];
      for (int i = 0; i < kTile; ++i) {
        row[i] = y + i < out_height
                     ? output_diff + o * plane + static_cast<size_t>(y + i) * out_width + x
                     : zeros;
      }
      for (int i = 0; i < kAlpha; ++i) {
        lz[i] = lines + i * line_size;
        std::fill(lz[i] + end, lz[i] + length, T(0));
      }
      // Down the columns: A y, line by line.
      int p = 0;
      for (; p + lanes <= end; p += lanes) {
        V d[kTile], t[kAlpha];
#pragma GCC unroll 8
        for (int i = 0; i < kTile; ++i) d[i] = Load<V>(row[i] + p);
        F::template OutputTransposed<T>(d, t);
#pragma GCC unroll 8
        for (int i = 0; i < kAlpha; ++i) Store(lz[i] + p, t[i]);
      }
      for (; p < end; ++p) {
        T d[kTile], t[kAlpha];
#pragma GCC unroll 8
        for (int i = 0; i < kTile; ++i) d[i] = row[i][p];
        F::template OutputTransposed<T>(d, t);
#pragma GCC unroll 8
        for (int i = 0; i < kAlpha; ++i) lz[i][p] = t[i];
      }
      // Along the rows: (A y) A^T, tile j reading line values m j + [0, m).
      for (int i = 0; i < kAlpha; ++i) {
        T* out = z + static_cast<size_t>(kAlpha * i) * position +
                 static_cast<size_t>(o) * stride + place;
        for (int j = 0; j < run; j += lanes) {
          V d[kTile], t[kAlpha];
          F::template GatherOutput<T>(lz[i] + kTile * j, d);
          F::template OutputTransposed<T>(d, t);
#pragma GCC unroll 8
          for (int k = 0; k < kAlpha; ++k) Store(out + k * position + j, t[k]);
        }
      }
    }
  }
}

// The output transforms A^T q A of the block's products q (a^2 x padded M rows
// of `stride` values, row xi * padded M + o) into output (M x Ho x Wo): each
// tile's m x m outputs that lie inside the image.
template <typename T, int kTile>
SSN_ALWAYS_INLINE void OutputBlock(const T* q, int out_channels, int padded_out_channels,
                                   int out_height, int out_width, Block block, int stride,
                                   T* output) {
  typedef typename Simd<T>::V V;
  typedef Transforms<kTile> F;
  const int lanes = Simd<T>::kLanes, kAlpha = F::kAlpha;
  const size_t position = static_cast<size_t>(padded_out_channels) * stride + kPositionSkew;
  const int run = block.count, x = kTile * block.tx;
  for (int block_row = 0; block_row < block.rows; ++block_row) {
    const int y = kTile * (block.ty + block_row), place = block_row * block.spacing;
    const int rows = std::min(kTile, out_height - y);
    for (int o = 0; o < out_channels; ++o) {
      const T* at = q + static_cast<size_t>(o) * stride + place;
      T* out = output + (static_cast<size_t>(o) * out_height + y) * out_width + x;
      for (int j = 0; j < run; j += lanes) {
        V s[kTile][kAlpha];  // A^T q, column by column
#pragma GCC unroll 8
        for (int k = 0; k < kAlpha; ++k) {
          V column[kAlpha], sums[kTile];
#pragma GCC unroll 8
          for (int i = 0; i < kAlpha; ++i) {
            column[i] = Load<V>(at + (kAlpha * i + k) * position + j);
          }
          F::template Output<T>(column, sums);
#pragma GCC unroll 8
          for (int r = 0; r < kTile; ++r) s[r][k] = sums[r];
        }
        V result[kTile][kTile];  // row r, column k of each tile
#pragma GCC unroll 8
        for (int r = 0; r < kTile; ++r) F::template Output<T>(s[r], result[r]);
        if (j + lanes <= run && x + kTile * (j + lanes) <= out_width) {
          for (int r = 0; r < rows; ++r) {
            V line[kTile];
            F::template Interleave<T>(result[r], line);
#pragma GCC unroll 8
            for (int k = 0; k < kTile; ++k) {
              Store(out + r * out_width + kTile * j + k * lanes, line[k]);
            }
          }
          continue;
        }
        // The last tiles of a run: the outputs that exist, through a buffer.
        const int columns =
            std::min(kTile * std::min(lanes, run - j), out_width - (x + kTile * j));
        for (int r = 0; r < rows; ++r) {
          V line[kTile];
          F::template Interleave<T>(result[r], line);
          T buffer[kTile * kMaxLanes];
          std::memcpy(buffer, line, sizeof(line));
          std::copy(buffer, buffer + columns, out + r * out_width + kTile * j);
        }
      }
    }
  }
}

}  // namespace

#define SSN_DEFINE_WINOGRAD_KERNELS(T)                                                       \
  SSN_VECTOR_CLONES void winograd_input_block(int m, const T* input, int channels,           \
      int height, int width, int pad_h, int pad_w, Block block, const T* zeros, T* lines,    \
      int line_size, T* v, int stride, size_t position) {                                    \
    if (m == 2) {                                                                            \
      InputBlock<T, 2>(input, channels, height, width, pad_h, pad_w, block, zeros, lines,    \
                       line_size, v, stride, position);                                      \
    } else {                                                                                 \
      InputBlock<T, 4>(input, channels, height, width, pad_h, pad_w, block, zeros, lines,    \
                       line_size, v, stride, position);                                      \
    }                                                                                        \
  }                                                                                          \
  SSN_VECTOR_CLONES void winograd_output_diff_block(int m, const T* output_diff,             \
      int out_channels, int out_height, int out_width, Block block, const T* zeros,          \
      T* lines, int line_size, T* z, int stride, size_t position) {                          \
    if (m == 2) {                                                                            \
      OutputDiffBlock<T, 2>(output_diff, out_channels, out_height, out_width, block, zeros,  \
                            lines, line_size, z, stride, position);                          \
    } else {                                                                                 \
      OutputDiffBlock<T, 4>(output_diff, out_channels, out_height, out_width, block, zeros,  \
                            lines, line_size, z, stride, position);                          \
    }                                                                                        \
  }                                                                                          \
  SSN_VECTOR_CLONES void winograd_output_block(int m, const T* q, int out_channels,          \
      int padded_out_channels, int out_height, int out_width, Block block, int stride,       \
      T* output) {                                                                           \
    if (m == 2) {                                                                            \
      OutputBlock<T, 2>(q, out_channels, padded_out_channels, out_height, out_width, block,   \
                        stride, output);                                                     \
    } else {                                                                                 \
      OutputBlock<T, 4>(q, out_channels, padded_out_channels, out_height, out_width, block,   \
                        stride, output);                                                     \
    }                                                                                        \
  }

SSN_DEFINE_WINOGRAD_KERNELS(float)
SSN_DEFINE_WINOGRAD_KERNELS(double)
#undef SSN_DEFINE_WINOGRAD_KERNELS

}  // namespace ssn

namespace {

// u (a^2 planes of padded M x C, kPositionSkew apart), plane xi, row o, column
// c: position xi of G g G^T for the kernel g of output o and input c; zeros
// for o >= M.
template <int kTile, typename Dtype>
void TransformWeights(const Dtype* weights, int out_channels, int padded_out_channels,
                      int channels, Dtype* u) {
  typedef ssn::Transforms<kTile> F;
  const int kAlpha = F::kAlpha;
  const size_t rows = static_cast<size_t>(padded_out_channels) * channels;
  const size_t position = rows + ssn::kPositionSkew;
  for (int xi = 0; xi < kAlpha * kAlpha; ++xi) {
    std::fill(u + xi * position + static_cast<size_t>(out_channels) * channels,
              u + xi * position + rows, Dtype(0));
  }
  for (int o = 0; o < out_channels; ++o) {
    for (int c = 0; c < channels; ++c) {
      const Dtype* g = weights + (static_cast<size_t>(o) * channels + c) * 9;
      double gg[kAlpha][3];  // G g, column by column
      for (int b = 0; b < 3; ++b) {
        const double column[3] = {g[b], g[3 + b], g[6 + b]};
        double transformed[kAlpha];
        F::Kernel(column, transformed);
        for (int i = 0; i < kAlpha; ++i) gg[i][b] = transformed[i];
      }
      Dtype* at = u + static_cast<size_t>(o) * channels + c;
      for (int i = 0; i < kAlpha; ++i) {  // (G g) G^T, row by row
        double row[kAlpha];
        F::Kernel(gg[i], row);
        for (int j = 0; j < kAlpha; ++j) {
          at[(kAlpha * i + j) * position] = static_cast<Dtype>(row[j]);
        }
      }
    }
  }
}

void gemm(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
          int ldc) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.f, a, lda, b, ldb, 0.f, c,
              ldc);
}

void gemm(int m, int n, int k, const double* a, int lda, const double* b, int ldb, double* c,
          int ldc) {
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1., a, lda, b, ldb, 0., c,
              ldc);
}

// While it lives, OpenBLAS's pthreads build runs each product on the calling
// thread: the threads of ours that call it are already all the cores (left to
// itself it would start its own team for each product of each of them).
class OneThreadBlas {
 public:
  explicit OneThreadBlas(bool active) {
#ifdef OPENBLAS_VERSION
    if (active && openblas_get_parallel() == 1 && openblas_get_num_threads() > 1) {
      saved_ = openblas_get_num_threads();
      openblas_set_num_threads(1);
    }
#endif
  }
  ~OneThreadBlas() {
#ifdef OPENBLAS_VERSION
    if (saved_ > 0) openblas_set_num_threads(saved_);
#endif
  }
  OneThreadBlas(const OneThreadBlas&) = delete;
  OneThreadBlas& operator=(const OneThreadBlas&) = delete;

 private:
  int saved_ = 0;
};

}  // namespace

// Measured on the SSN feature CNN's convolutions (481x321, 64 and 197 input
// channels): smaller blocks multiply less efficiently, larger ones leave the
// cache.
int WinogradConv::block_tiles() const { return tile == 2 ? 128 : 64; }

int WinogradConv::block_stride() const { return block_tiles() + ssn::kMaxLanes; }

int WinogradConv::line_size() const { return tile * (block_tiles() + ssn::kMaxLanes); }

size_t WinogradConv::thread_scratch_size() const {
  return static_cast<size_t>(positions()) *
         ((channels + padded_out_channels()) * block_stride() + 2 * ssn::kPositionSkew) +
         alpha() * line_size();
}

size_t WinogradConv::scratch_size() const {
  return static_cast<size_t>(positions()) * (padded_out_channels() * channels +
                                             ssn::kPositionSkew) + width +
         static_cast<size_t>(threads) * thread_scratch_size();
}

template <typename Dtype>
void WinogradConv::Forward(const Dtype* input, const Dtype* weights, Dtype* output,
                           Dtype* scratch) const {
  const int M = out_channels, Mp = padded_out_channels(), C = channels, P = positions();
  const int stride = block_stride(), per_block = block_tiles(), lanes = ssn::kMaxLanes;
  // Blocks: pieces of equal length of one tile-row, or as many tile-rows as fit.
  const int th = tiles_h(), tw = tiles_w();
  int segment = tw, rows_per_block = 1;
  if (tw >= per_block) {
    const int pieces = (tw + per_block - 1) / per_block;
    segment = ((tw + pieces - 1) / pieces + lanes - 1) / lanes * lanes;
  } else {
    rows_per_block = per_block / ((tw + lanes - 1) / lanes * lanes);
  }
  const int segments = (tw + segment - 1) / segment;
  const int blocks = (th + rows_per_block - 1) / rows_per_block * segments;
  Dtype* u = scratch;
  const size_t u_position = static_cast<size_t>(Mp) * C + ssn::kPositionSkew;
  Dtype* zeros = u + P * u_position;
  Dtype* per_thread = zeros + width;
  if (tile == 2) {
    TransformWeights<2>(weights, M, Mp, C, u);
  } else {
    TransformWeights<4>(weights, M, Mp, C, u);
  }
  std::fill(zeros, zeros + width, Dtype(0));
  const int team = std::max(1, std::min(threads, blocks));
  OneThreadBlas one_thread_blas(team > 1);
#pragma omp parallel for schedule(static) num_threads(team) if (team > 1)
  for (int index = 0; index < blocks; ++index) {
    Dtype* v = per_thread + ssn::thread_id() * thread_scratch_size();
    const size_t v_position = static_cast<size_t>(C) * stride + ssn::kPositionSkew;
    const size_t q_position = static_cast<size_t>(Mp) * stride + ssn::kPositionSkew;
    Dtype* q = v + P * v_position;
    Dtype* lines = q + P * q_position;
    ssn::Block block;
    block.ty = index / segments * rows_per_block;
    block.rows = std::min(rows_per_block, th - block.ty);
    block.tx = index % segments * segment;
    block.count = std::min(segment, tw - block.tx);
    block.spacing = (block.count + lanes - 1) / lanes * lanes;
    const int places = block.rows * block.spacing;  // tiles may sit anywhere in a vector
    ssn::winograd_input_block(tile, input, C, height, width, pad_h, pad_w, block, zeros, lines,
                              line_size(), v, stride, v_position);
    for (int xi = 0; xi < P; ++xi) {
      gemm(Mp, places, C, u + xi * u_position, C, v + xi * v_position, stride,
           q + xi * q_position, stride);
    }
    ssn::winograd_output_block(tile, q, M, Mp, out_height, out_width, block, stride, output);
  }
}

namespace {

// Band places: products of about this many tiles multiply efficiently, and a
// band's transforms ((C + M) a^2 values a tile) stay in the shared cache.
const int kBandTiles = 256;

template <int kTile, typename Dtype>
void AddKernelGradients(const Dtype* du, size_t position, int out_channels, int channels,
                        Dtype* weight_diff) {
  typedef ssn::Transforms<kTile> F;
  const int kAlpha = F::kAlpha;
  for (int o = 0; o < out_channels; ++o) {
    for (int c = 0; c < channels; ++c) {
      const Dtype* at = du + static_cast<size_t>(o) * channels + c;
      double rows[3][kAlpha];  // G^T dU, column by column
      for (int j = 0; j < kAlpha; ++j) {
        double column[kAlpha], reduced[3];
        for (int i = 0; i < kAlpha; ++i) column[i] = at[(kAlpha * i + j) * position];
        F::KernelTransposed(column, reduced);
        for (int a = 0; a < 3; ++a) rows[a][j] = reduced[a];
      }
      Dtype* g = weight_diff + (static_cast<size_t>(o) * channels + c) * 9;
      for (int a = 0; a < 3; ++a) {  // (G^T dU) G, row by row
        double reduced[3];
        F::KernelTransposed(rows[a], reduced);
        for (int b = 0; b < 3; ++b) g[3 * a + b] += static_cast<Dtype>(reduced[b]);
      }
    }
  }
}

void gemm_nt(int m, int n, int k, const float* a, int lda, const float* b, int ldb,
             float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.f, a, lda, b, ldb, beta, c,
              ldc);
}

void gemm_nt(int m, int n, int k, const double* a, int lda, const double* b, int ldb,
             double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1., a, lda, b, ldb, beta, c,
              ldc);
}

}  // namespace

int WinogradConv::band_spacing() const {
  return (tiles_w() + ssn::kMaxLanes - 1) / ssn::kMaxLanes * ssn::kMaxLanes;
}

int WinogradConv::band_rows() const {
  return std::max(1, std::min(tiles_h(), kBandTiles / band_spacing()));
}

int WinogradConv::band_line_size() const {
  return tile * (band_spacing() + ssn::kMaxLanes);
}

size_t WinogradConv::weights_thread_scratch_size() const {
  const size_t stride = static_cast<size_t>(band_rows()) * band_spacing();
  const size_t P = positions(), Mp = padded_out_channels();
  return P * (Mp * channels + ssn::kPositionSkew) +      // dU
         P * (channels * stride + ssn::kPositionSkew) +  // V
         P * (Mp * stride + ssn::kPositionSkew) +        // Z
         alpha() * band_line_size();                     // lines
}

size_t WinogradConv::weights_scratch_size() const {
  return std::max(width, out_width) + static_cast<size_t>(threads) *
         weights_thread_scratch_size();
}

template <typename Dtype>
void WinogradConv::BackwardWeights(const Dtype* input, const Dtype* output_diff,
                                   Dtype* weight_diff, Dtype* scratch) const {
  const int M = out_channels, Mp = padded_out_channels(), C = channels, P = positions();
  const int th = tiles_h(), tw = tiles_w(), spacing = band_spacing(), rows = band_rows();
  const int stride = rows * spacing, line = band_line_size();
  const size_t u_position = static_cast<size_t>(Mp) * C + ssn::kPositionSkew;
  const size_t v_position = static_cast<size_t>(C) * stride + ssn::kPositionSkew;
  const size_t z_position = static_cast<size_t>(Mp) * stride + ssn::kPositionSkew;
  const size_t per_thread = weights_thread_scratch_size();
  Dtype* zeros = scratch;
  Dtype* first_du = zeros + std::max(width, out_width);
  std::fill(zeros, first_du, Dtype(0));
  const int bands = (th + rows - 1) / rows;
  const int team = std::max(1, std::min(threads, bands));
  OneThreadBlas one_thread_blas(team > 1);
#pragma omp parallel num_threads(team) if (team > 1)
  {
    Dtype* du = first_du + static_cast<size_t>(ssn::thread_id()) * per_thread;
    Dtype* v = du + P * u_position;
    Dtype* z = v + P * v_position;
    Dtype* lines = z + P * z_position;
    // dU starts at zero; V and Z are zero where the transforms never write and
    // the products read: the rows of Z past M, and the places past a
    // tile-row's last whole vector (double's vectors are shorter than the
    // spacing assumes).
    std::fill(du, lines, Dtype(0));
    // Static: each thread sums the same bands in every call, so the gradient is
    // the same bits from run to run (dynamic scheduling changed the sums' order).
#pragma omp for schedule(static)
    for (int band = 0; band < bands; ++band) {
      const int first = band * rows, count = std::min(rows, th - first);
      for (int r = 0; r < count; ++r) {
        ssn::Block block;
        block.ty = first + r, block.rows = 1, block.tx = 0, block.count = tw;
        block.spacing = spacing;
        ssn::winograd_input_block(tile, input, C, height, width, pad_h, pad_w, block, zeros,
                                  lines, line, v + r * spacing, stride, v_position);
        ssn::winograd_output_diff_block(tile, output_diff, M, out_height, out_width, block,
                                        zeros, lines, line, z + r * spacing, stride,
                                        z_position);
      }
      // The last band may be shorter: its products cover its own rows only.
      for (int xi = 0; xi < P; ++xi) {
        gemm_nt(Mp, C, count * spacing, z + xi * z_position, stride, v + xi * v_position,
                stride, Dtype(1), du + xi * u_position, C);
      }
    }
  }
  for (int t = 1; t < team; ++t) {  // the threads' dU into the first's
    const Dtype* du = first_du + static_cast<size_t>(t) * per_thread;
    for (size_t i = 0; i < P * u_position; ++i) first_du[i] += du[i];
  }
  if (tile == 2) {
    AddKernelGradients<2>(first_du, u_position, M, C, weight_diff);
  } else {
    AddKernelGradients<4>(first_du, u_position, M, C, weight_diff);
  }
}

template void WinogradConv::BackwardWeights<float>(const float*, const float*, float*,
                                                   float*) const;
template void WinogradConv::BackwardWeights<double>(const double*, const double*, double*,
                                                    double*) const;
template void WinogradConv::Forward<float>(const float*, const float*, float*, float*) const;
template void WinogradConv::Forward<double>(const double*, const double*, double*,
                                            double*) const;

}  // namespace caffe
