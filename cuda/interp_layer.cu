// CUDA forward and backward of Interp (see interp_layer.hpp).
#include <vector>

#include "caffe/layers/interp_layer.hpp"
#include "caffe/ssn/math.hpp"
#include "caffe/ssn/ssn_gpu_util.cuh"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// One thread per output element (plane, h, w). The input window starts
// -pad_beg rows and columns into each height_in x width_in plane and is
// height_eff x width_eff; ssn::interp_tap gives the taps along each axis of
// the height_grid x width_grid sampling grid, whose top-left height_out x
// width_out corner is the output.
template <typename Dtype>
__global__ void InterpForward(const int count, const Dtype* in,
    const int height_in, const int width_in, const int height_eff,
    const int width_eff, const int pad_beg, const int height_grid,
    const int width_grid, const int height_out, const int width_out,
    Dtype* out) {
  CUDA_KERNEL_LOOP(index, count) {
    const int w = index % width_out;
    const int h = (index / width_out) % height_out;
    const int plane = index / width_out / height_out;
    const ssn::InterpTap row = ssn::interp_tap(h, height_eff, height_grid);
    const ssn::InterpTap col = ssn::interp_tap(w, width_eff, width_grid);
    const Dtype* upper = in + plane * height_in * width_in +
                         (row.i0 - pad_beg) * width_in - pad_beg;
    const Dtype* lower = upper + row.step * width_in;
    const Dtype a = row.lambda, b = col.lambda;
    const int x0 = col.i0, x1 = col.i0 + col.step;
    out[index] = (1 - a) * ((1 - b) * upper[x0] + b * upper[x1])
                 + a * ((1 - b) * lower[x0] + b * lower[x1]);
  }
}

// One thread per output element: its diff split among its four taps. Taps
// of neighbouring outputs overlap, so the adds are atomic.
template <typename Dtype>
__global__ void InterpBackward(const int count, const Dtype* out_diff,
    const int height_in, const int width_in, const int height_eff,
    const int width_eff, const int pad_beg, const int height_grid,
    const int width_grid, const int height_out, const int width_out,
    Dtype* in_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int w = index % width_out;
    const int h = (index / width_out) % height_out;
    const int plane = index / width_out / height_out;
    const ssn::InterpTap row = ssn::interp_tap(h, height_eff, height_grid);
    const ssn::InterpTap col = ssn::interp_tap(w, width_eff, width_grid);
    Dtype* upper = in_diff + plane * height_in * width_in +
                   (row.i0 - pad_beg) * width_in - pad_beg;
    Dtype* lower = upper + row.step * width_in;
    const Dtype a = row.lambda, b = col.lambda, g = out_diff[index];
    const int x0 = col.i0, x1 = col.i0 + col.step;
    atomicAdd(upper + x0, (1 - a) * (1 - b) * g);
    atomicAdd(upper + x1, (1 - a) * b * g);
    atomicAdd(lower + x0, a * (1 - b) * g);
    atomicAdd(lower + x1, a * b * g);
  }
}

template <typename Dtype>
void InterpLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
                                     const vector<Blob<Dtype>*>& top) {
  const int count = top[0]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  InterpForward<Dtype><<<ssn::gpu_blocks(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, bottom[0]->gpu_data(), bottom[0]->height(), bottom[0]->width(),
      height_in_eff_, width_in_eff_, pad_beg_, height_grid_, width_grid_,
      top[0]->height(), top[0]->width(), top[0]->mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
}

template <typename Dtype>
void InterpLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (propagate_down.size() > 1 && propagate_down[1]) {
    caffe_gpu_set(bottom[1]->count(), Dtype(0), bottom[1]->mutable_gpu_diff());
  }
  if (!propagate_down[0]) return;
  caffe_gpu_set(bottom[0]->count(), Dtype(0), bottom[0]->mutable_gpu_diff());
  const int count = top[0]->count();
  // NOLINT_NEXT_LINE(whitespace/operators)
  InterpBackward<Dtype><<<ssn::gpu_blocks(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, top[0]->gpu_diff(), bottom[0]->height(), bottom[0]->width(),
      height_in_eff_, width_in_eff_, pad_beg_, height_grid_, width_grid_,
      top[0]->height(), top[0]->width(), bottom[0]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(InterpLayer);

}  // namespace caffe
