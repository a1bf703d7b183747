// CUDA forward of SlicIterations (see slic_iterations_layer.hpp).
//
// Each step is three kernels: SlicAssociate (one thread per pixel: its 9
// distances and their softmax in registers, Passoc and Softmax in one pass)
// writes the step's associations into a buffer that every step reuses, then
// SpixelFeature2's sums (atomicAdd per run of equal cell) and division
// (ssn_gpu_util.cuh, shared with SpixelFeature2) give the next centres. The
// last SlicAssociate writes each pixel's argmax superpixel instead.
#include <cfloat>
#include <vector>

#include "caffe/layers/slic_iterations_layer.hpp"
#include "caffe/ssn/math.hpp"
#include "caffe/ssn/ssn_gpu_util.cuh"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// One thread per (n, p): Q[c, p] = softmax over c of D[c, p], with D as
// Passoc computes it and the softmax as Caffe's GPU Softmax does (maximum from
// -FLT_MAX, exp, sum, divide), written to assoc unless it is NULL. With labels
// != NULL, also labels[n, p] = nb_clamped(p, argmax_c Q[c, p]) (ties to the
// highest c). Cells outside [0, K) raise the flag and are skipped.
template <typename Dtype>
__global__ void SlicAssociate(const int count, const Dtype* pixels,
    const Dtype* centres, const Dtype* cells, const int channels,
    const int spatial, const int grid_h, const int grid_w, const Dtype scale,
    const Dtype invalid, Dtype* assoc, Dtype* labels, int* bad_index) {
  CUDA_KERNEL_LOOP(index, count) {
    const int p = index % spatial, n = index / spatial;
    const int num_spixels = grid_h * grid_w;
    const int cell = ssn::index_value(cells[index]);
    if (cell < 0 || cell >= num_spixels) {
      ssn::raise_index_flag(bad_index);
      continue;
    }
    const Dtype* f = pixels + n * channels * spatial + p;
    const Dtype* s = centres + n * channels * num_spixels;
    Dtype q[ssn::kNumNeighbours];
    Dtype max_value = -FLT_MAX;
    for (int c = 0; c < ssn::kNumNeighbours; ++c) {
      const int j = ssn::neighbour_index(cell, c, grid_h, grid_w);
      q[c] = j < 0 ? invalid
                   : scale * ssn::squared_feature_distance(f, spatial, s + j, num_spixels,
                                                           channels);
      max_value = q[c] > max_value ? q[c] : max_value;
    }
    Dtype sum = 0;
    for (int c = 0; c < ssn::kNumNeighbours; ++c) {
      q[c] = exp(q[c] - max_value);
      sum += q[c];
    }
    for (int c = 0; c < ssn::kNumNeighbours; ++c) q[c] /= sum;
    if (assoc != NULL) {
      Dtype* out = assoc + n * ssn::kNumNeighbours * spatial + p;
      for (int c = 0; c < ssn::kNumNeighbours; ++c) out[c * spatial] = q[c];
    }
    if (labels != NULL) {
      int best = 0;
      for (int c = 1; c < ssn::kNumNeighbours; ++c) {
        if (ssn::argmax_takes(q[c], q[best])) best = c;
      }
      labels[index] = ssn::neighbour_index_clamped(cell, best, grid_h, grid_w);
    }
  }
}

template <typename Dtype>
void SlicIterationsLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
                                             const vector<Blob<Dtype>*>& top) {
  const int num = bottom[0]->num(), channels = bottom[0]->channels();
  const int height = bottom[0]->height(), width = bottom[0]->width();
  const int spatial = height * width, num_spixels = grid_h_ * grid_w_;
  const int count = num * spatial, centre_count = num * channels * num_spixels;
  const Dtype invalid = scale_ * invalid_distance_;
  const Dtype* pixels = bottom[0]->gpu_data();
  const Dtype* cells = bottom[2]->gpu_data();
  Dtype* centres[2] = {centres_.mutable_gpu_data(),
                       centres_.mutable_gpu_data() + centre_count};
  int* bad_index = ssn::reset_index_flag(&bad_index_);
  // The first SlicAssociate reads every cell: one check (and one device
  // synchronisation) per forward.
  const auto check_cells = [&]() {
    if (!ssn::index_flag_raised(bad_index_)) return;
    Forward_cpu(bottom, top);  // dies naming the out-of-range cell
    LOG(FATAL) << "SlicIterations '" << this->layer_param_.name()
               << "': the cell map holds an id outside [0, " << num_spixels << ")";
  };
  for (int step = 1; step < num_steps_; ++step) {
    const Dtype* current = step == 1 ? bottom[1]->gpu_data() : centres[step % 2];
    Dtype* next = centres[(step + 1) % 2];
    // NOLINT_NEXT_LINE(whitespace/operators)
    SlicAssociate<Dtype><<<ssn::gpu_blocks(count), CAFFE_CUDA_NUM_THREADS>>>(
        count, pixels, current, cells, channels, spatial, grid_h_, grid_w_, scale_,
        invalid, assoc_.mutable_gpu_data(), static_cast<Dtype*>(NULL), bad_index);
    CUDA_POST_KERNEL_CHECK;
    if (step == 1) check_cells();
    caffe_gpu_set(centre_count, Dtype(0), next);
    caffe_gpu_set(weights_.count(), Dtype(0), weights_.mutable_gpu_data());
    const int rows = num * height * ssn::kNumNeighbours * (channels + 1);
    // NOLINT_NEXT_LINE(whitespace/operators)
    ssn::AssociationSums<Dtype><<<ssn::gpu_blocks(rows), CAFFE_CUDA_NUM_THREADS>>>(
        rows, pixels, assoc_.gpu_data(), cells, channels, height, width, grid_h_,
        grid_w_, next, weights_.mutable_gpu_data(), bad_index);
    CUDA_POST_KERNEL_CHECK;
    // NOLINT_NEXT_LINE(whitespace/operators)
    ssn::NormaliseCentroids<Dtype><<<ssn::gpu_blocks(centre_count),
                                     CAFFE_CUDA_NUM_THREADS>>>(
        centre_count, weights_.gpu_data(), channels, num_spixels, next);
    CUDA_POST_KERNEL_CHECK;
  }
  const Dtype* last = num_steps_ == 1 ? bottom[1]->gpu_data() : centres[num_steps_ % 2];
  // NOLINT_NEXT_LINE(whitespace/operators)
  SlicAssociate<Dtype><<<ssn::gpu_blocks(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, pixels, last, cells, channels, spatial, grid_h_, grid_w_, scale_, invalid,
      top.size() > 2 ? top[2]->mutable_gpu_data() : static_cast<Dtype*>(NULL),
      top[0]->mutable_gpu_data(), bad_index);
  CUDA_POST_KERNEL_CHECK;
  if (num_steps_ == 1) check_cells();
  if (top.size() > 1) caffe_copy(centre_count, last, top[1]->mutable_gpu_data());
}

template <typename Dtype>
void SlicIterationsLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  RefuseBackward(propagate_down);
}

INSTANTIATE_LAYER_GPU_FUNCS(SlicIterationsLayer);

}  // namespace caffe
