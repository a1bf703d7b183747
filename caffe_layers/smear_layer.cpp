#include <string>
#include <vector>

#include "caffe/layers/smear_layer.hpp"
#include "caffe/ssn/layer_util.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void SmearLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
                                const vector<Blob<Dtype>*>& top) {
  const std::string name = "Smear '" + this->layer_param_.name() + "'";
  CHECK(bottom[0]->num_axes() == 4 && bottom[1]->num_axes() == 4)
      << name << ": inputs must be 4-D";
  CHECK_EQ(bottom[1]->channels(), 1) << name << ": the index map must have 1 channel";
  CHECK_EQ(bottom[1]->num(), bottom[0]->num()) << name << ": batch sizes differ";
  top[0]->Reshape(bottom[0]->num(), bottom[0]->channels(), bottom[1]->height(),
                  bottom[1]->width());
}

template <typename Dtype>
void SmearLayer<Dtype>::ReadIndexMap(const Blob<Dtype>& index_map, int num_ids) {
  const float ignore = this->layer_param_.smear_param().ignore_idx_value();
  const std::string where = "Smear '" + this->layer_param_.name() + "' index map";
  const int spatial = index_map.count(2), width = index_map.width();
  const Dtype* map = index_map.cpu_data();
  ids_.resize(index_map.count());
  for (int i = 0; i < index_map.count(); ++i) {
    const int id = ssn::index_value(map[i]);
    ids_[i] = ssn::is_ignored_index(id, ignore) ? -1
        : ssn::checked_index(map[i], num_ids, where, i / spatial, i % spatial, width);
  }
}

template <typename Dtype>
void SmearLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
                                    const vector<Blob<Dtype>*>& top) {
  const int num_ids = bottom[0]->count(2), spatial = top[0]->count(2);
  ReadIndexMap(*bottom[1], num_ids);
  const Dtype ignored = this->layer_param_.smear_param().ignore_feature_value();
  const int channels = top[0]->channels();
  // Blob pointers outside the parallel planes: a blob's first access allocates it.
  const Dtype* values_all = bottom[0]->cpu_data();
  Dtype* out_all = top[0]->mutable_cpu_data();
  ssn::parallel_rows(top[0]->num() * channels, [&](int plane) {
    const int n = plane / channels, c = plane % channels;
    const int* ids = &ids_[n * spatial];
    const Dtype* values = values_all + bottom[0]->offset(n, c);
    Dtype* out = out_all + top[0]->offset(n, c);
    for (int p = 0; p < spatial; ++p) {
      out[p] = ids[p] >= 0 ? values[ids[p]] : ignored;
    }
  });
}

template <typename Dtype>
void SmearLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
                                     const vector<bool>& propagate_down,
                                     const vector<Blob<Dtype>*>& bottom) {
  CHECK(!propagate_down[1]) << "Smear '" << this->layer_param_.name()
                            << "': cannot backpropagate to the index map";
  if (!propagate_down[0]) return;
  const int spatial = top[0]->count(2), channels = top[0]->channels();
  Dtype* diff_all = bottom[0]->mutable_cpu_diff();
  const Dtype* top_diff_all = top[0]->cpu_diff();
  caffe_set(bottom[0]->count(), Dtype(0), diff_all);
  // Each (image, channel) plane scatters into its own plane of the bottom diff.
  ssn::parallel_rows(top[0]->num() * channels, [&](int plane) {
    const int n = plane / channels, c = plane % channels;
    const int* ids = &ids_[n * spatial];
    const Dtype* top_diff = top_diff_all + top[0]->offset(n, c);
    Dtype* diff = diff_all + bottom[0]->offset(n, c);
    for (int p = 0; p < spatial; ++p) {
      if (ids[p] >= 0) diff[ids[p]] += top_diff[p];
    }
  });
}

#ifdef CPU_ONLY
STUB_GPU(SmearLayer);
#endif

INSTANTIATE_CLASS(SmearLayer);
REGISTER_LAYER_CLASS(Smear);

}  // namespace caffe
