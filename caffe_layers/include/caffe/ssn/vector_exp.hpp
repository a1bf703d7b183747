// exp(x) for x <= 0: one value, or eight floats (four doubles) at once with
// GCC's vector extensions. The scalar float version is what the vectorised
// Softmax (vector_softmax.cpp) applies per position; the vector version gives
// the same bits on each lane (the same operations, less a clamp whose lanes it
// sets to 0 anyway), so the fused SLIC iterations (slic_iterations_kernels.cpp)
// get the same exponentials.
// Header-only: each user's SSN_VECTOR_CLONES compile it for their ISA.
#ifndef CAFFE_SSN_VECTOR_EXP_HPP_
#define CAFFE_SSN_VECTOR_EXP_HPP_

#include <cmath>
#include <cstdint>

#include "caffe/ssn/vector_clones.hpp"

namespace caffe {
namespace ssn {

// 32-byte vectors: one AVX2 register, two SSE2 registers in the default clone.
typedef float Float8 __attribute__((vector_size(32)));
typedef int32_t Int8 __attribute__((vector_size(32)));
typedef double Double4 __attribute__((vector_size(32)));

namespace exp_detail {
const float kLog2e = 1.44269504088896341f;
const float kRound = 12582912.f;  // 1.5 * 2^23: adding it rounds to an integer
const float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
const float kFloor = -87.f;  // below this exp underflows float: the result is 0
// The Cephes minimax polynomial for exp(r), |r| <= ln 2 / 2, highest first.
const float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f;
const float kP3 = 4.1665795894e-2f, kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;
}  // namespace exp_detail

// exp(x) for x <= 0 by Cody-Waite reduction x = n ln 2 + r, |r| <= ln 2 / 2,
// and the polynomial above; 0 below the float range. Relative error < 2e-7.
SSN_ALWAYS_INLINE float exp_nonpositive(float x) {
  using namespace exp_detail;  // NOLINT(build/namespaces)
  const float clamped = x < kFloor ? kFloor : x;
  const float n = (clamped * kLog2e + kRound) - kRound;
  const float r = (clamped - n * kLn2Hi) - n * kLn2Lo;
  float p = kP0;
  p = p * r + kP1;
  p = p * r + kP2;
  p = p * r + kP3;
  p = p * r + kP4;
  p = p * r + kP5;
  p = p * r * r + r + 1.f;
  const float scale = __builtin_bit_cast(float, (static_cast<int32_t>(n) + 127) << 23);
  return x < kFloor ? 0.f : p * scale;
}

inline double exp_nonpositive(double x) { return std::exp(x); }

// The float version above on each of eight lanes. (Vectors by reference:
// GCC notes that passing them by value differs between SSE2 and AVX code.)
SSN_ALWAYS_INLINE Float8 exp_nonpositive(const Float8& x) {
  using namespace exp_detail;  // NOLINT(build/namespaces)
  const Float8 zero = {}, floor = zero + kFloor;
  // No clamp: lanes below the floor compute garbage (even NaN) that the
  // final select replaces by 0; the others compute what the scalar does.
  const Float8 rounded = x * kLog2e + kRound;
  const Float8 n = rounded - kRound;
  const Float8 r = (x - n * kLn2Hi) - n * kLn2Lo;
  Float8 p = zero + kP0;
  p = p * r + kP1;
  p = p * r + kP2;
  p = p * r + kP3;
  p = p * r + kP4;
  p = p * r + kP5;
  p = p * r * r + r + 1.f;
  // The integer n, in [-126, 0], is the low bits of `rounded` (1.5 * 2^23 + n):
  // the shift drops the rest, with no conversion (same bits as the scalar's).
  const Int8 exponent = (__builtin_bit_cast(Int8, rounded) + 127) << 23;
  const Float8 scale = __builtin_bit_cast(Float8, exponent);
  return x < floor ? zero : p * scale;
}

// std::exp on each of four lanes (double is for tests, not speed).
SSN_ALWAYS_INLINE Double4 exp_nonpositive(const Double4& x) {
  Double4 y;
  for (int lane = 0; lane < 4; ++lane) y[lane] = std::exp(x[lane]);
  return y;
}

}  // namespace ssn
}  // namespace caffe

#endif  // CAFFE_SSN_VECTOR_EXP_HPP_
