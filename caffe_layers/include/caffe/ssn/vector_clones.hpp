// SSN_VECTOR_CLONES: compile a function once per instruction set, picked when
// the library loads: x86-64-v3 (AVX2, FMA) runs vector loops twice as wide as
// the SSE2 baseline. Bodies marked SSN_ALWAYS_INLINE are inlined into each
// clone, so they are vectorised for its instruction set too.
#ifndef CAFFE_SSN_VECTOR_CLONES_HPP_
#define CAFFE_SSN_VECTOR_CLONES_HPP_

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SSN_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SSN_VECTOR_CLONES
#endif
#define SSN_ALWAYS_INLINE inline __attribute__((always_inline))

#endif  // CAFFE_SSN_VECTOR_CLONES_HPP_
