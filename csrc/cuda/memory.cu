// Small host <-> device helpers used by csrc/ops (index range checks).
#include "cuda/helpers.cuh"
#include "cpr/ops.h"

namespace cpr {
namespace cuda {

void copy_to_host(const int64_t* device, int64_t n, int64_t* host, void* stream) {
  CPR_CUDA_CHECK(cudaMemcpyAsync(host, device, static_cast<size_t>(n) * sizeof(int64_t),
                                 cudaMemcpyDeviceToHost, as_stream(stream)));
  CPR_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
}

}  // namespace cuda
}  // namespace cpr
