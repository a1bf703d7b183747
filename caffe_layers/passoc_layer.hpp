#ifndef CAFFE_PASSOC_LAYER_HPP_
#define CAFFE_PASSOC_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Scaled squared distances from each pixel to the 9 superpixels around
 *        its initial grid cell ("Passoc").
 *
 * bottom[0]: pixel features F, N x C x H x W. bottom[1]: superpixel features
 * S, N x C x 1 x K with K = K_h * K_w. bottom[2]: initial cell map init,
 * N x 1 x H x W (ids in [0, K)). top[0]: D, N x 9 x H x W with
 *   D[c, p] = sigma * sum_k (F[k, p] - S[k, nb(p, c)])^2   if nb(p, c) exists
 *           = sigma * invalid_distance                     otherwise,
 * where nb(p, c) is neighbour c (offset (c/3 - 1, c%3 - 1)) of init(p) in the
 * K_h x K_w grid and sigma = scale_value (default 1; SSN uses -1).
 * Params: spixel_feature2_param {num_spixels_h, num_spixels_w, scale_value,
 * invalid_distance}.
 * Backward (exact): dL/dF[k,p] = sum_valid c G[c,p] 2 sigma (F[k,p] - S[k,j]),
 * dL/dS[k,j] = sum_{(p,c): nb(p,c)=j} G[c,p] 2 sigma (S[k,j] - F[k,p]).
 * No gradient to the cell map.
 */
template <typename Dtype>
class PassocLayer : public Layer<Dtype> {
 public:
  explicit PassocLayer(const LayerParameter& param) : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                          const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
                       const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "Passoc"; }
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
  Dtype scale_, invalid_distance_;
  Blob<int> bad_index_;  // GPU: raised by a kernel that met a bad index
};

}  // namespace caffe

#endif  // CAFFE_PASSOC_LAYER_HPP_
