// Small memory helpers: host copies for csrc/ops (index range checks), stream-ordered scratch for csrc/tail.
#include "cuda/helpers.cuh"
#include "cpr/ops.h"
#include "tail/steps.h"

namespace cpr {
namespace cuda {

void copy_to_host(const int64_t* device, int64_t n, int64_t* host, void* stream) {
  CPR_CUDA_CHECK(cudaMemcpyAsync(host, device, static_cast<size_t>(n) * sizeof(int64_t),
                                 cudaMemcpyDeviceToHost, as_stream(stream)));
  CPR_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
}

void* allocate_async(size_t bytes, void* stream) {
  void* ptr = nullptr;
  CPR_CUDA_CHECK(cudaMallocAsync(&ptr, bytes, as_stream(stream)));
  return ptr;
}

void free_async(void* ptr, void* stream) { cudaFreeAsync(ptr, as_stream(stream)); }

}  // namespace cuda
}  // namespace cpr
