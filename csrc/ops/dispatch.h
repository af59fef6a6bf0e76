// Device dispatch shared by csrc/ops/<op>.cpp (private header).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "common/check.h"
#include "cpr/ops.h"

namespace cpr {
#ifdef CPR_WITH_CUDA
namespace cuda {
// Copy n int64 values from device to host on `stream` and wait (csrc/cuda/memory.cu).
void copy_to_host(const int64_t* device, int64_t n, int64_t* host, void* stream);
}  // namespace cuda
#endif

namespace detail {

inline void check_device(const char* op, const Context& ctx) {
  CPR_CHECK(ctx.device == Device::kCPU || ctx.device == Device::kCUDA, op,
            ": ctx.device must be Device::kCPU or Device::kCUDA; got ",
            static_cast<int>(ctx.device));
#ifndef CPR_WITH_CUDA
  if (ctx.device == Device::kCUDA)
    throw std::runtime_error(std::string(op) +
                             ": this build of cpr has no CUDA kernels (configure with "
                             "CPR_WITH_CUDA=ON and a CUDA toolkit)");
#endif
}

// Host copy of an int64 buffer that lives on ctx's device (for range checks of index values).
inline const int64_t* host_view(const int64_t* data, int64_t n, const Context& ctx,
                                std::vector<int64_t>& storage) {
  if (ctx.device == Device::kCPU || n == 0) return data;
  storage.resize(static_cast<size_t>(n));
#ifdef CPR_WITH_CUDA
  cuda::copy_to_host(data, n, storage.data(), ctx.stream);
#endif
  return storage.data();
}

}  // namespace detail
}  // namespace cpr
