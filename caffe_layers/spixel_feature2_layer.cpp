#include <string>
#include <vector>

#include "caffe/layers/spixel_feature2_layer.hpp"
#include "caffe/layers/ssn_layer_util.hpp"
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

template <typename Dtype>
void SpixelFeature2Layer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
                                             const vector<Blob<Dtype>*>& top) {
  const std::string where = "SpixelFeature2 '" + this->layer_param_.name() +
                            "' cell map";
  const int num = bottom[0]->num(), channels = bottom[0]->channels();
  const int height = bottom[0]->height(), width = bottom[0]->width();
  const int spatial = height * width, num_spixels = grid_h_ * grid_w_;
  caffe_set(top[0]->count(), Dtype(0), top[0]->mutable_cpu_data());
  caffe_set(weights_.count(), Dtype(0), weights_.mutable_cpu_data());
  for (int n = 0; n < num; ++n) {
    const Dtype* pixels = bottom[0]->cpu_data() + bottom[0]->offset(n);
    const Dtype* assoc = bottom[1]->cpu_data() + bottom[1]->offset(n);
    const Dtype* cells = bottom[2]->cpu_data() + bottom[2]->offset(n);
    Dtype* centroids = top[0]->mutable_cpu_data() + top[0]->offset(n);
    Dtype* weights = weights_.mutable_cpu_data() + weights_.offset(n);
    for (int y = 0; y < height; ++y) {
      ssn::for_each_cell_run(cells + y * width, width, num_spixels, where, n, y,
          [&](int begin, int end, int cell) {
        const ssn::CellNeighbours neighbours(cell, grid_h_, grid_w_);
        for (int c = 0; c < ssn::kNumNeighbours; ++c) {
          const int j = neighbours.index[c];
          if (j < 0) continue;
          const Dtype* q = assoc + c * spatial + y * width;
          Dtype weight = 0;
          for (int x = begin; x < end; ++x) weight += q[x];
          weights[j] += weight;
          for (int k = 0; k < channels; ++k) {
            const Dtype* f = pixels + k * spatial + y * width;
            Dtype sum = 0;
            for (int x = begin; x < end; ++x) sum += q[x] * f[x];
            centroids[k * num_spixels + j] += sum;
          }
        }
      });
    }
    for (int j = 0; j < num_spixels; ++j) {
      const Dtype inverse = ssn::spixel_is_alive(weights[j]) ? 1 / weights[j] : 0;
      for (int k = 0; k < channels; ++k) centroids[k * num_spixels + j] *= inverse;
    }
  }
}

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
  std::vector<Dtype> scaled_grad(channels * num_spixels);
  for (int n = 0; n < num; ++n) {
    const Dtype* pixels = bottom[0]->cpu_data() + bottom[0]->offset(n);
    const Dtype* assoc = bottom[1]->cpu_data() + bottom[1]->offset(n);
    const Dtype* cells = bottom[2]->cpu_data() + bottom[2]->offset(n);
    const Dtype* centroids = top[0]->cpu_data() + top[0]->offset(n);
    const Dtype* top_diff = top[0]->cpu_diff() + top[0]->offset(n);
    const Dtype* weights = weights_.cpu_data() + weights_.offset(n);
    Dtype* pixel_diff = bottom[0]->mutable_cpu_diff() + bottom[0]->offset(n);
    Dtype* assoc_diff = bottom[1]->mutable_cpu_diff() + bottom[1]->offset(n);
    for (int k = 0; k < channels; ++k) {
      for (int j = 0; j < num_spixels; ++j) {
        scaled_grad[k * num_spixels + j] = ssn::spixel_is_alive(weights[j])
            ? top_diff[k * num_spixels + j] / weights[j] : 0;
      }
    }
    for (int y = 0; y < height; ++y) {
      ssn::for_each_cell_run(cells + y * width, width, num_spixels, where, n, y,
          [&](int begin, int end, int cell) {
        const ssn::CellNeighbours neighbours(cell, grid_h_, grid_w_);
        for (int c = 0; c < ssn::kNumNeighbours; ++c) {
          const int j = neighbours.index[c];
          if (j < 0 || !ssn::spixel_is_alive(weights[j])) continue;
          const Dtype* q = assoc + c * spatial + y * width;
          Dtype* dq = assoc_diff + c * spatial + y * width;
          for (int k = 0; k < channels; ++k) {
            const Dtype* f = pixels + k * spatial + y * width;
            Dtype* df = pixel_diff + k * spatial + y * width;
            const Dtype g = scaled_grad[k * num_spixels + j];
            const Dtype s = centroids[k * num_spixels + j];
            for (int x = begin; x < end; ++x) {
              df[x] += g * q[x];
              dq[x] += g * (f[x] - s);
            }
          }
        }
      });
    }
  }
}

INSTANTIATE_CLASS(SpixelFeature2Layer);
REGISTER_LAYER_CLASS(SpixelFeature2);

}  // namespace caffe
