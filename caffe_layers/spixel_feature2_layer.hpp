#ifndef CAFFE_SPIXEL_FEATURE2_LAYER_HPP_
#define CAFFE_SPIXEL_FEATURE2_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Soft superpixel centroids: association-weighted means of the pixel
 *        features over each superpixel's candidate pixels ("SpixelFeature2").
 *
 * bottom[0]: pixel features F, N x C x H x W. bottom[1]: associations Q,
 * N x 9 x H x W (channel c is neighbour c of the pixel's initial cell, as in
 * Passoc). bottom[2]: initial cell map, N x 1 x H x W. top[0]: S, N x C x 1 x K.
 *   W[j]   = sum_{(p,c): nb(p,c) = j} Q[c,p]
 *   S[k,j] = sum_{(p,c): nb(p,c) = j} Q[c,p] F[k,p] / W[j]   if W[j] >= 0.001
 *          = 0                                               otherwise.
 * Pairs whose neighbour lies outside the K_h x K_w grid are skipped.
 * Params: spixel_feature2_param {num_spixels_h, num_spixels_w}.
 * Backward (exact), for live j = nb(p,c): dL/dF[k,p] += G[k,j] Q[c,p] / W[j],
 * dL/dQ[c,p] = sum_k G[k,j] (F[k,p] - S[k,j]) / W[j]; zero otherwise.
 */
template <typename Dtype>
class SpixelFeature2Layer : public Layer<Dtype> {
 public:
  explicit SpixelFeature2Layer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                          const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
                       const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "SpixelFeature2"; }
  virtual inline int ExactNumBottomBlobs() const { return 3; }
  virtual inline int ExactNumTopBlobs() const { return 1; }
  // Bottom 2 is an index map: force_backward must not reach it.
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    return bottom_index != 2;
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

  int grid_h_, grid_w_;
  Blob<Dtype> weights_;  // N x 1 x 1 x K total association W per superpixel
  Blob<int> bad_index_;  // GPU: raised by a kernel that met a bad index
};

}  // namespace caffe

#endif  // CAFFE_SPIXEL_FEATURE2_LAYER_HPP_
