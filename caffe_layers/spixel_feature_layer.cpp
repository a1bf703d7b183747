#include <string>
#include <vector>

#include "caffe/layers/spixel_feature_layer.hpp"
#include "caffe/ssn/layer_util.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void SpixelFeatureLayer<Dtype>::AddSources(int source_begin, int source_count,
                                           float scale) {
  for (int c = 0; c < source_count; ++c) {
    sources_.push_back(source_begin + c);
    scales_.push_back(scale);
  }
}

template <typename Dtype>
void SpixelFeatureLayer<Dtype>::AddPosition(float scale) {
  sources_.push_back(kRow);
  scales_.push_back(scale);
  sources_.push_back(kColumn);
  scales_.push_back(scale);
}

template <typename Dtype>
void SpixelFeatureLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                                           const vector<Blob<Dtype>*>& top) {
  const SpixelFeatureParameter& param = this->layer_param_.spixel_feature_param();
  CHECK(param.has_max_spixels())
      << "SpixelFeature layer '" << this->layer_param_.name()
      << "': spixel_feature_param.max_spixels is required";
  num_spixels_ = static_cast<int>(param.max_spixels());
  CHECK_GE(num_spixels_, 1) << "SpixelFeature layer '"
                            << this->layer_param_.name()
                            << "': max_spixels must be at least 1";
}

template <typename Dtype>
void SpixelFeatureLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
                                        const vector<Blob<Dtype>*>& top) {
  const SpixelFeatureParameter& param = this->layer_param_.spixel_feature_param();
  const std::string name = this->layer_param_.name();
  CHECK_EQ(bottom[0]->num_axes(), 4) << "SpixelFeature '" << name
                                     << "': features must be N x C x H x W";
  CHECK_EQ(bottom[1]->num_axes(), 4) << "SpixelFeature '" << name
                                     << "': the index map must be N x 1 x H x W";
  CHECK_EQ(bottom[1]->channels(), 1) << "SpixelFeature '" << name
                                     << "': the index map must have 1 channel";
  CHECK_EQ(bottom[1]->num(), bottom[0]->num())
      << "SpixelFeature '" << name << "': batch sizes differ";
  CHECK(bottom[1]->height() == bottom[0]->height() &&
        bottom[1]->width() == bottom[0]->width())
      << "SpixelFeature '" << name << "': index map and features differ in size";
  const int channels = bottom[0]->channels();
  sources_.clear();
  scales_.clear();
  switch (param.type()) {
    case SpixelFeatureParameter_Feature_AVGXY:
      AddPosition(param.xy_scale());
      break;
    case SpixelFeatureParameter_Feature_AVGRGBXY:
      AddSources(0, channels, param.rgbxy_rgb_scale());
      AddPosition(param.rgbxy_xy_scale());
      break;
    case SpixelFeatureParameter_Feature_AVGXYRGBXY:
      AddPosition(param.xy_scale());
      AddSources(0, channels, param.rgbxy_rgb_scale());
      AddPosition(param.rgbxy_xy_scale());
      break;
    case SpixelFeatureParameter_Feature_AVGRGB:
      AddSources(0, channels, param.rgb_scale());
      break;
    case SpixelFeatureParameter_Feature_AVGRGBXYRGBXY:
      AddSources(0, channels, param.rgb_scale());
      AddPosition(param.xy_scale());
      AddSources(0, channels, param.rgbxy_rgb_scale());
      AddPosition(param.rgbxy_xy_scale());
      break;
    default:
      LOG(FATAL) << "SpixelFeature '" << name << "': unknown feature type";
  }
  const int num = bottom[0]->num(), out_channels = sources_.size();
  top[0]->Reshape(num, out_channels, 1, num_spixels_);
  if (top.size() > 1) {
    top[1]->Reshape(num, out_channels, bottom[0]->height(), bottom[0]->width());
  }
  counts_.Reshape(num, 1, 1, num_spixels_);
}

template <typename Dtype>
void SpixelFeatureLayer<Dtype>::ReadIndexMap(const Blob<Dtype>& index_map) {
  const float ignore = this->layer_param_.spixel_feature_param().ignore_idx_value();
  const std::string where = "SpixelFeature '" + this->layer_param_.name() +
                            "' index map";
  const int spatial = index_map.count(2), width = index_map.width();
  ids_.resize(index_map.count());
  caffe_set(counts_.count(), Dtype(0), counts_.mutable_cpu_data());
  for (int n = 0; n < index_map.num(); ++n) {
    const Dtype* map = index_map.cpu_data() + index_map.offset(n);
    Dtype* counts = counts_.mutable_cpu_data() + counts_.offset(n);
    int* ids = &ids_[n * spatial];
    for (int p = 0; p < spatial; ++p) {
      ids[p] = ssn::is_ignored_index(ssn::index_value(map[p]), ignore) ? -1
          : ssn::checked_index(map[p], num_spixels_, where, n, p, width);
    }
    // By runs of equal id (rows of cells), not one add per pixel into memory.
    for (int p = 0; p < spatial;) {
      const int id = ids[p];
      int end = p + 1;
      while (end < spatial && ids[end] == id) ++end;
      if (id >= 0) counts[id] += end - p;
      p = end;
    }
  }
}

