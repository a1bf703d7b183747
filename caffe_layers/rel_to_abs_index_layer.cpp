#include <string>
#include <vector>

#include "caffe/layers/rel_to_abs_index_layer.hpp"
#include "caffe/ssn/layer_util.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void RelToAbsIndexLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                                           const vector<Blob<Dtype>*>& top) {
  const RelToAbsIndexParameter& param = this->layer_param_.rel_to_abs_index_param();
  grid_h_ = param.num_spixels_h();
  grid_w_ = param.num_spixels_w();
  CHECK(grid_h_ >= 1 && grid_w_ >= 1)
      << "RelToAbsIndex '" << this->layer_param_.name()
      << "': the superpixel grid must be at least 1x1";
}

template <typename Dtype>
void RelToAbsIndexLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
                                        const vector<Blob<Dtype>*>& top) {
  const std::string name = "RelToAbsIndex '" + this->layer_param_.name() + "'";
  CHECK(bottom[0]->num_axes() == 4 && bottom[1]->num_axes() == 4)
      << name << ": inputs must be N x 1 x H x W";
  CHECK(bottom[0]->channels() == 1 && bottom[1]->channels() == 1)
      << name << ": both inputs must have 1 channel";
  CHECK(bottom[0]->shape() == bottom[1]->shape())
      << name << ": relative label and cell map differ in shape";
  top[0]->ReshapeLike(*bottom[0]);
}

template <typename Dtype>
void RelToAbsIndexLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
                                            const vector<Blob<Dtype>*>& top) {
  const std::string name = "RelToAbsIndex '" + this->layer_param_.name() + "'";
  const std::string relative_where = name + " relative label";
  const std::string cells_where = name + " cell map";
  const int spatial = bottom[0]->count(2), width = bottom[0]->width();
  const Dtype* relative = bottom[0]->cpu_data();
  const Dtype* cells = bottom[1]->cpu_data();
  Dtype* absolute = top[0]->mutable_cpu_data();
  ssn::parallel_rows(bottom[0]->count() / width, [&](int image_row) {
    for (int i = image_row * width; i < (image_row + 1) * width; ++i) {
      const int n = i / spatial, p = i % spatial;
      const int c = ssn::checked_index(relative[i], ssn::kNumNeighbours,
                                       relative_where, n, p, width);
      const int cell = ssn::checked_index(cells[i], grid_h_ * grid_w_,
                                          cells_where, n, p, width);
      absolute[i] = ssn::neighbour_index_clamped(cell, c, grid_h_, grid_w_);
    }
  });
}

template <typename Dtype>
void RelToAbsIndexLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
                                             const vector<bool>& propagate_down,
                                             const vector<Blob<Dtype>*>& bottom) {
  for (int i = 0; i < 2; ++i) {
    if (propagate_down[i]) {
      caffe_set(bottom[i]->count(), Dtype(0), bottom[i]->mutable_cpu_diff());
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(RelToAbsIndexLayer);
#endif

INSTANTIATE_CLASS(RelToAbsIndexLayer);
REGISTER_LAYER_CLASS(RelToAbsIndex);

}  // namespace caffe
