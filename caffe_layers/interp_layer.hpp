#ifndef CAFFE_INTERP_LAYER_HPP_
#define CAFFE_INTERP_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Align-corners bilinear resize ("Interp", from DeepLab).
 *
 * bottom[0]: X, N x C x H x W. top[0]: Y, N x C x H' x W'. The input window
 * is X cropped by -pad_beg at the start and -pad_end at the end (pads must be
 * <= 0), of size H_e x W_e. The output size is, by the first rule that fits:
 * shrink_factor only: (H_e - 1) / s + 1; zoom_factor only: (H_e - 1) * z + 1;
 * height and width: as given; both factors: shrink, then zoom.
 *   Y[h, w] = sum over the 2 x 2 taps of (1 - a) or a times (1 - b) or b
 *             times X at rows h*(H_e-1)/(H'-1), columns w*(W_e-1)/(W'-1).
 * Backward: the exact adjoint (each output's diff split among its taps).
 *
 * Optional bottom[1]: a reference R whose height H_r and width W_r (at most
 * H' and W') are the output's size. The samples stay those of the H' x W'
 * grid above, so Y is its first H_r rows and W_r columns: the same bits as
 * this layer followed by Crop (offset 0) to R, without the uncropped blob.
 * R's values are not read and get no gradient (a zero diff if asked).
 */
template <typename Dtype>
class InterpLayer : public Layer<Dtype> {
 public:
  explicit InterpLayer(const LayerParameter& param) : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                          const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
                       const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "Interp"; }
  virtual inline int MinBottomBlobs() const { return 1; }
  virtual inline int MaxBottomBlobs() const { return 2; }
  virtual inline int ExactNumTopBlobs() const { return 1; }
  // Only the reference's shape is used.
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    return bottom_index == 0;
  }

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

  int OutputSize(int effective_size, int given_size) const;

  int pad_beg_, pad_end_;
  int height_in_eff_, width_in_eff_;
  // The sampling grid, H' x W'; the output is its top-left corner.
  int height_grid_, width_grid_;
};

}  // namespace caffe

#endif  // CAFFE_INTERP_LAYER_HPP_
