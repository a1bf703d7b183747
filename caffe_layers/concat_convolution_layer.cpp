#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "caffe/filler.hpp"
#include "caffe/layer_factory.hpp"
#include "caffe/layers/concat_convolution_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
LayerParameter ConcatConvolutionLayer<Dtype>::PartParameter(int i) const {
  LayerParameter part(this->layer_param_);
  std::ostringstream name;
  name << this->layer_param_.name() << "/part" << i;
  part.set_name(name.str());
  part.set_type("Convolution");
  part.clear_bottom();
  part.clear_top();
  part.clear_param();
  part.clear_blobs();
  part.clear_loss_weight();
  part.clear_propagate_down();
  part.clear_include();
  part.clear_exclude();
  part.clear_convolution_output_param();
  ConvolutionParameter* conv = part.mutable_convolution_param();
  conv->set_bias_term(i == 0 && bias_term());
  // The parts' weights are copies of ours and part 0's bias is ours: drawing
  // them would only shift Caffe's random stream away from what a Convolution
  // over the concatenation draws.
  conv->mutable_weight_filler()->Clear();
  conv->mutable_weight_filler()->set_type("constant");
  conv->mutable_bias_filler()->Clear();
  conv->mutable_bias_filler()->set_type("constant");
  return part;
}

template <typename Dtype>
void ConcatConvolutionLayer<Dtype>::LayerSetUp(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const ConvolutionParameter& conv = this->layer_param_.convolution_param();
  const std::string name =
      "ConcatConvolution '" + this->layer_param_.name() + "'";
  CHECK_EQ(conv.group(), 1)
      << name << ": group must be 1 (groups would mix the bottoms' channels)";
  channel_axis_ = bottom[0]->CanonicalAxisIndex(conv.axis());
  channels_.clear();
  offsets_.clear();
  int total_channels = 0;
  for (int i = 0; i < bottom.size(); ++i) {
    CHECK_GT(bottom[i]->num_axes(), channel_axis_)
        << name << ": bottom " << i << " has no channel axis";
    offsets_.push_back(total_channels);
    channels_.push_back(bottom[i]->shape(channel_axis_));
    total_channels += channels_.back();
  }
  CheckBottoms(bottom);
  parts_.clear();
  part_tops_.clear();
  for (int i = 0; i < bottom.size(); ++i) {
    parts_.push_back(LayerRegistry<Dtype>::CreateLayer(PartParameter(i)));
    part_tops_.push_back(shared_ptr<Blob<Dtype> >(new Blob<Dtype>()));
    parts_[i]->SetUp(vector<Blob<Dtype>*>(1, bottom[i]),
                     vector<Blob<Dtype>*>(1, part_tops_[i].get()));
  }
  vector<int> weight_shape = parts_[0]->blobs()[0]->shape();
  weight_shape[1] = total_channels;
  const vector<int> bias_shape(1, weight_shape[0]);
  if (!this->blobs_.empty()) {
    CHECK_EQ(this->blobs_.size(), bias_term() ? 2 : 1)
        << name << ": wrong number of param blobs";
    CHECK(this->blobs_[0]->shape() == weight_shape)
        << name << ": weights of shape " << this->blobs_[0]->shape_string()
        << ", the bottoms need " << Blob<Dtype>(weight_shape).shape_string();
    CHECK(!bias_term() || this->blobs_[1]->shape() == bias_shape)
        << name << ": bias of shape " << this->blobs_[1]->shape_string()
        << ", expected " << weight_shape[0];
  } else {
    // Shapes and filling order of a Convolution over the concatenation.
    this->blobs_.push_back(
        shared_ptr<Blob<Dtype> >(new Blob<Dtype>(weight_shape)));
    shared_ptr<Filler<Dtype> >(GetFiller<Dtype>(conv.weight_filler()))
        ->Fill(this->blobs_[0].get());
    if (bias_term()) {
      this->blobs_.push_back(
          shared_ptr<Blob<Dtype> >(new Blob<Dtype>(bias_shape)));
      shared_ptr<Filler<Dtype> >(GetFiller<Dtype>(conv.bias_filler()))
          ->Fill(this->blobs_[1].get());
    }
  }
  if (bias_term()) parts_[0]->blobs()[1] = this->blobs_[1];
  this->param_propagate_down_.resize(this->blobs_.size(), true);
}

template <typename Dtype>
void ConcatConvolutionLayer<Dtype>::CheckBottoms(
    const vector<Blob<Dtype>*>& bottom) const {
  const std::string name =
      "ConcatConvolution '" + this->layer_param_.name() + "'";
  CHECK_EQ(bottom.size(), channels_.size())
      << name << ": set up for " << channels_.size() << " bottoms";
  for (int i = 0; i < bottom.size(); ++i) {
    bool agree = bottom[i]->num_axes() == bottom[0]->num_axes();
    for (int axis = 0; agree && axis < bottom[0]->num_axes(); ++axis) {
      agree = axis == channel_axis_ ||
              bottom[i]->shape(axis) == bottom[0]->shape(axis);
    }
    CHECK(agree) << name << ": the bottoms must agree on every axis but the "
        << "channel axis " << channel_axis_ << "; bottom 0 is "
        << bottom[0]->shape_string() << ", bottom " << i << " is "
        << bottom[i]->shape_string();
    CHECK_EQ(bottom[i]->shape(channel_axis_), channels_[i])
        << name << ": bottom " << i << " has "
        << bottom[i]->shape(channel_axis_) << " channels, the layer was set "
        << "up (and its weights shaped) for " << channels_[i];
  }
}

