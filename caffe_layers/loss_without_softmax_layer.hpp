#ifndef CAFFE_LOSS_WITHOUT_SOFTMAX_LAYER_HPP_
#define CAFFE_LOSS_WITHOUT_SOFTMAX_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/layers/loss_layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Negative log-likelihood of given (already normalised) probabilities
 *        ("LossWithoutSoftmax"), or of class values it normalises itself.
 *
 * bottom[0]: probabilities P, N x L x H x W (class axis softmax_param.axis,
 * default 1). bottom[1]: labels, N*H*W values in [0, L) or ignore_label.
 * top[0]: the scalar
 *   loss = -sum_{valid (n,p)} log(max(P[n, label, p], FLT_MIN)) / Z,
 * Z = max(1, normaliser) by loss_param.normalization (FULL: N*H*W, VALID:
 * the valid count, BATCH_SIZE: N, NONE: 1).
 * Backward: dL/dP[n, label, p] = -1 / max(P, FLT_MIN) * dL/dloss / Z for
 * valid pixels, 0 elsewhere. No gradient to the labels.
 *
 * With loss_without_softmax_param.normalize, bottom[0] holds class values x
 * (SSN: ReLU'd reconstructions) and each position's P is
 *   s_c = x_c + shift,  D = sum_c max(s_c, 0) + sum_shift,  P_c = s_c / D,
 * the loss as above. Backward is the exact gradient of that composition,
 * clamp included: with g = -1 / max(P_label, FLT_MIN) * dL/dloss / Z,
 *   dL/dx_c = g * ([c == label] / D - [s_c > 0] * s_label / D^2)
 * at valid positions, 0 at ignored ones. Sums and quotients are in double.
 */
template <typename Dtype>
class LossWithoutSoftmaxLayer : public LossLayer<Dtype> {
 public:
  explicit LossWithoutSoftmaxLayer(const LayerParameter& param)
      : LossLayer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                          const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
                       const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "LossWithoutSoftmax"; }
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

  // Label of flat position (outer i, inner p); -1 when ignored. Checked.
  int LabelAt(const Dtype* labels, int i, int p) const;
  // The number of non-ignored positions; dies naming a label out of range.
  int ValidCount(const Dtype* labels) const;
  Dtype Normaliser(int valid_count) const;
  // The normalise option on the CPU: the loss sum over the valid positions,
  // and the gradient (times scale) into diff.
  double NormalisedLossSum(const Dtype* values, const Dtype* labels) const;
  void NormalisedGradient(const Dtype* values, const Dtype* labels,
                          double scale, Dtype* diff) const;

  bool has_ignore_label_;
  int ignore_label_;
  LossParameter_NormalizationMode normalization_;
  bool normalize_;          // loss_without_softmax_param.normalize
  float shift_, sum_shift_;
  int axis_, outer_num_, inner_num_, num_classes_;
  Blob<double> totals_;  // GPU: loss sum and valid count (per block, then all)
  Blob<int> bad_index_;  // GPU: raised by a kernel that met a bad index
};

}  // namespace caffe

#endif  // CAFFE_LOSS_WITHOUT_SOFTMAX_LAYER_HPP_
