"""Speed-ups of Caffe's own CPU layers, applied to the build tree's sources.

Each keeps the layer's results (bit for bit, except where a docstring says
otherwise) and is idempotent: a marker comment in the patched source says it is
there, so trees from older builds are brought up to date. Together they took
the SSN feature CNN at 481x321 from about 0.47 s to 0.26-0.33 s on 2 cores, and
a batch-2 201x201 training iteration from 1.25 s to about 0.85 s.

* :func:`fuse_softmax`: the Softmax is one vectorised pass over blocks of
  positions;
* :func:`shift_convolutions`: 2-D stride-1 convolutions skip im2col
  (caffe_layers/shifted_conv.hpp);
* :func:`fuse_batch_norm`: BatchNorm is two passes per channel, forward and
  backward, with batch or stored statistics;
* :func:`fast_max_pooling`: max pooling keeps its running maximum in a register
  and runs planes in parallel;
* :func:`parallel_relu`: ReLU runs on all threads;
* :func:`parallel_crop`: 4-D crops copy their rows in parallel;
* :func:`parallel_products`: Eltwise PROD runs on all threads.
"""
from __future__ import annotations

from pathlib import Path

from ssn.caffe_patches import write_if_changed


def replace_once(source: Path, marker: str, edits: dict[str, str]) -> None:
    """Replace each key of ``edits`` (found exactly once) by its value, unless
    ``marker`` shows the patch is already there."""
    text = source.read_text()
    if marker in text:
        return
    missing = [old.strip().splitlines()[0] for old in edits if text.count(old) != 1]
    if missing:
        raise RuntimeError(f"{source}: code to replace not found: {missing}")
    for old, new in edits.items():
        text = text.replace(old, new)
    write_if_changed(source, text.encode())


def replace_definitions(source: Path, marker: str, definitions: dict[str, str],
                        include_after: tuple[str, str] = ("", "")) -> None:
    """Replace whole function definitions, each from its signature (a key of
    ``definitions``) to its closing brace at the start of a line, unless
    ``marker`` shows the patch is already there; so a tree patched by an
    earlier version of a patch is brought up to date too. ``include_after``:
    (an existing line, a line to add after it)."""
    text = source.read_text()
    if marker in text:
        return
    anchor, addition = include_after
    missing = [signature.splitlines()[0] for signature in definitions
               if text.count(signature) != 1]
    if missing or anchor not in text:
        raise RuntimeError(f"{source}: code to replace not found: {missing or anchor}")
    for signature, definition in definitions.items():
        start = text.index(signature)
        end = text.index("\n}\n", start) + len("\n}\n")
        text = text[:start] + definition + text[end:]
    if addition:
        text = text.replace(anchor, anchor + addition, 1)
    write_if_changed(source, text.encode())


SOFTMAX_MARKER = "ssn/build.py: softmax by ssn::softmax_forward"
SOFTMAX_SIGNATURE = """void SoftmaxLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
"""
SOFTMAX_FAST = SOFTMAX_SIGNATURE + """  // """ + SOFTMAX_MARKER + """
  // (caffe/layers/ssn_cpu_kernels.hpp): blocks of positions in parallel,
  // vectorised. The sdist made five passes, two of them through BLAS, whose
  // spinning threads also slowed the layers after it.
  ssn::softmax_forward(bottom[0]->cpu_data(), outer_num_, bottom[0]->shape(softmax_axis_),
                       inner_num_, top[0]->mutable_cpu_data());
}
"""
SOFTMAX_INCLUDE_ANCHOR = '#include "caffe/layers/softmax_layer.hpp"\n'
SOFTMAX_INCLUDE = '#include "caffe/layers/ssn_cpu_kernels.hpp"\n'


def fuse_softmax(tree: Path) -> None:
    """Make the CPU Softmax forward call ``ssn::softmax_forward``.

    The sdist's version copies, takes the max, subtracts by gemm, exponentiates,
    sums by gemv and divides: 7 ms for the 9 x 481 x 321 associations of one
    SSN step, run 10 times per image; about 0.7 ms now. Its exp is a polynomial:
    float results stay within 2e-7 (relative) of std::exp's. The whole
    definition is replaced, so trees patched by earlier versions of this
    function (a fused loop in the source) are brought up to date too.
    """
    replace_definitions(tree / "src/caffe/layers/softmax_layer.cpp", SOFTMAX_MARKER,
                        {SOFTMAX_SIGNATURE: SOFTMAX_FAST},
                        (SOFTMAX_INCLUDE_ANCHOR, SOFTMAX_INCLUDE))


