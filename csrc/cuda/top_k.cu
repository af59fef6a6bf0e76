// top_k, CUDA: one block per row; K rounds, each a block-wide minimum of the (value, index) keys
// above the previous pick. Keys are 64-bit: ordered float bits (NaN last, -0 == +0) then the
// index, so ties go to the lower index exactly as a stable sort.
#include "cuda/helpers.cuh"
#include "cpr/ops.h"

namespace cpr {
namespace cuda {
namespace {

__global__ void top_k_kernel(const float* __restrict__ distances, int64_t n_refs, int64_t kk,
                             const int64_t* __restrict__ exclude, int64_t* __restrict__ indices) {
  __shared__ uint64_t shared[32];
  const int64_t b = blockIdx.x;
  const float* d = distances + b * n_refs;
  const int64_t skip = exclude ? exclude[b] : -1;
  uint64_t prev = 0;
  bool first = true;
  for (int64_t j = 0; j < kk; ++j) {
    uint64_t best = ~0ull;
    for (int64_t i = threadIdx.x; i < n_refs; i += blockDim.x) {
      if (i == skip) continue;
      const uint64_t key = (static_cast<uint64_t>(ordered_key(d[i])) << 32) | static_cast<uint64_t>(i);
      if ((first || key > prev) && key < best) best = key;
    }
    best = block_min_u64(best, shared);
    if (threadIdx.x == 0) indices[b * kk + j] = static_cast<int64_t>(best & 0xffffffffull);
    prev = best;
    first = false;
  }
}

}  // namespace

void top_k(const float* distances, int64_t batch, int64_t n_refs, int64_t k,
           const int64_t* exclude, int64_t* indices, void* stream) {
  if (n_refs > 0xffffffffll)
    throw std::invalid_argument("top_k: the CUDA kernel takes N < 2^32 references; got " +
                                std::to_string(n_refs));
  const int64_t kk = top_k_count(n_refs, k, exclude != nullptr);
  top_k_kernel<<<static_cast<unsigned>(batch), kThreads, 0, as_stream(stream)>>>(
      distances, n_refs, kk, exclude, indices);
  CPR_CUDA_LAUNCH_CHECK("top_k");
}

}  // namespace cuda
}  // namespace cpr
