// CUDA forward and backward of SpixelFeature (see spixel_feature_layer.hpp).
//
// The per-superpixel sums are scatters. Index maps hold long runs of equal
// id along a row, so one thread scans one image row of one summed quantity,
// adds up each run and issues one atomicAdd per run (not one per pixel).
// The summed quantities ("slots") are the pixel count, the row y, the column
// x and, when some output channel reads them, the C feature channels; an
// output channel is scale * (sum of its slot) / count.
#include <vector>

#include "caffe/layers/spixel_feature_layer.hpp"
#include "caffe/ssn/math.hpp"
#include "caffe/ssn/ssn_gpu_util.cuh"
#include "caffe/util/math_functions.hpp"

namespace caffe {

namespace {

// Slots of sums_: 0 row, 1 column, 2 + c feature channel c.
const int kRowSlot = 0, kColumnSlot = 1, kFirstFeatureSlot = 2;

}  // namespace

// One thread per (n, q, y) with q in [0, 3 + feature_channels): q = 0 counts
// pixels into counts (N x M) and writes the row's ids (-1: ignored or out of
// range), q >= 1 sums slot q - 1 into sums (N x (2 + feature_channels) x M).
template <typename Dtype>
__global__ void SpixelFeatureSums(const int count, const Dtype* index_map,
    const Dtype* features, const int feature_channels, const int height,
    const int width, const int num_spixels, const float ignore, int* ids,
    Dtype* counts, Dtype* sums, int* bad_index) {
  CUDA_KERNEL_LOOP(index, count) {
    const int num_quantities = 3 + feature_channels;
    const int y = index % height;
    const int q = (index / height) % num_quantities;
    const int n = index / height / num_quantities;
    const int spatial = height * width, row = n * spatial + y * width;
    const Dtype* map = index_map + row;
    Dtype* out = q == 0 ? counts + n * num_spixels
        : sums + (n * (num_quantities - 1) + q - 1) * num_spixels;
    const Dtype* feature = q - 1 >= kFirstFeatureSlot
        ? features + (n * feature_channels + q - 1 - kFirstFeatureSlot) *
              spatial + y * width
        : NULL;
    int run_id = -1;
    Dtype run_sum = 0;
    for (int x = 0; x < width; ++x) {
      int id = ssn::index_value(map[x]);
      if (ssn::is_ignored_index(id, ignore)) {
        id = -1;
      } else if (id < 0 || id >= num_spixels) {
        ssn::raise_index_flag(bad_index);
        id = -1;
      }
      if (q == 0) ids[row + x] = id;
      if (id != run_id) {
        if (run_id >= 0) atomicAdd(out + run_id, run_sum);
        run_id = id;
        run_sum = 0;
      }
      if (id < 0) continue;
      switch (q) {
        case 0: run_sum += 1; break;
        case 1 + kRowSlot: run_sum += y; break;
        case 1 + kColumnSlot: run_sum += x; break;
        default: run_sum += feature[x];
      }
    }
    if (run_id >= 0) atomicAdd(out + run_id, run_sum);
  }
}

// One thread per (n, k, j): the mean of output channel k over superpixel j.
template <typename Dtype>
__global__ void SpixelFeatureMeans(const int count, const Dtype* sums,
    const Dtype* counts, const int* slots, const Dtype* scales,
    const int num_slots, const int out_channels, const int num_spixels,
    const Dtype empty, Dtype* means) {
  CUDA_KERNEL_LOOP(index, count) {
    const int j = index % num_spixels;
    const int k = (index / num_spixels) % out_channels;
    const int n = index / num_spixels / out_channels;
    const Dtype pixels = counts[n * num_spixels + j];
    const Dtype sum = sums[(n * num_slots + slots[k]) * num_spixels + j];
    means[index] = pixels > 0 ? scales[k] * sum / pixels : empty;
  }
}

// One thread per (n, k, p) of the smeared top: the mean of p's superpixel.
template <typename Dtype>
__global__ void SpixelFeatureSmear(const int count, const Dtype* means,
    const int* ids, const int out_channels, const int spatial,
    const int num_spixels, const Dtype empty, Dtype* smeared) {
  CUDA_KERNEL_LOOP(index, count) {
    const int p = index % spatial;
    const int nk = index / spatial;
    const int id = ids[(nk / out_channels) * spatial + p];
    smeared[index] = id >= 0 ? means[nk * num_spixels + id] : empty;
  }
}

// One thread per (n, k, j): G[k, j] -> scale_k * G[k, j] / |P_j| (0 if empty).
template <typename Dtype>
__global__ void SpixelFeatureScaleMeanDiff(const int count,
    const Dtype* counts, const Dtype* scales, const int out_channels,
    const int num_spixels, Dtype* mean_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int j = index % num_spixels;
    const int k = (index / num_spixels) % out_channels;
    const int n = index / num_spixels / out_channels;
    const Dtype pixels = counts[n * num_spixels + j];
    mean_diff[index] = pixels > 0 ? scales[k] * mean_diff[index] / pixels : 0;
  }
}

// One thread per (n, c, p) of the features: the sum over the output
// channels k that read feature channel c of mean_diff[n, k, id(p)].
template <typename Dtype>
__global__ void SpixelFeatureBackward(const int count, const Dtype* mean_diff,
    const int* ids, const int* slots, const int channels,
    const int out_channels, const int spatial, const int num_spixels,
    Dtype* feature_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int p = index % spatial;
    const int c = (index / spatial) % channels;
    const int n = index / spatial / channels;
    const int id = ids[n * spatial + p];
    Dtype diff = 0;
    if (id >= 0) {
      for (int k = 0; k < out_channels; ++k) {
        if (slots[k] == kFirstFeatureSlot + c) {
          diff += mean_diff[(n * out_channels + k) * num_spixels + id];
        }
      }
    }
    feature_diff[index] = diff;
  }
}

