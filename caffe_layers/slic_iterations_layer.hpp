#ifndef CAFFE_SLIC_ITERATIONS_LAYER_HPP_
#define CAFFE_SLIC_ITERATIONS_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief The SLIC iterations of SSN inference fused into one layer
 *        ("SlicIterations"): forward only, one pass over the image per step.
 *
 * bottom[0]: pixel features F, N x C x H x W. bottom[1]: initial superpixel
 * features S^0, N x C x 1 x K with K = K_h * K_w (SSN: SpixelFeature AVGRGB of
 * the cells). bottom[2]: initial cell map, N x 1 x H x W (ids in [0, K)).
 * With T = num_steps, for t = 1 .. T-1:
 *   Q_t = Softmax over c of Passoc(F, S^(t-1))       (scale, invalid_distance)
 *   S^t = SpixelFeature2(F, Q_t)
 * then Q_T = Softmax(Passoc(F, S^(T-1))) and
 *   top[0][p] = nb_clamped(p, argmax_c Q_T[c, p])  (ties to the highest c),
 * N x 1 x H x W: the decomposed deploy net's ArgMax + RelToAbsIndex. Optional
 * top[1]: S^(T-1), N x C x 1 x K, the centres of that assignment. Optional
 * top[2]: Q_T, N x 9 x H x W. Results equal the decomposed layers' up to float
 * rounding. Params: slic_iterations_param {num_steps},
 * spixel_feature2_param {num_spixels_h, num_spixels_w, scale_value,
 * invalid_distance}, read as Passoc reads them. No backward (train with the
 * decomposed layers); memory does not grow with num_steps.
 */
template <typename Dtype>
class SlicIterationsLayer : public Layer<Dtype> {
 public:
  explicit SlicIterationsLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                          const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
                       const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "SlicIterations"; }
  virtual inline int ExactNumBottomBlobs() const { return 3; }
  virtual inline int MinTopBlobs() const { return 1; }
  virtual inline int MaxTopBlobs() const { return 3; }
  // Forward only: force_backward must not ask any bottom for a gradient.
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

  // Pixels of `rows` image rows of image n from row y, columns [begin, end),
  // that share the initial cell `cell` (CPU).
  // `offset`: where the block starts in its group's packed features.
  struct CellBlock {
    int n, y, rows, begin, end, cell, offset;
  };
  // Splits the cell map into blocks (checking every id), grouping a few
  // consecutive rows with equal ids; groups_ holds the first block of each
  // group, then the block count, and bounds_ from groups_[g] + g the column
  // bounds of group g's blocks, and group_offsets_ where each group starts
  // when the whole batch is packed at once (its last entry the total).
  // Returns the size of the largest packed group; sets group_rows_.
  size_t FindBlocks(const vector<Blob<Dtype>*>& bottom);
  void RefuseBackward(const vector<bool>& propagate_down) const;

  int grid_h_, grid_w_, num_steps_;
  int group_rows_;  // CPU: the most rows of any group
  Dtype scale_, invalid_distance_;
  // 2 x N x C x K: S^t and S^(t+1), reused every step (the CPU needs only S^t)
  Blob<Dtype> centres_;
  std::vector<CellBlock> blocks_;  // CPU: the cell map's blocks
  std::vector<int> groups_;        // CPU: block ranges the threads share out
  std::vector<int> bounds_;        // CPU: column bounds of each group's blocks
  std::vector<size_t> group_offsets_;  // CPU: each group's place in packed_
  // CPU: per-thread sums, N x K x slic_sum_rows(C) vectors (C sums, the
  // weight, zeros)
  std::vector<Dtype> partial_;
  std::vector<Dtype> table_;       // CPU: the centre table, N x K x C vectors
  std::vector<Dtype> scratch_;     // CPU: per-thread kernel scratch
  // CPU: the packed features of every group, packed in the first step and
  // read by the others, or (above kPackOnceBytes) of one group per thread,
  // packed again in every step.
  std::vector<Dtype> packed_;
  Blob<Dtype> assoc_;    // GPU: N x 9 x H x W associations of the current step
  Blob<Dtype> weights_;  // GPU: N x 1 x 1 x K total association per superpixel
  Blob<int> bad_index_;  // GPU: raised by a kernel that met a bad index
};

}  // namespace caffe

#endif  // CAFFE_SLIC_ITERATIONS_LAYER_HPP_
