// Unaligned loads and stores of GCC vectors (Float8, Double4, ...): a memcpy of
// a vector compiles to one instruction. Shared by the fused SLIC kernels and
// the Winograd convolution.
#ifndef CAFFE_SSN_VECTOR_MEMORY_HPP_
#define CAFFE_SSN_VECTOR_MEMORY_HPP_

#include <cstring>

#include "caffe/ssn/vector_clones.hpp"

namespace caffe {
namespace ssn {

template <typename V>
SSN_ALWAYS_INLINE V Load(const void* from) {
  V value;
  std::memcpy(&value, from, sizeof(value));
  return value;
}

template <typename V>
SSN_ALWAYS_INLINE void Store(void* to, const V& value) {
  std::memcpy(to, &value, sizeof(value));
}

}  // namespace ssn
}  // namespace caffe

#endif  // CAFFE_SSN_VECTOR_MEMORY_HPP_
