// C++ test of the vectorised exp (caffe/ssn/vector_exp.hpp).
#include <cstdint>
#include <cstring>

#include "gtest/gtest.h"

#include "caffe/ssn/vector_exp.hpp"

namespace caffe {

// The eight-lane exp of SlicIterations and the scalar one of Softmax give the
// same bits on every lane, over a sweep of the floats in [-100, 0].
TEST(SsnVectorExpTest, LanesMatchTheScalarExp) {
  int checked = 0;
  for (uint32_t bits = 0x80000000u; bits <= 0xC2C80000u; bits += 4093) {
    float x;
    std::memcpy(&x, &bits, sizeof(x));
    const ssn::Float8 lanes = {x, -x * 0.f, x * 0.5f, x, x * 0.25f, x, x * 0.75f, x};
    const ssn::Float8 y = ssn::exp_nonpositive(lanes);
    for (int lane = 0; lane < 8; ++lane) {
      const float expected = ssn::exp_nonpositive(static_cast<float>(lanes[lane]));
      ASSERT_EQ(0, std::memcmp(&expected, &y[lane], sizeof(float)))
          << "exp(" << lanes[lane] << "): lane " << lane << " gives " << y[lane]
          << ", the scalar " << expected;
    }
    ++checked;
  }
  EXPECT_GT(checked, 100000);
}

}  // namespace caffe
