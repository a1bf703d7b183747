#include <string>
#include <vector>

#include "caffe/layers/spixel_to_pixel_layer.hpp"
#include "caffe/ssn/layer_util.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/ssn/vector_clones.hpp"

namespace caffe {
namespace ssn {

// The CPU kernels on one run of pixels [begin, end) of a row that share their
// initial cell, hence their 9 candidates `neighbours` (-1 outside the grid).
// Planes are `spatial` values apart; `assoc`, `top` and their diffs point at
// the row's first pixel; superpixel arrays are C x K (K = num_spixels).
namespace {

// top[k][x] = sum over valid i of assoc[i][x] * spixels[k][j_i].
template <typename T>
SSN_ALWAYS_INLINE void SpixelToPixelForwardRun(
    const T* spixels, const T* assoc, const int* neighbours, int channels,
    int spatial, int num_spixels, int begin, int end, T* top) {
  for (int k = 0; k < channels; ++k) {
    T* out = top + k * spatial;
#pragma omp simd
    for (int x = begin; x < end; ++x) out[x] = 0;
    for (int i = 0; i < kNumNeighbours; ++i) {
      const int j = neighbours[i];
      if (j < 0) continue;
      const T* q = assoc + i * spatial;
      const T s = spixels[k * num_spixels + j];
#pragma omp simd
      for (int x = begin; x < end; ++x) out[x] += s * q[x];
    }
  }
}

// For valid i: assoc_diff[i][x] += sum_k top_diff[k][x] spixels[k][j_i] and
// spixel_diff[k][j_i] += sum_x top_diff[k][x] assoc[i][x], in one pass.
template <typename T>
SSN_ALWAYS_INLINE void SpixelToPixelBackwardRun(
    const T* spixels, const T* assoc, const T* top_diff, const int* neighbours,
    int channels, int spatial, int num_spixels, int begin, int end,
    T* assoc_diff, T* spixel_diff) {
  for (int i = 0; i < kNumNeighbours; ++i) {
    const int j = neighbours[i];
    if (j < 0) continue;
    const T* q = assoc + i * spatial;
    T* dq = assoc_diff + i * spatial;
    for (int k = 0; k < channels; ++k) {
      const T* g = top_diff + k * spatial;
      const T s = spixels[k * num_spixels + j];
      T ds = 0;
#pragma omp simd reduction(+:ds)
      for (int x = begin; x < end; ++x) {
        dq[x] += g[x] * s;
        ds += g[x] * q[x];
      }
      spixel_diff[k * num_spixels + j] += ds;
    }
  }
}

}  // namespace

#define SSN_DEFINE_SPIXEL_TO_PIXEL_KERNELS(T)                                 \
  SSN_VECTOR_CLONES void spixel_to_pixel_forward_run(const T* spixels,        \
      const T* assoc, const int* neighbours, int channels, int spatial,       \
      int num_spixels, int begin, int end, T* top) {                          \
    SpixelToPixelForwardRun(spixels, assoc, neighbours, channels, spatial,    \
                            num_spixels, begin, end, top);                    \
  }                                                                           \
  SSN_VECTOR_CLONES void spixel_to_pixel_backward_run(const T* spixels,       \
      const T* assoc, const T* top_diff, const int* neighbours, int channels, \
      int spatial, int num_spixels, int begin, int end, T* assoc_diff,        \
      T* spixel_diff) {                                                       \
    SpixelToPixelBackwardRun(spixels, assoc, top_diff, neighbours, channels,  \
                             spatial, num_spixels, begin, end, assoc_diff,    \
                             spixel_diff);                                    \
  }

SSN_DEFINE_SPIXEL_TO_PIXEL_KERNELS(float)
SSN_DEFINE_SPIXEL_TO_PIXEL_KERNELS(double)
#undef SSN_DEFINE_SPIXEL_TO_PIXEL_KERNELS

}  // namespace ssn

template <typename Dtype>
void SpixelToPixelLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                                           const vector<Blob<Dtype>*>& top) {
  ssn::read_grid(this->layer_param_, &grid_h_, &grid_w_);
}

template <typename Dtype>
void SpixelToPixelLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
                                        const vector<Blob<Dtype>*>& top) {
  const std::string name = "SpixelToPixel '" + this->layer_param_.name() + "'";
  const Blob<Dtype>& spixels = *bottom[0];
  const Blob<Dtype>& assoc = *bottom[1];
  const Blob<Dtype>& cells = *bottom[2];
  const int num_spixels = grid_h_ * grid_w_;
  CHECK(spixels.num_axes() == 4 && assoc.num_axes() == 4 && cells.num_axes() == 4)
      << name << ": inputs must be 4-D";
  CHECK(assoc.num() == spixels.num() && cells.num() == spixels.num())
      << name << ": batch sizes differ";
  CHECK(spixels.height() == 1 && spixels.width() == num_spixels)
      << name << ": superpixel values must be N x C x 1 x " << num_spixels
      << " for a " << grid_h_ << "x" << grid_w_ << " grid";
  CHECK_EQ(assoc.channels(), ssn::kNumNeighbours)
      << name << ": associations must have 9 channels";
  CHECK_EQ(cells.channels(), 1) << name << ": the cell map must have 1 channel";
  CHECK(cells.height() == assoc.height() && cells.width() == assoc.width())
      << name << ": associations and cell map differ in size";
  top[0]->Reshape(spixels.num(), spixels.channels(), assoc.height(),
                  assoc.width());
  weights_.Reshape(spixels.num(), 1, 1, num_spixels);
}