SHIFTED_MARKER = "ssn/build.py: narrowing convolutions skip im2col"
SHIFTED_HELPER = """#include "caffe/layers/shifted_conv.hpp"  // """ + SHIFTED_MARKER + """

// The geometry and strategy of this layer's convolution (ShiftedConv::ForLayer).
#define SSN_SHIFTED_CONV ShiftedConv::ForLayer(num_spatial_axes_, \\
    reverse_dimensions() || force_nd_im2col_, group_, conv_in_channels_, \\
    conv_input_shape_.cpu_data(), conv_out_channels_, output_shape_.data(), \\
    kernel_shape_.cpu_data(), pad_.cpu_data(), stride_.cpu_data(), \\
    dilation_.cpu_data())

namespace caffe {"""
# Each CPU gemm method's signature, and the lines that hand it to ShiftedConv
# (the marker and hooks predate widening convolutions; ShiftedConv decides).
SHIFTED_HOOKS = {
    """void BaseConvolutionLayer<Dtype>::forward_cpu_gemm(const Dtype* input,
    const Dtype* weights, Dtype* output, bool skip_im2col) {
""": "if (shifted.applies()) return shifted.Forward(input, weights, output);",
    """void BaseConvolutionLayer<Dtype>::backward_cpu_gemm(const Dtype* output,
    const Dtype* weights, Dtype* input) {
""": "if (shifted.applies()) return shifted.BackwardData(output, weights, input);",
    """void BaseConvolutionLayer<Dtype>::weight_cpu_gemm(const Dtype* input,
    const Dtype* output, Dtype* weights) {
""": "if (shifted.applies()) return shifted.BackwardWeights(input, output, weights);",
}


def shift_convolutions(tree: Path) -> None:
    """Route CPU 2-D stride-1 convolutions through
    :file:`caffe_layers/shifted_conv.hpp`, which needs no im2col buffer.

    The SSN feature CNN's last convolution (197 to 15 channels) took about 0.4 s
    of the 0.8 s CNN forward on a 481x321 image, most of it writing a 1.1 GB
    im2col buffer; its 64-to-64 convolutions run about 1.7x faster forward and
    1.5x backward. Which convolutions take which path is
    ``ShiftedConv::ForLayer``'s decision. The sums run in another order than
    im2col's, so results differ by rounding.
    """
    source = tree / "src/caffe/layers/base_conv_layer.cpp"
    text = source.read_text()
    if SHIFTED_MARKER in text:
        return
    anchor = "\nnamespace caffe {"
    pieces = [anchor, *SHIFTED_HOOKS]
    missing = [piece.splitlines()[-1] for piece in pieces if text.count(piece) != 1]
    if missing:
        raise RuntimeError(f"{source}: code to hook into not found: {missing}")
    text = text.replace(anchor, "\n" + SHIFTED_HELPER, 1)
    for signature, call in SHIFTED_HOOKS.items():
        text = text.replace(signature, f"{signature}  const ShiftedConv shifted = "
                            f"SSN_SHIFTED_CONV;\n  {call}\n")
    write_if_changed(source, text.encode())


