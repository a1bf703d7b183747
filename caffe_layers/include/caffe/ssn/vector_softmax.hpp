// A vectorised CPU softmax over channels, which Caffe's SoftmaxLayer calls
// once patches/caffe/0008-softmax-vectorised-forward.patch is applied.
#ifndef CAFFE_SSN_VECTOR_SOFTMAX_HPP_
#define CAFFE_SSN_VECTOR_SOFTMAX_HPP_

namespace caffe {
namespace ssn {

// out[o][c][i] = exp(in[o][c][i] - m) / sum over c' of exp(in[o][c'][i] - m),
// m the maximum over c, for in and out of outer x channels x inner (out may be
// in), positions in parallel. Float uses a vectorised exp (relative error under
// 2e-7, 0 below exp(-87)); double uses std::exp.
void softmax_forward(const float* in, int outer, int channels, int inner, float* out);
void softmax_forward(const double* in, int outer, int channels, int inner, double* out);

}  // namespace ssn
}  // namespace caffe

#endif  // CAFFE_SSN_VECTOR_SOFTMAX_HPP_