// Every pixel's output depends only on its own row: rows run in parallel.
template <typename Dtype>
void SpixelToPixelLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
                                            const vector<Blob<Dtype>*>& top) {
  const std::string where = "SpixelToPixel '" + this->layer_param_.name() +
                            "' cell map";
  const int num = top[0]->num(), channels = top[0]->channels();
  const int height = top[0]->height(), width = top[0]->width();
  const int spatial = height * width, num_spixels = grid_h_ * grid_w_;
  // Blob pointers outside the parallel rows: a blob's first access allocates it.
  const Dtype* spixels_all = bottom[0]->cpu_data();
  const Dtype* assoc_all = bottom[1]->cpu_data();
  const Dtype* cells_all = bottom[2]->cpu_data();
  Dtype* top_all = top[0]->mutable_cpu_data();
  ssn::parallel_rows(num * height, [&](int image_row) {
    const int n = image_row / height, y = image_row % height;
    const int row = y * width;
    const Dtype* spixels = spixels_all + bottom[0]->offset(n);
    const Dtype* assoc = assoc_all + bottom[1]->offset(n) + row;
    const Dtype* cells = cells_all + bottom[2]->offset(n) + row;
    Dtype* out = top_all + top[0]->offset(n) + row;
    ssn::for_each_cell_run(cells, width, num_spixels, where, n, y,
        [&](int begin, int end, int cell) {
      const ssn::CellNeighbours neighbours(cell, grid_h_, grid_w_);
      ssn::spixel_to_pixel_forward_run(spixels, assoc, neighbours.index,
                                       channels, spatial, num_spixels, begin,
                                       end, out);
    });
  });
}

// dQ is per pixel; dS is a scatter that rows share, summed in a buffer per
// thread (N x C x K) and added into the zeroed diff at the end.
template <typename Dtype>
void SpixelToPixelLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
                                             const vector<bool>& propagate_down,
                                             const vector<Blob<Dtype>*>& bottom) {
  CHECK(!propagate_down[2]) << "SpixelToPixel '" << this->layer_param_.name()
                            << "': cannot backpropagate to the cell map";
  if (!propagate_down[0] && !propagate_down[1]) return;
  const std::string where = "SpixelToPixel '" + this->layer_param_.name() +
                            "' cell map";
  const int num = top[0]->num(), channels = top[0]->channels();
  const int height = top[0]->height(), width = top[0]->width();
  const int spatial = height * width, num_spixels = grid_h_ * grid_w_;
  caffe_set(bottom[0]->count(), Dtype(0), bottom[0]->mutable_cpu_diff());
  caffe_set(bottom[1]->count(), Dtype(0), bottom[1]->mutable_cpu_diff());
  const Dtype* spixels_all = bottom[0]->cpu_data();  // outside the rows
  const Dtype* assoc_all = bottom[1]->cpu_data();
  const Dtype* cells_all = bottom[2]->cpu_data();
  const Dtype* top_diff_all = top[0]->cpu_diff();
  Dtype* assoc_diff_all = bottom[1]->mutable_cpu_diff();
  Dtype* spixel_diff_all = bottom[0]->mutable_cpu_diff();
  ssn::parallel_rows_sum(num * height, bottom[0]->count(), spixel_diff_all,
                         [&](int image_row, Dtype* thread_sums) {
    const int n = image_row / height, y = image_row % height;
    const int row = y * width;
    const Dtype* spixels = spixels_all + bottom[0]->offset(n);
    const Dtype* assoc = assoc_all + bottom[1]->offset(n) + row;
    const Dtype* cells = cells_all + bottom[2]->offset(n) + row;
    const Dtype* top_diff = top_diff_all + top[0]->offset(n) + row;
    Dtype* assoc_diff = assoc_diff_all + bottom[1]->offset(n) + row;
    Dtype* spixel_diff = thread_sums + bottom[0]->offset(n);
    ssn::for_each_cell_run(cells, width, num_spixels, where, n, y,
        [&](int begin, int end, int cell) {
      const ssn::CellNeighbours neighbours(cell, grid_h_, grid_w_);
      ssn::spixel_to_pixel_backward_run(spixels, assoc, top_diff,
                                        neighbours.index, channels, spatial,
                                        num_spixels, begin, end, assoc_diff,
                                        spixel_diff);
    });
  });
}

#ifdef CPU_ONLY
STUB_GPU(SpixelToPixelLayer);
#endif

INSTANTIATE_CLASS(SpixelToPixelLayer);
REGISTER_LAYER_CLASS(SpixelToPixel);

}  // namespace caffe
