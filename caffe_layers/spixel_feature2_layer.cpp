#include <string>
#include <vector>

#include "caffe/layers/spixel_feature2_layer.hpp"
#include "caffe/ssn/cpu_kernels.hpp"
#include "caffe/ssn/layer_util.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void SpixelFeature2Layer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                                            const vector<Blob<Dtype>*>& top) {
  ssn::read_grid(this->layer_param_, &grid_h_, &grid_w_);
}

template <typename Dtype>
void SpixelFeature2Layer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
                                         const vector<Blob<Dtype>*>& top) {
  const std::string name = "SpixelFeature2 '" + this->layer_param_.name() + "'";
  const Blob<Dtype>& pixels = *bottom[0];
  const Blob<Dtype>& assoc = *bottom[1];
  const Blob<Dtype>& cells = *bottom[2];
  CHECK(pixels.num_axes() == 4 && assoc.num_axes() == 4 && cells.num_axes() == 4)
      << name << ": inputs must be 4-D";
  CHECK(assoc.num() == pixels.num() && cells.num() == pixels.num())
      << name << ": batch sizes differ";
  CHECK_EQ(assoc.channels(), ssn::kNumNeighbours)
      << name << ": associations must have 9 channels";
  CHECK_EQ(cells.channels(), 1) << name << ": the cell map must have 1 channel";
  CHECK(assoc.height() == pixels.height() && assoc.width() == pixels.width() &&
        cells.height() == pixels.height() && cells.width() == pixels.width())
      << name << ": features, associations and cell map differ in size";
  top[0]->Reshape(pixels.num(), pixels.channels(), 1, grid_h_ * grid_w_);
  weights_.Reshape(pixels.num(), 1, 1, grid_h_ * grid_w_);
}

// Sums of Q and Q*F per superpixel are scatters that rows share: each thread
// sums into its own buffer laid out as [U (N x C x K) | W (N x K)].
template <typename Dtype>
void SpixelFeature2Layer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
                                             const vector<Blob<Dtype>*>& top) {
  const std::string where = "SpixelFeature2 '" + this->layer_param_.name() +
                            "' cell map";
  const int num = bottom[0]->num(), channels = bottom[0]->channels();
  const int height = bottom[0]->height(), width = bottom[0]->width();
  const int spatial = height * width, num_spixels = grid_h_ * grid_w_;
  const int sums_size = top[0]->count() + weights_.count();
  std::vector<Dtype> sums(sums_size, Dtype(0));
  // Blob pointers outside the parallel rows: a blob's first access allocates it.
  const Dtype* pixels_all = bottom[0]->cpu_data();
  const Dtype* assoc_all = bottom[1]->cpu_data();
  const Dtype* cells_all = bottom[2]->cpu_data();
  ssn::parallel_rows_sum(num * height, sums_size, sums.data(),
                         [&](int image_row, Dtype* thread_sums) {
    const int n = image_row / height, y = image_row % height;
    const Dtype* pixels = pixels_all + bottom[0]->offset(n) + y * width;
    const Dtype* assoc = assoc_all + bottom[1]->offset(n) + y * width;
    const Dtype* cells = cells_all + bottom[2]->offset(n) + y * width;
    Dtype* centroids = thread_sums + top[0]->offset(n);
    Dtype* weights = thread_sums + top[0]->count() + n * num_spixels;
    ssn::for_each_cell_run(cells, width, num_spixels, where, n, y,
        [&](int begin, int end, int cell) {
      const ssn::CellNeighbours neighbours(cell, grid_h_, grid_w_);
      ssn::spixel_feature2_forward_run(pixels, assoc, neighbours.index, channels,
                                       spatial, num_spixels, begin, end,
                                       centroids, weights);
    });
  });
  caffe_copy(top[0]->count(), sums.data(), top[0]->mutable_cpu_data());
  caffe_copy(weights_.count(), sums.data() + top[0]->count(),
             weights_.mutable_cpu_data());
  for (int n = 0; n < num; ++n) {
    Dtype* centroids = top[0]->mutable_cpu_data() + top[0]->offset(n);
    const Dtype* weights = weights_.cpu_data() + weights_.offset(n);
    for (int j = 0; j < num_spixels; ++j) {
      const Dtype inverse = ssn::spixel_is_alive(weights[j]) ? 1 / weights[j] : 0;
      for (int k = 0; k < channels; ++k) centroids[k * num_spixels + j] *= inverse;
    }
  }
}

