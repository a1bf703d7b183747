#ifndef CAFFE_SMEAR_LAYER_HPP_
#define CAFFE_SMEAR_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Copies each superpixel's features to its pixels ("Smear").
 *
 * bottom[0]: superpixel data V, N x C x h0 x w0 (ids index the flattened
 * h0*w0 positions; SSN uses 1 x K). bottom[1]: index map, N x 1 x H x W.
 * top[0]: N x C x H x W with
 *   top[c, p] = V[c, id(p)]               (id(p) in [0, h0*w0))
 *             = ignore_feature_value      if id(p) == ignore_idx_value.
 * Backward (exact): dL/dV[c, j] = sum_{p: id(p) = j} dL/dtop[c, p].
 * No gradient to the index map.
 */
template <typename Dtype>
class SmearLayer : public Layer<Dtype> {
 public:
  explicit SmearLayer(const LayerParameter& param) : Layer<Dtype>(param) {}
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
                       const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "Smear"; }
  virtual inline int ExactNumBottomBlobs() const { return 2; }
  virtual inline int ExactNumTopBlobs() const { return 1; }
  // Bottom 1 is an index map: force_backward must not reach it.
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    return bottom_index != 1;
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

  // Reads bottom[1] into ids_ (checked), -1 for ignored pixels.
  void ReadIndexMap(const Blob<Dtype>& index_map, int num_ids);

  std::vector<int> ids_;
  // GPU path: the ids on the device (-1 for ignored pixels).
  Blob<int> gpu_ids_;
  Blob<int> bad_index_;  // GPU: raised by a kernel that met a bad index
};

}  // namespace caffe

#endif  // CAFFE_SMEAR_LAYER_HPP_
