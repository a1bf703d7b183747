#include <vector>

#include "caffe/layers/pixel_feature_layer.hpp"
#include "caffe/ssn/layer_util.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void PixelFeatureLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                                          const vector<Blob<Dtype>*>& top) {
  const PixelFeatureParameter& param = this->layer_param_.pixel_feature_param();
  switch (param.type()) {
    case PixelFeatureParameter_Feature_POSITION:
      has_position_ = true, has_colour_ = false;
      position_channel_ = 0, colour_channel_ = -1;
      break;
    case PixelFeatureParameter_Feature_POSITION_AND_RGB:
      has_position_ = true, has_colour_ = true;
      position_channel_ = 0, colour_channel_ = 2;
      break;
    case PixelFeatureParameter_Feature_RGB_AND_POSITION:
      has_position_ = true, has_colour_ = true;
      position_channel_ = -1, colour_channel_ = 0;  // position follows colour
      break;
    case PixelFeatureParameter_Feature_RGB:
      has_position_ = false, has_colour_ = true;
      position_channel_ = -1, colour_channel_ = 0;
      break;
    default:
      LOG(FATAL) << "PixelFeature layer '" << this->layer_param_.name()
                 << "': feature type "
                 << PixelFeatureParameter_Feature_Name(param.type())
                 << " is not supported (use POSITION, POSITION_AND_RGB, "
                    "RGB_AND_POSITION or RGB)";
  }
}

template <typename Dtype>
void PixelFeatureLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
                                       const vector<Blob<Dtype>*>& top) {
  CHECK_EQ(bottom[0]->num_axes(), 4) << "PixelFeature needs an N x C x H x W image";
  const int colour = has_colour_ ? bottom[0]->channels() : 0;
  if (this->layer_param_.pixel_feature_param().type() ==
      PixelFeatureParameter_Feature_RGB_AND_POSITION) {
    position_channel_ = colour;
  }
  top[0]->Reshape(bottom[0]->num(), colour + (has_position_ ? 2 : 0),
                  bottom[0]->height(), bottom[0]->width());
}

template <typename Dtype>
void PixelFeatureLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
                                           const vector<Blob<Dtype>*>& top) {
  const PixelFeatureParameter& param = this->layer_param_.pixel_feature_param();
  const int num = bottom[0]->num(), channels = bottom[0]->channels();
  const int height = bottom[0]->height(), width = bottom[0]->width();
  const int spatial = height * width;
  const Dtype pos_scale = param.pos_scale(), colour_scale = param.color_scale();
  const Dtype offset_h = param.offset_h(), offset_w = param.offset_w();
  // Every blob pointer before the parallel loops: a blob's first access allocates it.
  Dtype* out = top[0]->mutable_cpu_data();
  const Dtype* in = bottom[0]->cpu_data();
  const int out_channels = top[0]->channels();
  for (int n = 0; n < num; ++n) {
    Dtype* image = out + static_cast<size_t>(n) * out_channels * spatial;
    if (has_position_) {
      Dtype* rows = image + static_cast<size_t>(position_channel_) * spatial;
      Dtype* cols = rows + spatial;
      ssn::parallel_rows(height, [&](int y) {
        for (int x = 0; x < width; ++x) {
          rows[y * width + x] = pos_scale * y + offset_h;
          cols[y * width + x] = pos_scale * x + offset_w;
        }
      });
    }
    if (has_colour_) {
      const Dtype* colour = in + static_cast<size_t>(n) * channels * spatial;
      Dtype* scaled = image + static_cast<size_t>(colour_channel_) * spatial;
      ssn::parallel_rows(channels * height, [&](int row) {
        const size_t first = static_cast<size_t>(row) * width;
        for (int x = 0; x < width; ++x) scaled[first + x] = colour_scale * colour[first + x];
      });
    }
  }
}

template <typename Dtype>
void PixelFeatureLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
                                            const vector<bool>& propagate_down,
                                            const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0]) return;
  Dtype* bottom_diff = bottom[0]->mutable_cpu_diff();
  if (!has_colour_) {
    caffe_set(bottom[0]->count(), Dtype(0), bottom_diff);
    return;
  }
  const int block = bottom[0]->count(1);
  const Dtype colour_scale = this->layer_param_.pixel_feature_param().color_scale();
  for (int n = 0; n < bottom[0]->num(); ++n) {
    caffe_cpu_scale(block, colour_scale,
                    top[0]->cpu_diff() + top[0]->offset(n, colour_channel_),
                    bottom_diff + bottom[0]->offset(n));
  }
}

#ifdef CPU_ONLY
STUB_GPU(PixelFeatureLayer);
#endif

INSTANTIATE_CLASS(PixelFeatureLayer);
REGISTER_LAYER_CLASS(PixelFeature);

}  // namespace caffe
