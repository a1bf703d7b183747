#ifndef CAFFE_PIXEL_FEATURE_LAYER_HPP_
#define CAFFE_PIXEL_FEATURE_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Per-pixel position and colour features ("PixelFeature").
 *
 * bottom[0]: image I, N x C x H x W. top[0]: N x C' x H x W with, for
 * ps = pos_scale, cs = color_scale and integer pixel row y and column x,
 *   POSITION (C' = 2):             [ps*y + offset_h, ps*x + offset_w]
 *   POSITION_AND_RGB (C' = 2 + C): [ps*y + offset_h, ps*x + offset_w, cs*I]
 *   RGB_AND_POSITION (C' = C + 2): [cs*I, ps*y + offset_h, ps*x + offset_w]
 *   RGB (C' = C):                  [cs*I]
 * The random and warped modes of the original are rejected at setup.
 * Backward: dL/dI = cs * dL/d(colour channels) (positions are constants).
 */
template <typename Dtype>
class PixelFeatureLayer : public Layer<Dtype> {
 public:
  explicit PixelFeatureLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                          const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
                       const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "PixelFeature"; }
  virtual inline int ExactNumBottomBlobs() const { return 1; }
  virtual inline int ExactNumTopBlobs() const { return 1; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
                           const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
                            const vector<bool>& propagate_down,
                            const vector<Blob<Dtype>*>& bottom);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
                           const vector<Blob<Dtype>*>& top);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
                            const vector<bool>& propagate_down,
                            const vector<Blob<Dtype>*>& bottom);

  bool has_position_, has_colour_;
  int position_channel_;  // first of the two position channels
  int colour_channel_;    // first colour channel
};

}  // namespace caffe

#endif  // CAFFE_PIXEL_FEATURE_LAYER_HPP_
