#ifndef CAFFE_REL_TO_ABS_INDEX_LAYER_HPP_
#define CAFFE_REL_TO_ABS_INDEX_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Turns a neighbour channel (0..8) into a superpixel id
 *        ("RelToAbsIndex").
 *
 * bottom[0]: relative label R, N x 1 x H x W (the ArgMax over the 9
 * association channels). bottom[1]: initial cell map, N x 1 x H x W.
 * top[0]: N x 1 x H x W with top[p] = nb(init(p), R(p)) in the K_h x K_w grid
 * of rel_to_abs_index_param. A neighbour outside the grid is clamped per axis
 * to the cell's own row or column (the original's rule).
 * Backward: the map is piecewise constant, so the bottom diffs are zero.
 */
template <typename Dtype>
class RelToAbsIndexLayer : public Layer<Dtype> {
 public:
  explicit RelToAbsIndexLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                          const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
                       const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "RelToAbsIndex"; }
  virtual inline int ExactNumBottomBlobs() const { return 2; }
  virtual inline int ExactNumTopBlobs() const { return 1; }
  // Both bottoms are index maps.
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    return false;
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
  Blob<int> bad_index_;  // GPU: raised by a kernel that met a bad index
};

}  // namespace caffe

#endif  // CAFFE_REL_TO_ABS_INDEX_LAYER_HPP_
