// IEEE 754 binary16 <-> binary32 conversion in portable C++ (private header).
//
// Branch-free bit manipulation, so loops over it vectorize; exact for every half value
// (normals, subnormals, +-0, +-inf, NaN payloads kept in the top bits).
#pragma once

#include <cstdint>
#include <cstring>

namespace cpr {
namespace detail {

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// half bits -> float. Magnitude: shift exponent+mantissa into place and rescale by 2^112 (this also
// normalizes subnormal halves exactly); inf/NaN (exponent 31) get the float exponent 255.
inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t mag = static_cast<uint32_t>(h & 0x7fffu) << 13;
  const uint32_t scaled = float_to_bits(bits_to_float(mag) * bits_to_float(0x77800000u));  // 2^112
  const uint32_t inf_nan = 0u - static_cast<uint32_t>((h & 0x7c00u) == 0x7c00u);  // all ones or 0
  return bits_to_float((scaled & ~inf_nan) | ((0x7f800000u | mag) & inf_nan) | sign);
}

// Convert n halves to floats.
inline void half_to_float_n(const uint16_t* __restrict src, float* __restrict dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = half_to_float(src[i]);
}

}  // namespace detail
}  // namespace cpr
