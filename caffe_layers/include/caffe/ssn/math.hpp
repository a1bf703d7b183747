// Per-element math of the SSN layers, shared by the CPU loops and the CUDA
// kernels so that the two paths cannot drift apart. Plain C++ on ints and
// scalars: no Caffe types. SSN_HOST_DEVICE marks a function __host__
// __device__ under nvcc and plain inline under the C++ compiler, so the CPU
// sources include this header as they are.
#ifndef CAFFE_SSN_MATH_HPP_
#define CAFFE_SSN_MATH_HPP_

#ifdef __CUDACC__
#define SSN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define SSN_HOST_DEVICE inline
#endif

namespace caffe {
namespace ssn {

// Candidates of a pixel: the 3x3 block of grid cells around its initial cell.
const int kNumNeighbours = 9;

// Superpixels whose total association is below this are "dead": SpixelFeature2
// outputs zeros for them and passes no gradient through them.
const double kMinSpixelWeight = 0.001;

// Channel c in [0, 9) of an association map stands for the grid offset
// (c / 3 - 1, c % 3 - 1): 0 is up-left, 4 the pixel's own cell, 8 down-right.
SSN_HOST_DEVICE int neighbour_row_offset(int c) { return c / 3 - 1; }
SSN_HOST_DEVICE int neighbour_col_offset(int c) { return c % 3 - 1; }

// Id of neighbour c of grid cell `cell` in a grid_h x grid_w row-major grid,
// or -1 when that neighbour lies outside the grid (no wrap-around).
SSN_HOST_DEVICE int neighbour_index(int cell, int c, int grid_h, int grid_w) {
  const int row = cell / grid_w + neighbour_row_offset(c);
  const int col = cell % grid_w + neighbour_col_offset(c);
  if (row < 0 || row >= grid_h || col < 0 || col >= grid_w) return -1;
  return row * grid_w + col;
}

// The original release's id for neighbour c, valid or not: an out-of-range
// step along an axis keeps the cell's own row or column on that axis.
SSN_HOST_DEVICE int neighbour_index_clamped(int cell, int c, int grid_h,
                                            int grid_w) {
  const int row0 = cell / grid_w, col0 = cell % grid_w;
  int row = row0 + neighbour_row_offset(c);
  int col = col0 + neighbour_col_offset(c);
  if (row < 0 || row >= grid_h) row = row0;
  if (col < 0 || col >= grid_w) col = col0;
  return row * grid_w + col;
}

// Squared Euclidean distance between one pixel's features and one
// superpixel's: sum over k < channels of (pixel[k * pixel_stride] -
// spixel[k * spixel_stride])^2, added up in the order k = 0, 1, ... (the
// features are channel planes, hence the strides). The CUDA kernels of Passoc
// and SlicIterations call it per pixel; the CPU loops compute the same sum
// over runs of pixels at once (cpu_kernels.hpp, slic_iterations_kernels.hpp).
template <typename Dtype>
SSN_HOST_DEVICE Dtype squared_feature_distance(const Dtype* pixel, int pixel_stride,
                                               const Dtype* spixel, int spixel_stride,
                                               int channels) {
  Dtype sum = 0;
  for (int k = 0; k < channels; ++k) {
    const Dtype difference = pixel[k * pixel_stride] - spixel[k * spixel_stride];
    sum += difference * difference;
  }
  return sum;
}

// Index maps are float blobs; ids are read with C truncation, and a value is
// "ignored" when its truncated id equals the (float) ignore value.
template <typename Dtype>
SSN_HOST_DEVICE int index_value(Dtype value) { return static_cast<int>(value); }

SSN_HOST_DEVICE bool is_ignored_index(int index, float ignore_value) {
  return static_cast<float>(index) == ignore_value;
}

template <typename Dtype>
SSN_HOST_DEVICE bool spixel_is_alive(Dtype weight) {
  return weight >= static_cast<Dtype>(kMinSpixelWeight);
}

// The hard assignment's tie rule: scanning the 9 association channels in
// order, a value takes the maximum when it is >= the best so far, so ties go
// to the highest channel, as in Caffe's ArgMax layer (which sorts (value,
// channel) pairs in descending order). A template, so that the CPU can apply
// it to whole vectors of pixels (GCC vector types compare lane by lane; they
// pass by reference, as GCC notes that SSE2 and AVX code pass them by value
// differently).
template <typename T>
SSN_HOST_DEVICE auto argmax_takes(const T& value, const T& best) -> decltype(value >= best) {
  return value >= best;
}

// One axis of an align-corners bilinear resize from in_size to out_size
// samples: output o reads input i0 (weight 1 - lambda) and i0 + step (weight
// lambda). Computed in float as in the original Interp layer.
struct InterpTap {
  int i0;
  int step;
  float lambda;
};

SSN_HOST_DEVICE InterpTap interp_tap(int out, int in_size, int out_size) {
  const float ratio = out_size > 1
      ? static_cast<float>(in_size - 1) / static_cast<float>(out_size - 1)
      : 0.f;
  const float source = ratio * static_cast<float>(out);
  InterpTap tap;
  tap.i0 = static_cast<int>(source);
  tap.step = tap.i0 < in_size - 1 ? 1 : 0;
  tap.lambda = source - static_cast<float>(tap.i0);
  return tap;
}

// Interp output size along one axis (the original's rules, see the layer).
SSN_HOST_DEVICE int interp_shrunk_size(int size, int shrink) {
  return (size - 1) / shrink + 1;
}
SSN_HOST_DEVICE int interp_zoomed_size(int size, int zoom) {
  return size + (size - 1) * (zoom - 1);
}

}  // namespace ssn
}  // namespace caffe

#endif  // CAFFE_SSN_MATH_HPP_