BATCH_NORM_MARKER = "ssn/build.py: BatchNorm in two passes per channel"
BATCH_NORM_FORWARD = """void BatchNormLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
"""
BATCH_NORM_FORWARD_FAST = BATCH_NORM_FORWARD + """  // """ + BATCH_NORM_MARKER + """: the statistics
  // per channel in double, then (x - mean) / sqrt(var + eps) in one pass over
  // the planes (the sdist broadcast them by gemm into full-size buffers).
  // variance_ ends as the deviations, as in the sdist; temp_ is not used (the
  // backward below divides by variance_); x_norm_ keeps the normalised input
  // for the batch-statistics backward, since a ReLU in place may clobber top.
  const int num = bottom[0]->shape(0), channels = channels_;
  const int spatial_dim = bottom[0]->count() / (num * channels);
  const double count = static_cast<double>(num) * spatial_dim;
  const Dtype* bottom_data = bottom[0]->cpu_data();
  Dtype* top_data = top[0]->mutable_cpu_data();
  Dtype* mean = mean_.mutable_cpu_data();
  Dtype* deviation = variance_.mutable_cpu_data();
  Dtype* normalised = use_global_stats_ ? NULL : x_norm_.mutable_cpu_data();
  const bool parallel = bottom[0]->count() >= 65536;
  if (use_global_stats_) {
    const Dtype stored = this->blobs_[2]->cpu_data()[0];
    const Dtype scale_factor = stored == 0 ? 0 : 1 / stored;
    for (int c = 0; c < channels; ++c) {
      mean[c] = scale_factor * this->blobs_[0]->cpu_data()[c];
      deviation[c] = scale_factor * this->blobs_[1]->cpu_data()[c];
    }
  } else {
#pragma omp parallel for schedule(static) if (parallel)
    for (int c = 0; c < channels; ++c) {
      double sum = 0;
      for (int n = 0; n < num; ++n) {
        const Dtype* x = bottom_data + (static_cast<size_t>(n) * channels + c) * spatial_dim;
        for (int i = 0; i < spatial_dim; ++i) sum += x[i];
      }
      const double channel_mean = sum / count;
      double squares = 0;
      for (int n = 0; n < num; ++n) {
        const Dtype* x = bottom_data + (static_cast<size_t>(n) * channels + c) * spatial_dim;
        for (int i = 0; i < spatial_dim; ++i) {
          const double d = x[i] - channel_mean;
          squares += d * d;
        }
      }
      mean[c] = static_cast<Dtype>(channel_mean);
      deviation[c] = static_cast<Dtype>(squares / count);
    }
    // The moving averages, as in the sdist.
    this->blobs_[2]->mutable_cpu_data()[0] *= moving_average_fraction_;
    this->blobs_[2]->mutable_cpu_data()[0] += 1;
    caffe_cpu_axpby(mean_.count(), Dtype(1), mean_.cpu_data(),
        moving_average_fraction_, this->blobs_[0]->mutable_cpu_data());
    const int m = bottom[0]->count() / channels;
    const Dtype bias_correction_factor = m > 1 ? Dtype(m) / (m - 1) : 1;
    caffe_cpu_axpby(variance_.count(), bias_correction_factor,
        variance_.cpu_data(), moving_average_fraction_,
        this->blobs_[1]->mutable_cpu_data());
  }
  for (int c = 0; c < channels; ++c) deviation[c] = std::sqrt(deviation[c] + eps_);
#pragma omp parallel for schedule(static) if (parallel)
  for (int plane = 0; plane < num * channels; ++plane) {
    const Dtype plane_mean = mean[plane % channels], d = deviation[plane % channels];
    const size_t offset = static_cast<size_t>(plane) * spatial_dim;
    const Dtype* in = bottom_data + offset;
    Dtype* out = top_data + offset;
    for (int i = 0; i < spatial_dim; ++i) out[i] = (in[i] - plane_mean) / d;
    if (normalised) std::copy(out, out + spatial_dim, normalised + offset);
  }
}
"""
BATCH_NORM_BACKWARD = """void BatchNormLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
"""
BATCH_NORM_BACKWARD_FAST = BATCH_NORM_BACKWARD + """  // The patched forward's backward:
  // Forward_cpu left the deviations in variance_. With batch statistics,
  // dx = (dy - mean(dy) - mean(dy y) y) / deviation, y the normalised input,
  // means per channel; with stored statistics, dx = dy / deviation. Top and
  // bottom diffs may be one buffer: each element is read before it is written.
  const int num = bottom[0]->shape(0), channels = channels_;
  const int spatial_dim = bottom[0]->count() / (num * channels);
  const double count = static_cast<double>(num) * spatial_dim;
  const Dtype* top_diff = top[0]->cpu_diff();
  Dtype* bottom_diff = bottom[0]->mutable_cpu_diff();
  const Dtype* deviation = variance_.cpu_data();
  const Dtype* normalised = use_global_stats_ ? NULL : x_norm_.cpu_data();
#pragma omp parallel for schedule(static) if (bottom[0]->count() >= 65536)
  for (int c = 0; c < channels; ++c) {
    double sum_dy = 0, sum_dy_y = 0;
    if (normalised) {
      for (int n = 0; n < num; ++n) {
        const size_t offset = (static_cast<size_t>(n) * channels + c) * spatial_dim;
        for (int i = 0; i < spatial_dim; ++i) {
          sum_dy += top_diff[offset + i];
          sum_dy_y += top_diff[offset + i] * normalised[offset + i];
        }
      }
    }
    const Dtype mean_dy = static_cast<Dtype>(sum_dy / count);
    const Dtype mean_dy_y = static_cast<Dtype>(sum_dy_y / count);
    for (int n = 0; n < num; ++n) {
      const size_t offset = (static_cast<size_t>(n) * channels + c) * spatial_dim;
      for (int i = 0; i < spatial_dim; ++i) {
        const Dtype y = normalised ? normalised[offset + i] : Dtype(0);
        bottom_diff[offset + i] =
            (top_diff[offset + i] - mean_dy - mean_dy_y * y) / deviation[c];
      }
    }
  }
}
"""


