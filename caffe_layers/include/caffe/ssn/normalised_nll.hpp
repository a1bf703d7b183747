// Per-position math of LossWithoutSoftmax (see loss_without_softmax_layer.hpp),
// shared by the CPU loops and the CUDA kernels: the probability clamp, and
// the normalise option's shifted values, class sum, loss and gradient. All in
// double, whatever the blob type.
#ifndef CAFFE_SSN_NORMALISED_NLL_HPP_
#define CAFFE_SSN_NORMALISED_NLL_HPP_

#include <cfloat>
#include <cmath>

#include "caffe/ssn/math.hpp"

namespace caffe {
namespace ssn {

// The one clamp of a probability before its log, in forward and backward.
const double kMinProbability = FLT_MIN;

SSN_HOST_DEVICE double clamped_probability(double p) {
  return p > kMinProbability ? p : kMinProbability;
}

// s_c = x_c + shift.
template <typename Dtype>
SSN_HOST_DEVICE double shifted_value(Dtype x, float shift) {
  return static_cast<double>(x) + static_cast<double>(shift);
}

// What s_c adds to the class sum: max(s_c, 0).
SSN_HOST_DEVICE double positive_part(double s) { return s > 0 ? s : 0; }

// The denominator D = sum_c max(x_c + shift, 0) + sum_shift of one position
// whose num_classes values lie `stride` apart from x.
template <typename Dtype>
SSN_HOST_DEVICE double class_sum_denominator(const Dtype* x, int num_classes,
                                             int stride, float shift,
                                             float sum_shift) {
  double sum = 0;
  for (int c = 0; c < num_classes; ++c) {
    sum += positive_part(shifted_value(x[c * stride], shift));
  }
  return sum + static_cast<double>(sum_shift);
}

// p = s_label * (1 / D), as the layer chain that the option replaces
// computed it (a reciprocal, then a product); forward and backward alike.
SSN_HOST_DEVICE double normalised_probability(double s_label,
                                              double denominator) {
  return s_label * (1 / denominator);
}

// -log(max(p, FLT_MIN)).
SSN_HOST_DEVICE double normalised_nll(double s_label, double denominator) {
  return -log(clamped_probability(normalised_probability(s_label,
                                                         denominator)));
}

// The gradient of scale * normalised_nll at one position, as two terms:
//   dL/dx_c = label_term * [c == label] + sum_term * [s_c > 0].
// With p = s_label / D and g = -scale / max(p, FLT_MIN) (the plain loss's
// gradient at p, clamp included), dp/ds_label = 1/D and dp/dD = -s_label/D^2,
// and dD/dx_c = [s_c > 0].
struct NormalisedNllGradient {
  double label_term;
  double sum_term;
};

SSN_HOST_DEVICE NormalisedNllGradient normalised_nll_gradient(
    double s_label, double denominator, double scale) {
  const double inverse = 1 / denominator;
  const double g = -scale / clamped_probability(
      normalised_probability(s_label, denominator));
  NormalisedNllGradient gradient;
  gradient.label_term = g * inverse;
  gradient.sum_term = -g * s_label * inverse * inverse;
  return gradient;
}

}  // namespace ssn
}  // namespace caffe

#endif  // CAFFE_SSN_NORMALISED_NLL_HPP_