template <typename Dtype>
void SpixelFeatureLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
                                            const vector<Blob<Dtype>*>& top) {
  const SpixelFeatureParameter& param =
      this->layer_param_.spixel_feature_param();
  const int num = bottom[0]->num(), channels = bottom[0]->channels();
  const int height = bottom[0]->height(), width = bottom[0]->width();
  const int spatial = height * width, out_channels = sources_.size();
  const Dtype empty = param.ignore_feature_value();

  // The slot and scale of each output channel, on the device.
  gpu_slots_.Reshape(vector<int>(1, out_channels));
  gpu_scales_.Reshape(vector<int>(1, out_channels));
  bool reads_features = false;
  for (int k = 0; k < out_channels; ++k) {
    const int source = sources_[k];
    reads_features = reads_features || source >= 0;
    gpu_slots_.mutable_cpu_data()[k] = source >= 0 ? kFirstFeatureSlot + source
        : source == kRow ? kRowSlot : kColumnSlot;
    gpu_scales_.mutable_cpu_data()[k] = scales_[k];
  }
  const int feature_channels = reads_features ? channels : 0;
  const int num_slots = kFirstFeatureSlot + feature_channels;

  gpu_ids_.Reshape(num, 1, height, width);
  sums_.Reshape(num, num_slots, 1, num_spixels_);
  caffe_gpu_set(counts_.count(), Dtype(0), counts_.mutable_gpu_data());
  caffe_gpu_set(sums_.count(), Dtype(0), sums_.mutable_gpu_data());
  int* bad_index = ssn::reset_index_flag(&bad_index_);
  const int rows = num * (1 + num_slots) * height;
  // NOLINT_NEXT_LINE(whitespace/operators)
  SpixelFeatureSums<Dtype><<<ssn::gpu_blocks(rows), CAFFE_CUDA_NUM_THREADS>>>(
      rows, bottom[1]->gpu_data(), bottom[0]->gpu_data(), feature_channels,
      height, width, num_spixels_, param.ignore_idx_value(),
      gpu_ids_.mutable_gpu_data(), counts_.mutable_gpu_data(),
      sums_.mutable_gpu_data(), bad_index);
  CUDA_POST_KERNEL_CHECK;
  if (ssn::index_flag_raised(bad_index_)) {
    Forward_cpu(bottom, top);  // dies naming the out-of-range id
    LOG(FATAL) << "SpixelFeature '" << this->layer_param_.name()
               << "': the index map holds an id outside [0, " << num_spixels_
               << ")";
  }

  const int mean_count = top[0]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  SpixelFeatureMeans<Dtype><<<ssn::gpu_blocks(mean_count),
                              CAFFE_CUDA_NUM_THREADS>>>(
      mean_count, sums_.gpu_data(), counts_.gpu_data(), gpu_slots_.gpu_data(),
      gpu_scales_.gpu_data(), num_slots, out_channels, num_spixels_, empty,
      top[0]->mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
  if (top.size() > 1) {
    const int smear_count = top[1]->count();
    // NOLINT_NEXT_LINE(whitespace/operators)
    SpixelFeatureSmear<Dtype><<<ssn::gpu_blocks(smear_count),
                                CAFFE_CUDA_NUM_THREADS>>>(
        smear_count, top[0]->gpu_data(), gpu_ids_.gpu_data(), out_channels,
        spatial, num_spixels_, empty, top[1]->mutable_gpu_data());
    CUDA_POST_KERNEL_CHECK;
  }
}

template <typename Dtype>
void SpixelFeatureLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  CHECK(!propagate_down[1]) << "SpixelFeature '" << this->layer_param_.name()
                            << "': cannot backpropagate to the index map";
  if (!propagate_down[0]) return;
  const int num = bottom[0]->num(), channels = bottom[0]->channels();
  const int height = bottom[0]->height(), width = bottom[0]->width();
  const int spatial = height * width, out_channels = sources_.size();

  mean_diff_.ReshapeLike(*top[0]);
  caffe_copy(top[0]->count(), top[0]->gpu_diff(),
             mean_diff_.mutable_gpu_data());
  if (top.size() > 1) {
    const int rows = num * out_channels * height;
    // NOLINT_NEXT_LINE(whitespace/operators)
    ssn::ScatterAddRowRuns<Dtype><<<ssn::gpu_blocks(rows),
                                   CAFFE_CUDA_NUM_THREADS>>>(
        rows, top[1]->gpu_diff(), gpu_ids_.gpu_data(), out_channels, height,
        width, num_spixels_, mean_diff_.mutable_gpu_data());
    CUDA_POST_KERNEL_CHECK;
  }
  const int mean_count = mean_diff_.count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  SpixelFeatureScaleMeanDiff<Dtype><<<ssn::gpu_blocks(mean_count),
                                      CAFFE_CUDA_NUM_THREADS>>>(
      mean_count, counts_.gpu_data(), gpu_scales_.gpu_data(), out_channels,
      num_spixels_, mean_diff_.mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
  const int count = bottom[0]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  SpixelFeatureBackward<Dtype><<<ssn::gpu_blocks(count),
                                 CAFFE_CUDA_NUM_THREADS>>>(
      count, mean_diff_.gpu_data(), gpu_ids_.gpu_data(), gpu_slots_.gpu_data(),
      channels, out_channels, spatial, num_spixels_,
      bottom[0]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(SpixelFeatureLayer);

}  // namespace caffe