def fuse_batch_norm(tree: Path) -> None:
    """Make the CPU BatchNorm two passes per channel, forward and backward, with
    batch statistics (training) as with stored ones (``use_global_stats``, the
    default at test time).

    The sdist broadcasts the mean and deviation by gemm into full-size buffers
    and divides, and copies the input: about 20 ms per 64-channel BatchNorm at
    481x321 with stored statistics (8 ms now), and about 40 ms forward per
    64-channel BatchNorm of a batch-2 201x201 training iteration. The
    statistics are summed in double (the sdist: float gemv), so batch-statistics
    results differ by rounding. Trees patched by the earlier, stored-statistics
    version of this function are brought up to date.
    """
    replace_definitions(tree / "src/caffe/layers/batch_norm_layer.cpp", BATCH_NORM_MARKER, {
        BATCH_NORM_FORWARD: BATCH_NORM_FORWARD_FAST,
        BATCH_NORM_BACKWARD: BATCH_NORM_BACKWARD_FAST,
    })


POOLING_MARKER = "ssn/build.py: max pooling per plane in parallel"
POOLING_MAX_SLOW = """  case PoolingParameter_PoolMethod_MAX:
    // Initialize
    if (use_top_mask) {
      top_mask = top[1]->mutable_cpu_data();
      caffe_set(top_count, Dtype(-1), top_mask);
    } else {
      mask = max_idx_.mutable_cpu_data();
      caffe_set(top_count, -1, mask);
    }
    caffe_set(top_count, Dtype(-FLT_MAX), top_data);
    // The main loop
    for (int n = 0; n < bottom[0]->num(); ++n) {
      for (int c = 0; c < channels_; ++c) {
        for (int ph = 0; ph < pooled_height_; ++ph) {
          for (int pw = 0; pw < pooled_width_; ++pw) {
            int hstart = ph * stride_h_ - pad_h_;
            int wstart = pw * stride_w_ - pad_w_;
            int hend = min(hstart + kernel_h_, height_);
            int wend = min(wstart + kernel_w_, width_);
            hstart = max(hstart, 0);
            wstart = max(wstart, 0);
            const int pool_index = ph * pooled_width_ + pw;
            for (int h = hstart; h < hend; ++h) {
              for (int w = wstart; w < wend; ++w) {
                const int index = h * width_ + w;
                if (bottom_data[index] > top_data[pool_index]) {
                  top_data[pool_index] = bottom_data[index];
                  if (use_top_mask) {
                    top_mask[pool_index] = static_cast<Dtype>(index);
                  } else {
                    mask[pool_index] = index;
                  }
                }
              }
            }
          }
        }
        // compute offset
        bottom_data += bottom[0]->offset(0, 1);
        top_data += top[0]->offset(0, 1);
        if (use_top_mask) {
          top_mask += top[0]->offset(0, 1);
        } else {
          mask += top[0]->offset(0, 1);
        }
      }
    }
    break;
"""
POOLING_MAX_FAST = """  case PoolingParameter_PoolMethod_MAX: {
    // """ + POOLING_MARKER + """: the same first-maximum
    // and index as the sdist's loop, with the running maximum in registers.
    const int planes = bottom[0]->num() * channels_;
    const int in_size = height_ * width_;
    const int out_size = pooled_height_ * pooled_width_;
    if (use_top_mask) {
      top_mask = top[1]->mutable_cpu_data();
    } else {
      mask = max_idx_.mutable_cpu_data();
    }
#pragma omp parallel for schedule(static) if (top_count >= 16384)
    for (int plane = 0; plane < planes; ++plane) {
      const Dtype* in = bottom_data + static_cast<size_t>(plane) * in_size;
      for (int ph = 0; ph < pooled_height_; ++ph) {
        const int hstart = max(ph * stride_h_ - pad_h_, 0);
        const int hend = min(ph * stride_h_ - pad_h_ + kernel_h_, height_);
        for (int pw = 0; pw < pooled_width_; ++pw) {
          const int wstart = max(pw * stride_w_ - pad_w_, 0);
          const int wend = min(pw * stride_w_ - pad_w_ + kernel_w_, width_);
          Dtype best = -FLT_MAX;
          int best_index = -1;
          for (int h = hstart; h < hend; ++h) {
            for (int w = wstart; w < wend; ++w) {
              const int index = h * width_ + w;
              if (in[index] > best) {
                best = in[index];
                best_index = index;
              }
            }
          }
          const size_t pool_index =
              static_cast<size_t>(plane) * out_size + ph * pooled_width_ + pw;
          top_data[pool_index] = best;
          if (use_top_mask) {
            top_mask[pool_index] = static_cast<Dtype>(best_index);
          } else {
            mask[pool_index] = best_index;
          }
        }
      }
    }
    break;
  }
"""


