#ifndef CAFFE_SPIXEL_TO_PIXEL_LAYER_HPP_
#define CAFFE_SPIXEL_TO_PIXEL_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Each pixel's association-weighted mix of its 9 candidate
 *        superpixels' values ("SpixelToPixel"); the transpose of
 *        SpixelFeature2's weighted sums.
 *
 * bottom[0]: superpixel values S, N x C x 1 x K (K = K_h*K_w).
 * bottom[1]: associations Q, N x 9 x H x W (channel i is neighbour i of the
 * pixel's initial cell, as in Passoc). bottom[2]: initial cell map,
 * N x 1 x H x W. top[0]: N x C x H x W with
 *   top[k, p] = sum_{i valid} Q[i, p] S[k, nb(p, i)],
 * where a neighbour outside the K_h x K_w grid contributes 0. It replaces the
 * label loss's chain Reshape, 3x3 gather convolution, Smear, Tile, Eltwise
 * PROD and 1x1 sum convolution with the same result and no 9C-channel
 * intermediates.
 * Params: spixel_feature2_param {num_spixels_h, num_spixels_w}.
 * Backward (exact), for valid j = nb(p, i):
 *   dL/dQ[i, p] = sum_k G[k, p] S[k, j]  (0 for invalid i),
 *   dL/dS[k, j] = sum_{(p,i): nb(p,i) = j} G[k, p] Q[i, p].
 * No gradient to the cell map.
 */
template <typename Dtype>
class SpixelToPixelLayer : public Layer<Dtype> {
 public:
  explicit SpixelToPixelLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                          const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
                       const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "SpixelToPixel"; }
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
  Blob<Dtype> weights_;  // GPU backward: the association sums W it discards
  Blob<int> bad_index_;  // GPU: raised by a kernel that met a bad index
};

}  // namespace caffe

#endif  // CAFFE_SPIXEL_TO_PIXEL_LAYER_HPP_