template <typename Dtype>
void SpixelFeatureLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
                                            const vector<Blob<Dtype>*>& top) {
  ReadIndexMap(*bottom[1]);
  const Dtype empty = this->layer_param_.spixel_feature_param().ignore_feature_value();
  const int num = bottom[0]->num(), width = bottom[0]->width();
  const int spatial = bottom[0]->count(2), out_channels = sources_.size();
  Dtype* means = top[0]->mutable_cpu_data();
  caffe_set(top[0]->count(), Dtype(0), means);
  // Every blob pointer before the parallel loop: a blob's first access allocates it.
  const Dtype* features = bottom[0]->cpu_data();
  const Dtype* counts_all = counts_.cpu_data();
  Dtype* smeared_all = top.size() > 1 ? top[1]->mutable_cpu_data() : NULL;
  const int channels = bottom[0]->channels(), planes = num * out_channels;
  // (image, output channel) planes are independent: one per iteration.
#pragma omp parallel for schedule(static) if (planes * spatial >= 65536 && planes > 1)
  for (int plane = 0; plane < planes; ++plane) {
    const int n = plane / out_channels, k = plane % out_channels;
    const int* ids = &ids_[static_cast<size_t>(n) * spatial];
    const Dtype* counts = counts_all + static_cast<size_t>(n) * num_spixels_;
    Dtype* mean = means + static_cast<size_t>(plane) * num_spixels_;
    const int source = sources_[k];
    const Dtype* feature = source >= 0
        ? features + (static_cast<size_t>(n) * channels + source) * spatial : NULL;
    // Each run of equal id adds into a register, in pixel order as one add
    // per pixel into mean[id] would (the same sums), without waiting on a
    // store for every pixel.
    for (int p = 0; p < spatial;) {
      const int id = ids[p];
      if (id < 0) {
        ++p;
        continue;
      }
      Dtype sum = mean[id];
      for (; p < spatial && ids[p] == id; ++p) {
        sum += source >= 0 ? feature[p]
            : static_cast<Dtype>(source == kRow ? p / width : p % width);
      }
      mean[id] = sum;
    }
    for (int j = 0; j < num_spixels_; ++j) {
      mean[j] = counts[j] > 0 ? scales_[k] * mean[j] / counts[j] : empty;
    }
    if (smeared_all != NULL) {
      Dtype* smeared = smeared_all + static_cast<size_t>(plane) * spatial;
      for (int p = 0; p < spatial; ++p) {
        smeared[p] = ids[p] >= 0 ? mean[ids[p]] : empty;
      }
    }
  }
}

template <typename Dtype>
void SpixelFeatureLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
                                             const vector<bool>& propagate_down,
                                             const vector<Blob<Dtype>*>& bottom) {
  CHECK(!propagate_down[1]) << "SpixelFeature '" << this->layer_param_.name()
                            << "': cannot backpropagate to the index map";
  if (!propagate_down[0]) return;
  const int num = bottom[0]->num(), spatial = bottom[0]->count(2);
  const int out_channels = sources_.size();
  Dtype* feature_diff = bottom[0]->mutable_cpu_diff();
  caffe_set(bottom[0]->count(), Dtype(0), feature_diff);
  std::vector<Dtype> mean_diff(num_spixels_);
  for (int n = 0; n < num; ++n) {
    const int* ids = &ids_[n * spatial];
    const Dtype* counts = counts_.cpu_data() + counts_.offset(n);
    for (int k = 0; k < out_channels; ++k) {
      if (sources_[k] < 0) continue;  // positions are constants
      const Dtype* top_diff = top[0]->cpu_diff() + top[0]->offset(n, k);
      mean_diff.assign(top_diff, top_diff + num_spixels_);
      if (top.size() > 1) {
        const Dtype* smeared_diff = top[1]->cpu_diff() + top[1]->offset(n, k);
        for (int p = 0; p < spatial; ++p) {
          if (ids[p] >= 0) mean_diff[ids[p]] += smeared_diff[p];
        }
      }
      for (int j = 0; j < num_spixels_; ++j) {
        mean_diff[j] = counts[j] > 0 ? scales_[k] * mean_diff[j] / counts[j] : 0;
      }
      Dtype* diff = feature_diff + bottom[0]->offset(n, sources_[k]);
      for (int p = 0; p < spatial; ++p) {
        if (ids[p] >= 0) diff[p] += mean_diff[ids[p]];
      }
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(SpixelFeatureLayer);
#endif

INSTANTIATE_CLASS(SpixelFeatureLayer);
REGISTER_LAYER_CLASS(SpixelFeature);

}  // namespace caffe
