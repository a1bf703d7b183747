#include <algorithm>
#include <string>
#include <vector>

#include "caffe/layers/passoc_layer.hpp"
#include "caffe/ssn/cpu_kernels.hpp"
#include "caffe/ssn/layer_util.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void PassocLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                                    const vector<Blob<Dtype>*>& top) {
  ssn::read_grid(this->layer_param_, &grid_h_, &grid_w_);
  const SpixelFeatureTwoParameter& param = this->layer_param_.spixel_feature2_param();
  scale_ = param.has_scale_value() ? param.scale_value() : 1;
  invalid_distance_ = param.invalid_distance();
}

template <typename Dtype>
void PassocLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
                                 const vector<Blob<Dtype>*>& top) {
  ssn::check_association_bottoms(bottom, grid_h_, grid_w_,
                                 "Passoc '" + this->layer_param_.name() + "'");
  const Blob<Dtype>& pixels = *bottom[0];
  top[0]->Reshape(pixels.num(), ssn::kNumNeighbours, pixels.height(),
                  pixels.width());
}

// Each image row is independent in the forward pass. Pixels are visited in
// runs of equal initial cell along a row, so the 9 candidate superpixels are
// fixed within a run and the inner loops run over contiguous pixels.
template <typename Dtype>
void PassocLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
                                     const vector<Blob<Dtype>*>& top) {
  const std::string where = "Passoc '" + this->layer_param_.name() + "' cell map";
  const int channels = bottom[0]->channels();
  const int height = bottom[0]->height(), width = bottom[0]->width();
  const int spatial = height * width, num_spixels = grid_h_ * grid_w_;
  const Dtype scale = scale_, invalid = scale_ * invalid_distance_;
  // Blob pointers outside the parallel rows: a blob's first access allocates it.
  const Dtype* pixels_all = bottom[0]->cpu_data();
  const Dtype* spixels_all = bottom[1]->cpu_data();
  const Dtype* cells_all = bottom[2]->cpu_data();
  Dtype* dist_all = top[0]->mutable_cpu_data();
  ssn::parallel_rows(bottom[0]->num() * height, [&](int image_row) {
    const int n = image_row / height, y = image_row % height;
    const Dtype* pixels = pixels_all + bottom[0]->offset(n) + y * width;
    const Dtype* spixels = spixels_all + bottom[1]->offset(n);
    const Dtype* cells = cells_all + bottom[2]->offset(n) + y * width;
    Dtype* dist = dist_all + top[0]->offset(n) + y * width;
    ssn::for_each_cell_run(cells, width, num_spixels, where, n, y,
        [&](int begin, int end, int cell) {
      const ssn::CellNeighbours neighbours(cell, grid_h_, grid_w_);
      ssn::passoc_forward_run(pixels, spixels, neighbours.index, channels,
                              spatial, num_spixels, scale, invalid, begin, end,
                              dist);
    });
  });
}

template <typename Dtype>
void PassocLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
                                      const vector<bool>& propagate_down,
                                      const vector<Blob<Dtype>*>& bottom) {
  CHECK(!propagate_down[2]) << "Passoc '" << this->layer_param_.name()
                            << "': cannot backpropagate to the cell map";
  if (!propagate_down[0] && !propagate_down[1]) return;
  const std::string where = "Passoc '" + this->layer_param_.name() + "' cell map";
  const int num = bottom[0]->num(), channels = bottom[0]->channels();
  const int height = bottom[0]->height(), width = bottom[0]->width();
  const int spatial = height * width, num_spixels = grid_h_ * grid_w_;
  const int spixel_block = channels * num_spixels;
  Dtype* pixel_diff_all = bottom[0]->mutable_cpu_diff();
  caffe_set(bottom[0]->count(), Dtype(0), pixel_diff_all);
  caffe_set(bottom[1]->count(), Dtype(0), bottom[1]->mutable_cpu_diff());
  const Dtype* pixels_all = bottom[0]->cpu_data();  // outside the parallel rows, as above
  const Dtype* spixels_all = bottom[1]->cpu_data();
  const Dtype* cells_all = bottom[2]->cpu_data();
  const Dtype* dist_diff_all = top[0]->cpu_diff();
  // dS is a scatter that rows share: each thread sums into its own buffer.
  ssn::parallel_rows_sum(num * height, num * spixel_block,
                         bottom[1]->mutable_cpu_diff(),
                         [&](int image_row, Dtype* spixel_diff_all) {
    const int n = image_row / height, y = image_row % height;
    const Dtype* pixels = pixels_all + bottom[0]->offset(n) + y * width;
    const Dtype* spixels = spixels_all + bottom[1]->offset(n);
    const Dtype* cells = cells_all + bottom[2]->offset(n) + y * width;
    const Dtype* dist_diff = dist_diff_all + top[0]->offset(n) + y * width;
    Dtype* pixel_diff = pixel_diff_all + bottom[0]->offset(n) + y * width;
    Dtype* spixel_diff = spixel_diff_all + n * spixel_block;
    ssn::for_each_cell_run(cells, width, num_spixels, where, n, y,
        [&](int begin, int end, int cell) {
      const ssn::CellNeighbours neighbours(cell, grid_h_, grid_w_);
      ssn::passoc_backward_run(pixels, spixels, neighbours.index, channels,
                               spatial, num_spixels, Dtype(2) * scale_,
                               dist_diff, begin, end, pixel_diff, spixel_diff);
    });
  });
}

#ifdef CPU_ONLY
STUB_GPU(PassocLayer);
#endif

INSTANTIATE_CLASS(PassocLayer);
REGISTER_LAYER_CLASS(Passoc);

}  // namespace caffe
