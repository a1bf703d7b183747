// CUDA forward and backward of PixelFeature (see pixel_feature_layer.hpp).
#include <vector>

#include "caffe/layers/pixel_feature_layer.hpp"
#include "caffe/ssn/ssn_gpu_util.cuh"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// One thread per top element (n, k, p) of an N x out_channels x H x W top:
// the two position channels start at position_channel (-1: none), the
// colour channels at colour_channel (-1: none).
template <typename Dtype>
__global__ void PixelFeatureForward(const int count, const Dtype* image,
    const int channels, const int height, const int width,
    const int out_channels, const int position_channel,
    const int colour_channel, const Dtype pos_scale, const float offset_h,
    const float offset_w, const Dtype colour_scale, Dtype* top) {
  CUDA_KERNEL_LOOP(index, count) {
    const int spatial = height * width;
    const int p = index % spatial;
    const int k = (index / spatial) % out_channels;
    const int n = index / spatial / out_channels;
    if (position_channel >= 0 && k == position_channel) {
      top[index] = pos_scale * (p / width) + offset_h;
    } else if (position_channel >= 0 && k == position_channel + 1) {
      top[index] = pos_scale * (p % width) + offset_w;
    } else {
      const int c = k - colour_channel;
      top[index] = colour_scale * image[(n * channels + c) * spatial + p];
    }
  }
}

// One thread per bottom element: dI[n, c, p] = cs * dtop[n, colour + c, p].
template <typename Dtype>
__global__ void PixelFeatureBackward(const int count, const Dtype* top_diff,
    const int channels, const int spatial, const int out_channels,
    const int colour_channel, const Dtype colour_scale, Dtype* bottom_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int p = index % spatial;
    const int c = (index / spatial) % channels;
    const int n = index / spatial / channels;
    bottom_diff[index] = colour_scale *
        top_diff[(n * out_channels + colour_channel + c) * spatial + p];
  }
}

template <typename Dtype>
void PixelFeatureLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
                                           const vector<Blob<Dtype>*>& top) {
  const PixelFeatureParameter& param =
      this->layer_param_.pixel_feature_param();
  const int count = top[0]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  PixelFeatureForward<Dtype><<<ssn::gpu_blocks(count),
                               CAFFE_CUDA_NUM_THREADS>>>(
      count, bottom[0]->gpu_data(), bottom[0]->channels(),
      bottom[0]->height(), bottom[0]->width(), top[0]->channels(),
      has_position_ ? position_channel_ : -1,
      has_colour_ ? colour_channel_ : -1, Dtype(param.pos_scale()),
      param.offset_h(), param.offset_w(), Dtype(param.color_scale()),
      top[0]->mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
}

template <typename Dtype>
void PixelFeatureLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0]) return;
  Dtype* bottom_diff = bottom[0]->mutable_gpu_diff();
  if (!has_colour_) {
    caffe_gpu_set(bottom[0]->count(), Dtype(0), bottom_diff);
    return;
  }
  const int count = bottom[0]->count();
  const Dtype colour_scale =
      this->layer_param_.pixel_feature_param().color_scale();
  // NOLINT_NEXT_LINE(whitespace/operators)
  PixelFeatureBackward<Dtype><<<ssn::gpu_blocks(count),
                                CAFFE_CUDA_NUM_THREADS>>>(
      count, top[0]->gpu_diff(), bottom[0]->channels(), bottom[0]->count(2),
      top[0]->channels(), colour_channel_, colour_scale, bottom_diff);
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(PixelFeatureLayer);

}  // namespace caffe
