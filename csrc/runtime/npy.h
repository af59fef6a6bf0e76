// .npy reader for the arrays of an artifact (private header).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cpr/ops.h"

namespace cpr {
namespace runtime {

// A dense C-order array read from a .npy file: '<f4' (kFloat32) or '<f2' (kFloat16, raw bits).
struct NpyArray {
  std::vector<int64_t> shape;
  DType dtype = DType::kFloat32;
  std::vector<uint8_t> bytes;  // numel * element size

  int64_t numel() const;
  const void* data() const { return bytes.data(); }
  std::vector<float> to_float() const;  // a float32 copy (fp16 converted exactly)
};

// Reads a version 1/2/3 .npy file. Throws std::runtime_error saying what is wrong (not a .npy
// file, Fortran order, another dtype, a size that does not match the header).
NpyArray read_npy(const std::string& path);

// "(2, 3, 4)"
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace runtime
}  // namespace cpr