def fast_max_pooling(tree: Path) -> None:
    """Make the CPU max pooling forward keep its running maximum in registers
    and run (image, channel) planes in parallel.

    The sdist compares against and writes to the output and mask in memory at
    every window element: about 59 ms for the SSN CNN's first pooling (64
    channels, 481x321) against a few milliseconds. Same outputs and mask.
    """
    replace_once(tree / "src/caffe/layers/pooling_layer.cpp", POOLING_MARKER,
                 {POOLING_MAX_SLOW: POOLING_MAX_FAST})


RELU_MARKER = "ssn/build.py: ReLU on all threads"
RELU_FORWARD_LOOP = """  for (int i = 0; i < count; ++i) {
    top_data[i] = std::max(bottom_data[i], Dtype(0))
"""
RELU_BACKWARD_LOOP = """    for (int i = 0; i < count; ++i) {
      bottom_diff[i] = top_diff[i] * ((bottom_data[i] > 0)
"""
RELU_PARALLEL = "#pragma omp parallel for schedule(static) if (count >= 65536)\n"


def parallel_relu(tree: Path) -> None:
    """Run the CPU ReLU's forward and backward loops on all threads (about 8 ms
    per 64-channel ReLU at 481x321 on one)."""
    replace_once(tree / "src/caffe/layers/relu_layer.cpp", RELU_MARKER, {
        RELU_FORWARD_LOOP: f"  // {RELU_MARKER}\n{RELU_PARALLEL}{RELU_FORWARD_LOOP}",
        RELU_BACKWARD_LOOP: RELU_PARALLEL + RELU_BACKWARD_LOOP,
    })


CROP_MARKER = "ssn/build.py: 4-D crops copy rows in parallel"
CROP_FORWARD = """void CropLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
"""
CROP_BACKWARD_COPY = """    caffe_set(bottom[0]->count(), static_cast<Dtype>(0), bottom_diff);
"""
CROP_ROWS = """// """ + CROP_MARKER + """: each row of the (4-D)
// crop is one copy between `big` (the bottom) and `small` (the top), rows in
// parallel; crop_copy's recursion costs two vectors per row on one thread.
template <typename Dtype>
void copy_crop_rows(const Blob<Dtype>& big, const Blob<Dtype>& small,
    const vector<int>& offsets, const Dtype* from, Dtype* to, bool to_small) {
  const int channels = small.shape(1), height = small.shape(2), width = small.shape(3);
  const int rows = small.shape(0) * channels * height;
#pragma omp parallel for schedule(static) if (small.count() >= 65536)
  for (int row = 0; row < rows; ++row) {
    const int n = row / (channels * height), c = (row / height) % channels;
    const size_t big_offset = big.offset(n + offsets[0], c + offsets[1],
                                         row % height + offsets[2], offsets[3]);
    const size_t small_offset = static_cast<size_t>(row) * width;
    if (to_small) {
      std::copy(from + big_offset, from + big_offset + width, to + small_offset);
    } else {
      std::copy(from + small_offset, from + small_offset + width, to + big_offset);
    }
  }
}

template <typename Dtype>
"""


