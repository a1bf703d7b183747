#ifndef CAFFE_SPIXEL_FEATURE_LAYER_HPP_
#define CAFFE_SPIXEL_FEATURE_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Mean pixel feature of each superpixel under a hard index map
 *        ("SpixelFeature").
 *
 * bottom[0]: features F, N x C x H x W. bottom[1]: index map, N x 1 x H x W
 * (float ids in [0, M), or ignore_idx_value). top[0]: N x C' x 1 x M with
 * M = max_spixels; optional top[1]: N x C' x H x W, each pixel's superpixel
 * mean (ignore_feature_value for ignored pixels).
 *
 * Every output channel k is the mean over P_j = {p : id(p) = j} of
 * scale_k * source_k(p), where source_k is a channel of F, the pixel row y or
 * the pixel column x; the type picks the list:
 *   AVGXY [xy*y, xy*x]; AVGRGBXY [rgbxy_rgb*F, rgbxy_xy*y, rgbxy_xy*x];
 *   AVGXYRGBXY [xy*y, xy*x, rgbxy_rgb*F, rgbxy_xy*y, rgbxy_xy*x];
 *   AVGRGB [rgb*F]; AVGRGBXYRGBXY [rgb*F, xy*y, xy*x, rgbxy_rgb*F,
 *   rgbxy_xy*y, rgbxy_xy*x].
 * An empty superpixel gets ignore_feature_value in every channel.
 * Backward (exact): dL/dF[c,p] = sum over channels k reading F[c] of
 * scale_k * G[k, id(p)] / |P_id(p)|, where G adds top[0]'s diff and the sum
 * of top[1]'s diff over the superpixel. No gradient to the index map.
 */
template <typename Dtype>
class SpixelFeatureLayer : public Layer<Dtype> {
 public:
  explicit SpixelFeatureLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                          const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
                       const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "SpixelFeature"; }
  virtual inline int ExactNumBottomBlobs() const { return 2; }
  virtual inline int MinTopBlobs() const { return 1; }
  virtual inline int MaxTopBlobs() const { return 2; }
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

  // Source of an output channel: a feature channel (>= 0), kRow or kColumn.
  enum { kRow = -1, kColumn = -2 };
  void AddSources(int source_begin, int source_count, float scale);
  void AddPosition(float scale);
  // Reads bottom[1] into ids_ (checked) and counts the pixels per superpixel.
  void ReadIndexMap(const Blob<Dtype>& index_map);

  int num_spixels_;
  std::vector<int> sources_;
  std::vector<Dtype> scales_;
  std::vector<int> ids_;     // N*H*W ids, -1 for ignored pixels
  Blob<Dtype> counts_;       // N x 1 x 1 x M pixel counts
  // GPU path (counts_ is shared with the CPU path).
  Blob<int> gpu_ids_;        // N x 1 x H x W ids, -1 for ignored pixels
  Blob<int> gpu_slots_;      // per output channel: the sum it reads
  Blob<Dtype> gpu_scales_;   // scales_ on the device
  Blob<Dtype> sums_;         // N x (2 [+ C]) x 1 x M: y, x [, F] sums
  Blob<Dtype> mean_diff_;    // N x C' x 1 x M backward scratch
  Blob<int> bad_index_;  // GPU: raised by a kernel that met a bad index
};

}  // namespace caffe

#endif  // CAFFE_SPIXEL_FEATURE_LAYER_HPP_
