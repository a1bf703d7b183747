#include <string>
#include <vector>

#include "caffe/layers/interp_layer.hpp"
#include "caffe/ssn/layer_util.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void InterpLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                                    const vector<Blob<Dtype>*>& top) {
  const InterpParameter& param = this->layer_param_.interp_param();
  const std::string name = "Interp '" + this->layer_param_.name() + "'";
  pad_beg_ = param.pad_beg();
  pad_end_ = param.pad_end();
  CHECK(pad_beg_ <= 0 && pad_end_ <= 0) << name << ": pad_beg and pad_end must be <= 0";
  CHECK(param.zoom_factor() >= 1 && param.shrink_factor() >= 1)
      << name << ": zoom_factor and shrink_factor must be >= 1";
  const bool factors = param.has_zoom_factor() || param.has_shrink_factor();
  CHECK(factors || (param.has_height() && param.has_width()))
      << name << ": set zoom_factor, shrink_factor, or both height and width";
}

template <typename Dtype>
int InterpLayer<Dtype>::OutputSize(int effective_size, int given_size) const {
  const InterpParameter& param = this->layer_param_.interp_param();
  const bool shrink = param.has_shrink_factor(), zoom = param.has_zoom_factor();
  if (shrink && !zoom) {
    return ssn::interp_shrunk_size(effective_size, param.shrink_factor());
  }
  if (zoom && !shrink) {
    return ssn::interp_zoomed_size(effective_size, param.zoom_factor());
  }
  if (param.has_height() && param.has_width()) return given_size;
  return ssn::interp_zoomed_size(
      ssn::interp_shrunk_size(effective_size, param.shrink_factor()),
      param.zoom_factor());
}

template <typename Dtype>
void InterpLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
                                 const vector<Blob<Dtype>*>& top) {
  const InterpParameter& param = this->layer_param_.interp_param();
  const std::string name = "Interp '" + this->layer_param_.name() + "'";
  CHECK_EQ(bottom[0]->num_axes(), 4) << name << ": input must be N x C x H x W";
  height_in_eff_ = bottom[0]->height() + pad_beg_ + pad_end_;
  width_in_eff_ = bottom[0]->width() + pad_beg_ + pad_end_;
  CHECK(height_in_eff_ > 0 && width_in_eff_ > 0)
      << name << ": the pads crop away the whole input";
  height_grid_ = OutputSize(height_in_eff_, param.height());
  width_grid_ = OutputSize(width_in_eff_, param.width());
  CHECK(height_grid_ > 0 && width_grid_ > 0)
      << name << ": output size must be positive";
  int height_out = height_grid_, width_out = width_grid_;
  if (bottom.size() > 1) {
    CHECK_EQ(bottom[1]->num_axes(), 4)
        << name << ": the reference (bottom 1) must be N x C x H x W";
    height_out = bottom[1]->height();
    width_out = bottom[1]->width();
    CHECK(height_out <= height_grid_ && width_out <= width_grid_)
        << name << ": the reference's size " << height_out << " x "
        << width_out << " exceeds the interpolated size " << height_grid_
        << " x " << width_grid_ << " (it can only crop)";
  }
  top[0]->Reshape(bottom[0]->num(), bottom[0]->channels(), height_out,
                  width_out);
}

template <typename Dtype>
void InterpLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
                                     const vector<Blob<Dtype>*>& top) {
  const int planes = bottom[0]->count(0, 2);
  const int height_in = bottom[0]->height(), width_in = bottom[0]->width();
  const int height_out = top[0]->height(), width_out = top[0]->width();
  std::vector<ssn::InterpTap> cols(width_out);
  for (int w = 0; w < width_out; ++w) {
    cols[w] = ssn::interp_tap(w, width_in_eff_, width_grid_);
  }
  // Blob pointers outside the parallel loop: a blob's first access allocates it.
  const Dtype* bottom_data = bottom[0]->cpu_data();
  Dtype* top_data = top[0]->mutable_cpu_data();
#pragma omp parallel for schedule(static) if (top[0]->count() >= 65536)
  for (int plane = 0; plane < planes; ++plane) {
    const Dtype* in = bottom_data + plane * height_in * width_in
        - pad_beg_ * width_in - pad_beg_;
    Dtype* out = top_data + plane * height_out * width_out;
    for (int h = 0; h < height_out; ++h) {
      const ssn::InterpTap row = ssn::interp_tap(h, height_in_eff_, height_grid_);
      const Dtype* upper = in + row.i0 * width_in;
      const Dtype* lower = upper + row.step * width_in;
      const Dtype a = row.lambda;
      for (int w = 0; w < width_out; ++w) {
        const ssn::InterpTap& col = cols[w];
        const Dtype b = col.lambda;
        const int x0 = col.i0, x1 = col.i0 + col.step;
        out[h * width_out + w] = (1 - a) * ((1 - b) * upper[x0] + b * upper[x1])
                                 + a * ((1 - b) * lower[x0] + b * lower[x1]);
      }
    }
  }
}

template <typename Dtype>
void InterpLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
                                      const vector<bool>& propagate_down,
                                      const vector<Blob<Dtype>*>& bottom) {
  if (propagate_down.size() > 1 && propagate_down[1]) {
    caffe_set(bottom[1]->count(), Dtype(0), bottom[1]->mutable_cpu_diff());
  }
  if (!propagate_down[0]) return;
  const int planes = bottom[0]->count(0, 2);
  const int height_in = bottom[0]->height(), width_in = bottom[0]->width();
  const int height_out = top[0]->height(), width_out = top[0]->width();
  caffe_set(bottom[0]->count(), Dtype(0), bottom[0]->mutable_cpu_diff());
  std::vector<ssn::InterpTap> cols(width_out);
  for (int w = 0; w < width_out; ++w) {
    cols[w] = ssn::interp_tap(w, width_in_eff_, width_grid_);
  }
  Dtype* bottom_diff = bottom[0]->mutable_cpu_diff();
  const Dtype* top_diff = top[0]->cpu_diff();
#pragma omp parallel for schedule(static) if (top[0]->count() >= 65536)
  for (int plane = 0; plane < planes; ++plane) {
    Dtype* in_diff = bottom_diff + plane * height_in * width_in
        - pad_beg_ * width_in - pad_beg_;
    const Dtype* out_diff = top_diff + plane * height_out * width_out;
    for (int h = 0; h < height_out; ++h) {
      const ssn::InterpTap row = ssn::interp_tap(h, height_in_eff_, height_grid_);
      Dtype* upper = in_diff + row.i0 * width_in;
      Dtype* lower = upper + row.step * width_in;
      const Dtype a = row.lambda;
      for (int w = 0; w < width_out; ++w) {
        const ssn::InterpTap& col = cols[w];
        const Dtype b = col.lambda, g = out_diff[h * width_out + w];
        const int x0 = col.i0, x1 = col.i0 + col.step;
        upper[x0] += (1 - a) * (1 - b) * g;
        upper[x1] += (1 - a) * b * g;
        lower[x0] += a * (1 - b) * g;
        lower[x1] += a * b * g;
      }
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(InterpLayer);
#endif

INSTANTIATE_CLASS(InterpLayer);
REGISTER_LAYER_CLASS(Interp);

}  // namespace caffe