template <typename Dtype>
void ConcatConvolutionLayer<Dtype>::Reshape(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  CheckBottoms(bottom);
  for (int i = 0; i < parts_.size(); ++i) {
    parts_[i]->Reshape(vector<Blob<Dtype>*>(1, bottom[i]),
                       vector<Blob<Dtype>*>(1, part_tops_[i].get()));
  }
  top[0]->ReshapeLike(*part_tops_[0]);
  if (parts_.size() > 1) scratch_.ReshapeLike(*top[0]);
  ShareTops(top[0]);
}

template <typename Dtype>
void ConcatConvolutionLayer<Dtype>::ShareTops(Blob<Dtype>* top) {
  // Reshaping a part's top may have given it memory of its own: share again.
  for (int i = 0; i < part_tops_.size(); ++i) {
    part_tops_[i]->ShareData(i == 0 ? *top : scratch_);
    part_tops_[i]->ShareDiff(*top);
  }
}

template <typename Dtype>
void ConcatConvolutionLayer<Dtype>::ForwardPart(int i, Blob<Dtype>* bottom) {
  parts_[i]->Forward(vector<Blob<Dtype>*>(1, bottom),
                     vector<Blob<Dtype>*>(1, part_tops_[i].get()));
}

template <typename Dtype>
void ConcatConvolutionLayer<Dtype>::BackwardParts(
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const bool weights = this->param_propagate_down(0);
  const bool bias = bias_term() && this->param_propagate_down(1);
  for (int i = 0; i < parts_.size(); ++i) {
    parts_[i]->set_param_propagate_down(0, weights);
    if (i == 0 && bias_term()) parts_[0]->set_param_propagate_down(1, bias);
    if (!propagate_down[i] && !weights && !(i == 0 && bias)) continue;
    parts_[i]->Backward(vector<Blob<Dtype>*>(1, part_tops_[i].get()),
                        vector<bool>(1, propagate_down[i]),
                        vector<Blob<Dtype>*>(1, bottom[i]));
  }
}

template <typename Dtype>
void ConcatConvolutionLayer<Dtype>::RefuseBackwardAfterReLU() const {
  CHECK(!relu_output()) << "ConcatConvolution layer '"
      << this->layer_param_.name() << "': convolution_output_param.relu is "
      << "for inference, it has no backward; train with a ReLU layer after "
      << "the convolution";
}

template <typename Dtype>
void ConcatConvolutionLayer<Dtype>::CopyWeightsToParts_cpu() {
  const int outputs = this->blobs_[0]->shape(0), taps = KernelSize();
  const int row = this->blobs_[0]->count(1);
  const Dtype* weights = this->blobs_[0]->cpu_data();
  for (int i = 0; i < parts_.size(); ++i) {
    const int part_row = channels_[i] * taps;
    Dtype* part = parts_[i]->blobs()[0]->mutable_cpu_data();
    for (int m = 0; m < outputs; ++m) {
      caffe_copy(part_row, weights + m * row + offsets_[i] * taps,
                 part + m * part_row);
    }
  }
}

template <typename Dtype>
void ConcatConvolutionLayer<Dtype>::MovePartWeightDiffs_cpu() {
  if (!this->param_propagate_down(0)) return;
  const int outputs = this->blobs_[0]->shape(0), taps = KernelSize();
  const int row = this->blobs_[0]->count(1);
  Dtype* weight_diff = this->blobs_[0]->mutable_cpu_diff();
  for (int i = 0; i < parts_.size(); ++i) {
    const int part_row = channels_[i] * taps;
    Blob<Dtype>* part = parts_[i]->blobs()[0].get();
    Dtype* part_diff = part->mutable_cpu_diff();
    for (int m = 0; m < outputs; ++m) {
      caffe_axpy(part_row, Dtype(1), part_diff + m * part_row,
                 weight_diff + m * row + offsets_[i] * taps);
    }
    caffe_set(part->count(), Dtype(0), part_diff);
  }
}

template <typename Dtype>
void ConcatConvolutionLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  CopyWeightsToParts_cpu();
  for (int i = 0; i < parts_.size(); ++i) {
    ForwardPart(i, bottom[i]);
    if (i > 0) {
      caffe_axpy(top[0]->count(), Dtype(1), scratch_.cpu_data(),
                 top[0]->mutable_cpu_data());
    }
  }
  if (relu_output()) {
    const int count = top[0]->count();
    Dtype* data = top[0]->mutable_cpu_data();
#pragma omp parallel for schedule(static) if (count >= 65536)
    for (int k = 0; k < count; ++k) data[k] = std::max(data[k], Dtype(0));
  }
}

template <typename Dtype>
void ConcatConvolutionLayer<Dtype>::Backward_cpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  RefuseBackwardAfterReLU();
  BackwardParts(propagate_down, bottom);
  MovePartWeightDiffs_cpu();
}

#ifdef CPU_ONLY
STUB_GPU(ConcatConvolutionLayer);
#endif

INSTANTIATE_CLASS(ConcatConvolutionLayer);
REGISTER_LAYER_CLASS(ConcatConvolution);

}  // namespace caffe