def parallel_crop(tree: Path) -> None:
    """Copy the rows of 4-D CPU crops in parallel (the SSN feature CNN's two
    Crops: about 12 ms each at 481x321 through crop_copy); other ranks keep
    crop_copy."""
    replace_once(tree / "src/caffe/layers/crop_layer.cpp", CROP_MARKER, {
        "template <typename Dtype>\n" + CROP_FORWARD: CROP_ROWS + CROP_FORWARD +
        "  if (top[0]->num_axes() == 4) {\n"
        "    copy_crop_rows(*bottom[0], *top[0], offsets, bottom[0]->cpu_data(),\n"
        "                   top[0]->mutable_cpu_data(), true);\n"
        "    return;\n  }\n",
        CROP_BACKWARD_COPY: CROP_BACKWARD_COPY +
        "    if (top[0]->num_axes() == 4) {\n"
        "      copy_crop_rows(*bottom[0], *top[0], offsets, top_diff, bottom_diff, false);\n"
        "      return;\n    }\n",
    })


ELTWISE_MARKER = "ssn/build.py: products in parallel"
ELTWISE_FORWARD = """void EltwiseLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
"""
ELTWISE_FORWARD_FAST = ELTWISE_FORWARD + """  if (op_ == EltwiseParameter_EltwiseOp_PROD) {
    // """ + ELTWISE_MARKER + """: the same products as
    // caffe_mul's, on all threads.
    const int count = top[0]->count();
    Dtype* top_data = top[0]->mutable_cpu_data();
    for (int i = 1; i < bottom.size(); ++i) {
      const Dtype* a = i == 1 ? bottom[0]->cpu_data() : top_data;
      const Dtype* b = bottom[i]->cpu_data();
#pragma omp parallel for schedule(static) if (count >= 65536)
      for (int k = 0; k < count; ++k) top_data[k] = a[k] * b[k];
    }
    return;
  }
"""
ELTWISE_BACKWARD = """void EltwiseLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
"""
ELTWISE_BACKWARD_FAST = ELTWISE_BACKWARD + """  // Two factors (see Forward_cpu):
  const bool two_factors = bottom.size() == 2 && stable_prod_grad_;
  if (op_ == EltwiseParameter_EltwiseOp_PROD && two_factors) {
    // Each bottom's gradient is the other bottom times top's, in one parallel
    // pass (the sdist: a copy, then a product, on one thread).
    const int count = top[0]->count();
    const Dtype* top_diff = top[0]->cpu_diff();
    for (int i = 0; i < 2; ++i) {
      if (!propagate_down[i]) continue;
      const Dtype* other = bottom[1 - i]->cpu_data();
      Dtype* bottom_diff = bottom[i]->mutable_cpu_diff();
#pragma omp parallel for schedule(static) if (count >= 65536)
      for (int k = 0; k < count; ++k) bottom_diff[k] = other[k] * top_diff[k];
    }
    return;
  }
"""


def parallel_products(tree: Path) -> None:
    """Run the CPU Eltwise PROD on all threads, and its two-bottom backward in one
    pass: the SSN label loss multiplies 450-channel smeared labels by the
    tiled associations (about 0.07 s forward and backward per batch-2 201x201
    training iteration on one thread). Same results."""
    replace_once(tree / "src/caffe/layers/eltwise_layer.cpp", ELTWISE_MARKER, {
        ELTWISE_FORWARD: ELTWISE_FORWARD_FAST,
        ELTWISE_BACKWARD: ELTWISE_BACKWARD_FAST,
    })


def apply_cpu_speedups(tree: Path) -> None:
    """All of this module's patches."""
    fuse_softmax(tree)
    shift_convolutions(tree)
    fuse_batch_norm(tree)
    fast_max_pooling(tree)
    parallel_relu(tree)
    parallel_crop(tree)
    parallel_products(tree)
