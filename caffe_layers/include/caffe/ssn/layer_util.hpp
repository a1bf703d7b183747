// CPU-side helpers shared by the SSN layers: checked index reads, the runs of
// equal initial superpixel along an image row, and the grid parameters.
#ifndef CAFFE_SSN_LAYER_UTIL_HPP_
#define CAFFE_SSN_LAYER_UTIL_HPP_

#include <algorithm>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "caffe/blob.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/ssn/math.hpp"
#include "glog/logging.h"

namespace caffe {
namespace ssn {

// Reads an id from an index map and dies with a clear message when it lies
// outside [0, limit). `where` names the layer and input for the message.
template <typename Dtype>
inline int checked_index(Dtype value, int limit, const std::string& where,
                         int n, int pixel, int width) {
  const int index = index_value(value);
  if (index < 0 || index >= limit) {
    LOG(FATAL) << where << ": index " << value << " at image " << n
               << ", row " << pixel / width << ", column " << pixel % width
               << " is outside [0, " << limit << ")";
  }
  return index;
}

// Calls visit(x_begin, x_end, cell) for each maximal run of pixels of one row
// of an initial-superpixel map that share the same cell (checked in [0, K)).
template <typename Dtype, typename Visit>
inline void for_each_cell_run(const Dtype* init_row, int width, int num_cells,
                              const std::string& where, int n, int y,
                              Visit visit) {
  int begin = 0;
  while (begin < width) {
    const int cell = checked_index(init_row[begin], num_cells, where, n,
                                   y * width + begin, width);
    int end = begin + 1;
    while (end < width && index_value(init_row[end]) == cell) ++end;
    visit(begin, end, cell);
    begin = end;
  }
}

inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Threads in the current team (1 outside a parallel region); may be fewer
// than a num_threads clause asked for.
inline int team_size() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

// Below this many rows a layer runs on one thread: starting a team costs more
// than it saves on small blobs (and a busy machine makes it cost far more).
const int kMinParallelRows = 64;

// Calls body(row) for row in [0, rows) on all threads (rows are independent).
template <typename Body>
inline void parallel_rows(int rows, Body body) {
#pragma omp parallel for schedule(static) if (rows >= kMinParallelRows)
  for (int row = 0; row < rows; ++row) body(row);
}

// Calls body(row, sums) for row in [0, rows) on all threads, where `sums` is
// the calling thread's own zeroed buffer of `size` values; the buffers are
// added into `out` at the end. For scatters whose targets rows share.
template <typename Dtype, typename Body>
inline void parallel_rows_sum(int rows, int size, Dtype* out, Body body) {
  const int threads =
      rows >= kMinParallelRows ? std::max(1, std::min(max_threads(), rows)) : 1;
  std::vector<Dtype> partial(static_cast<size_t>(threads) * size, Dtype(0));
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int row = 0; row < rows; ++row) {
    body(row, &partial[static_cast<size_t>(thread_id()) * size]);
  }
  for (int t = 0; t < threads; ++t) {
    const Dtype* sums = &partial[static_cast<size_t>(t) * size];
    for (int i = 0; i < size; ++i) out[i] += sums[i];
  }
}

// The superpixel grid of Passoc and SpixelFeature2. Neighbour ids of a cell.
struct CellNeighbours {
  int index[kNumNeighbours];  // -1 where the neighbour is outside the grid
  CellNeighbours(int cell, int grid_h, int grid_w) {
    for (int c = 0; c < kNumNeighbours; ++c) {
      index[c] = neighbour_index(cell, c, grid_h, grid_w);
    }
  }
};

// Reads num_spixels_h/w of a SpixelFeatureTwoParameter, which must be set.
inline void read_grid(const LayerParameter& param, int* grid_h, int* grid_w) {
  const SpixelFeatureTwoParameter& grid = param.spixel_feature2_param();
  CHECK(grid.has_num_spixels_h() && grid.has_num_spixels_w())
      << param.type() << " layer '" << param.name()
      << "': spixel_feature2_param.num_spixels_h and num_spixels_w are required";
  *grid_h = static_cast<int>(grid.num_spixels_h());
  *grid_w = static_cast<int>(grid.num_spixels_w());
  CHECK(*grid_h >= 1 && *grid_w >= 1)
      << param.type() << " layer '" << param.name()
      << "': the superpixel grid must be at least 1x1, got " << *grid_h << "x"
      << *grid_w;
}

// The bottoms of Passoc and SlicIterations: features F, N x C x H x W;
// superpixel features, N x C x 1 x K for the grid_h x grid_w grid; the initial
// cell map, N x 1 x H x W. `name` names the layer in the messages.
template <typename Dtype>
inline void check_association_bottoms(const std::vector<Blob<Dtype>*>& bottom,
                                      int grid_h, int grid_w, const std::string& name) {
  const Blob<Dtype>& pixels = *bottom[0];
  const Blob<Dtype>& spixels = *bottom[1];
  const Blob<Dtype>& cells = *bottom[2];
  CHECK(pixels.num_axes() == 4 && spixels.num_axes() == 4 && cells.num_axes() == 4)
      << name << ": inputs must be 4-D";
  CHECK(spixels.num() == pixels.num() && cells.num() == pixels.num())
      << name << ": batch sizes differ";
  CHECK_EQ(spixels.channels(), pixels.channels())
      << name << ": pixel and superpixel features differ in channels";
  CHECK(spixels.height() == 1 && spixels.width() == grid_h * grid_w)
      << name << ": superpixel features must be N x C x 1 x " << grid_h * grid_w
      << " for a " << grid_h << "x" << grid_w << " grid";
  CHECK_EQ(cells.channels(), 1) << name << ": the cell map must have 1 channel";
  CHECK(cells.height() == pixels.height() && cells.width() == pixels.width())
      << name << ": cell map and features differ in size";
}

}  // namespace ssn
}  // namespace caffe

#endif  // CAFFE_SSN_LAYER_UTIL_HPP_
