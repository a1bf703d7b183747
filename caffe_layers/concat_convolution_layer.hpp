#ifndef CAFFE_CONCAT_CONVOLUTION_LAYER_HPP_
#define CAFFE_CONCAT_CONVOLUTION_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief A convolution of the channel concatenation of its bottoms, without
 *        the concatenated blob ("ConcatConvolution").
 *
 * bottom[i]: X_i, N x C_i x H x W (the bottoms agree on every axis but the
 * channel axis, convolution_param.axis). top[0]: Y, N x M x H' x W', exactly
 * what a Convolution with the same convolution_param computes from
 * Concat(X_0, ..., X_{k-1}) (C = sum C_i channels):
 *   Y = b + sum_i W[:, o_i : o_i + C_i] * X_i,   o_i = C_0 + ... + C_{i-1},
 * where * is that convolution. The param blobs are the Convolution's, W of
 * M x C x kh x kw and b of M (with bias_term), drawn from the same fillers in
 * the same order, so weights and solver states of a net with Concat +
 * Convolution load into one with this layer under the same name.
 *
 * Each bottom has an internal ConvolutionLayer (no bias, except the first,
 * which shares b), so Caffe's convolution code runs each part on CPU or GPU
 * (cuDNN where the build has it). Forward copies W's slices into the parts'
 * weights and sums their outputs in the top through one top-sized scratch
 * blob; backward hands every part the top's diff and adds the parts' weight
 * gradients into W's diff. The concatenation (N x C x H x W) and its diff
 * are never made. convolution_output_param.relu applies max(Y, 0) after the
 * sum, forward only (as for Convolution, patch 0015). group must be 1.
 */
template <typename Dtype>
class ConcatConvolutionLayer : public Layer<Dtype> {
 public:
  explicit ConcatConvolutionLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                          const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
                       const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "ConcatConvolution"; }
  virtual inline int MinBottomBlobs() const { return 1; }
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

  // The LayerParameter of bottom i's internal Convolution.
  LayerParameter PartParameter(int i) const;
  // CHECKs that the bottoms agree on every axis but the channel axis and
  // keep the channel counts the layer was set up with.
  void CheckBottoms(const vector<Blob<Dtype>*>& bottom) const;
  // Points each part's top at the output (part 0) or the scratch (others)
  // and at the top's diff.
  void ShareTops(Blob<Dtype>* top);
  // Runs part i forward: part 0 into the top, the others into the scratch.
  void ForwardPart(int i, Blob<Dtype>* bottom);
  // Runs the parts backward: bottom diffs, the parts' weight diffs and b's.
  void BackwardParts(const vector<bool>& propagate_down,
                     const vector<Blob<Dtype>*>& bottom);
  bool relu_output() const {
    return this->layer_param_.convolution_output_param().relu();
  }
  void RefuseBackwardAfterReLU() const;
  bool bias_term() const {
    return this->layer_param_.convolution_param().bias_term();
  }

  // Part i's weights (M x C_i x kh x kw) are W[:, o_i : o_i + C_i]. Copies
  // them from W; and adds the parts' weight diffs into W's, zeroing them
  // (the parts accumulate, as Caffe's layers do, into a zeroed diff).
  void CopyWeightsToParts_cpu();
  void MovePartWeightDiffs_cpu();
  void CopyWeightsToParts_gpu();
  void MovePartWeightDiffs_gpu();
  // Values per output channel and part of a kernel's spatial taps.
  int KernelSize() const { return this->blobs_[0]->count(2); }

  int channel_axis_;
  vector<int> channels_;  // C_i
  vector<int> offsets_;   // o_i
  vector<shared_ptr<Layer<Dtype> > > parts_;
  vector<shared_ptr<Blob<Dtype> > > part_tops_;
  Blob<Dtype> scratch_;  // the output of parts 1.., top-sized
};

}  // namespace caffe

#endif  // CAFFE_CONCAT_CONVOLUTION_LAYER_HPP_