// Every pixel's gradient depends only on its own row: rows run in parallel.
template <typename Dtype>
void SpixelFeature2Layer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
                                              const vector<bool>& propagate_down,
                                              const vector<Blob<Dtype>*>& bottom) {
  CHECK(!propagate_down[2]) << "SpixelFeature2 '" << this->layer_param_.name()
                            << "': cannot backpropagate to the cell map";
  if (!propagate_down[0] && !propagate_down[1]) return;
  const std::string where = "SpixelFeature2 '" + this->layer_param_.name() +
                            "' cell map";
  const int num = bottom[0]->num(), channels = bottom[0]->channels();
  const int height = bottom[0]->height(), width = bottom[0]->width();
  const int spatial = height * width, num_spixels = grid_h_ * grid_w_;
  caffe_set(bottom[0]->count(), Dtype(0), bottom[0]->mutable_cpu_diff());
  caffe_set(bottom[1]->count(), Dtype(0), bottom[1]->mutable_cpu_diff());
  // G[k,j] / W[j] for live superpixels, 0 for dead ones.
  std::vector<Dtype> scaled_grad(top[0]->count());
  std::vector<unsigned char> alive(weights_.count());
  for (int i = 0; i < weights_.count(); ++i) {
    alive[i] = ssn::spixel_is_alive(weights_.cpu_data()[i]);
  }
  for (int n = 0; n < num; ++n) {
    const Dtype* top_diff = top[0]->cpu_diff() + top[0]->offset(n);
    const Dtype* weights = weights_.cpu_data() + weights_.offset(n);
    Dtype* scaled = &scaled_grad[top[0]->offset(n)];
    for (int k = 0; k < channels; ++k) {
      for (int j = 0; j < num_spixels; ++j) {
        scaled[k * num_spixels + j] = ssn::spixel_is_alive(weights[j])
            ? top_diff[k * num_spixels + j] / weights[j] : 0;
      }
    }
  }
  const Dtype* pixels_all = bottom[0]->cpu_data();  // outside the rows, as in Forward
  const Dtype* assoc_all = bottom[1]->cpu_data();
  const Dtype* cells_all = bottom[2]->cpu_data();
  const Dtype* centroids_all = top[0]->cpu_data();
  Dtype* pixel_diff_all = bottom[0]->mutable_cpu_diff();
  Dtype* assoc_diff_all = bottom[1]->mutable_cpu_diff();
  ssn::parallel_rows(num * height, [&](int image_row) {
    const int n = image_row / height, y = image_row % height;
    const int row = y * width;
    const Dtype* pixels = pixels_all + bottom[0]->offset(n) + row;
    const Dtype* assoc = assoc_all + bottom[1]->offset(n) + row;
    const Dtype* cells = cells_all + bottom[2]->offset(n) + row;
    const Dtype* centroids = centroids_all + top[0]->offset(n);
    const Dtype* scaled = &scaled_grad[top[0]->offset(n)];
    Dtype* pixel_diff = pixel_diff_all + bottom[0]->offset(n) + row;
    Dtype* assoc_diff = assoc_diff_all + bottom[1]->offset(n) + row;
    ssn::for_each_cell_run(cells, width, num_spixels, where, n, y,
        [&](int begin, int end, int cell) {
      const ssn::CellNeighbours neighbours(cell, grid_h_, grid_w_);
      ssn::spixel_feature2_backward_run(pixels, assoc, centroids, scaled,
                                        &alive[n * num_spixels],
                                        neighbours.index, channels, spatial,
                                        num_spixels, begin, end, pixel_diff,
                                        assoc_diff);
    });
  });
}

#ifdef CPU_ONLY
STUB_GPU(SpixelFeature2Layer);
#endif

INSTANTIATE_CLASS(SpixelFeature2Layer);
REGISTER_LAYER_CLASS(SpixelFeature2);

}  // namespace caffe
