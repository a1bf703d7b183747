// Winograd convolution F(m x m, 3x3), m = 2 or 4 (Lavin and Gray, "Fast
// Algorithms for Convolutional Neural Networks", CVPR 2016): the forward of a
// 2-D, stride-1, undilated, single-group 3x3 convolution of one image with
// 9 m^2 / (m + 2)^2 of the direct sum's multiplications (0.44 for m = 2, 0.25
// for m = 4). ShiftedConv::Forward calls it (shifted_conv.hpp says when).
//
// The output is cut into m x m tiles; tile (ty, tx) reads the a x a input patch
// d (a = m + 2) at rows m ty - pad_h + [0, a) and columns m tx - pad_w + [0, a)
// (zeros outside the image), and for each output channel o
//   y_o = A^T [ sum over c of (G g_oc G^T) . (B^T d_c B) ] A
// where . multiplies element by element and g_oc is the 3x3 kernel; for m = 2
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],
//   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],  A^T = [1 1 1 0; 0 1 -1 -1],
// and for m = 4 the matrices of the points 0, 1, -1, 2, -2 (winograd_conv.cpp).
// The sum over c, for each of the a^2 positions of the transforms, is a matrix
// product (M x C) * (C x tiles). Tiles go in blocks (a tile-row or part of
// one, or several short ones): each thread transforms a block's input into
// its own scratch, multiplies (a^2 cblas products, BLAS on one thread each
// while ours run), and transforms the products back into the output. Partial
// tiles at the right and bottom edges compute the whole tile and store only
// the outputs that exist, so the result is exact there too.
//
// Results differ from the direct sum by rounding: in float, by up to about
// 1e-7 of the sum of the terms' magnitudes (sum over c, a, b of |w x|) for
// m = 2 (the transforms add and halve) and 2e-6 for m = 4 (they scale by up
// to 8 and 1/24; about 1.6e-6 of the outputs' root mean square), against
// 1e-7 for the direct sum.
//
// Plain pointers and ints, no Caffe types.
#ifndef CAFFE_SSN_WINOGRAD_CONV_HPP_
#define CAFFE_SSN_WINOGRAD_CONV_HPP_

#include <cstddef>

namespace caffe {

struct WinogradConv {
  int tile = 2;  // m: outputs a side of a tile, 2 or 4
  int channels = 0, height = 0, width = 0;          // input C x H x W
  int out_channels = 0, out_height = 0, out_width = 0;  // M x (H + 2 pad_h - 2) x ...
  int pad_h = 0, pad_w = 0;
  int threads = 1;  // blocks run on up to this many threads, each with its scratch

  int alpha() const { return tile + 2; }       // inputs a side of a tile
  int positions() const { return alpha() * alpha(); }
  int tiles_h() const { return (out_height + tile - 1) / tile; }
  int tiles_w() const { return (out_width + tile - 1) / tile; }
  // Tiles that one thread transforms and multiplies at a time: the block's
  // transformed input and products (a^2 (C + M) values a tile) stay in cache.
  int block_tiles() const;
  // Output channels rounded up for the products (zero rows of weights past M):
  // OpenBLAS multiplies 16 rows several times faster than 15.
  int padded_out_channels() const { return (out_channels + 7) / 8 * 8; }
  // Values of scratch Forward needs: the transformed weights, a zero row, and
  // each thread's block (its transformed input, products and a lines).
  size_t scratch_size() const;

  // output (M x Ho x Wo) = conv(input (C x H x W), weights (M x C x 3 x 3)),
  // no bias; scratch holds scratch_size() values.
  template <typename Dtype>
  void Forward(const Dtype* input, const Dtype* weights, Dtype* output,
               Dtype* scratch) const;

  // weight_diff (M x C x 3 x 3) += the gradient of the weights of this
  // convolution of input (C x H x W) given output_diff (M x Ho x Wo); scratch
  // holds weights_scratch_size() values. The forward is y = A^T [U . V] A for
  // each tile with U = G g G^T, so dU = sum over tiles of (A dy A^T) . V, a^2
  // products (M x tiles) * (tiles x C), and dg = G^T dU G. Tiles go in bands
  // of tile-rows, a band at a time on each thread: its transforms, then its
  // products into the thread's own dU; the threads' dU are added at the end.
  template <typename Dtype>
  void BackwardWeights(const Dtype* input, const Dtype* output_diff, Dtype* weight_diff,
                       Dtype* scratch) const;
  size_t weights_scratch_size() const;

 private:
  int band_rows() const;     // tile-rows in a band of BackwardWeights
  int band_spacing() const;  // places of a tile-row in a band: whole vectors
  int band_line_size() const;
  size_t weights_thread_scratch_size() const;
  int block_stride() const;  // values between a block's rows: block_tiles + lanes
  int line_size() const;
  size_t thread_scratch_size() const;
};

}  // namespace caffe

#endif  // CAFFE_SSN_WINOGRAD_CONV_HPP_
