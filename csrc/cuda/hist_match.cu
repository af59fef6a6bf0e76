// hist_match, CUDA: one thread per (query, reference, block) for the block KL values, then one
// thread per (query, reference) sums the `kept` smallest (rank counting, ties by block order).
#include "cuda/helpers.cuh"
#include "cpr/ops.h"

namespace cpr {
namespace cuda {
namespace {

// per_block[b][n][s] = sum_m q log q - sum_m q log r, with q, r + eps
__global__ void block_kl_kernel(const float* __restrict__ query, int64_t batch,
                                const float* __restrict__ refs, int64_t n_refs, int64_t blocks,
                                int64_t bins, float* __restrict__ per_block) {
  CPR_GRID_STRIDE(i, batch * n_refs * blocks) {
    const int64_t s = i % blocks, n = (i / blocks) % n_refs, b = i / (blocks * n_refs);
    const float* q = query + (b * blocks + s) * bins;
    const float* r = refs + (n * blocks + s) * bins;
    float ent = 0.0f, cross = 0.0f;
    for (int64_t m = 0; m < bins; ++m) {
      const float qe = q[m] + kKlEps;
      ent += qe * logf(qe);
      cross += qe * logf(r[m] + kKlEps);
    }
    per_block[i] = ent - cross;
  }
}

__global__ void keep_smallest_kernel(const float* __restrict__ per_block, int64_t pairs,
                                     int64_t blocks, int64_t kept, float* __restrict__ distances) {
  CPR_GRID_STRIDE(i, pairs) {
    const float* v = per_block + i * blocks;
    float sum = 0.0f;
    for (int64_t s = 0; s < blocks; ++s) {
      int64_t rank = 0;
      for (int64_t t = 0; t < blocks; ++t) rank += (v[t] < v[s]) || (v[t] == v[s] && t < s);
      if (rank < kept) sum += v[s];
    }
    distances[i] = sum;
  }
}

}  // namespace

void hist_match(const float* query, int64_t batch, const float* refs, int64_t n_refs,
                int64_t blocks, int64_t bins, int64_t kept_blocks, float* distances,
                void* stream) {
  cudaStream_t s = as_stream(stream);
  const int64_t total = batch * n_refs * blocks;
  Scratch per_block(static_cast<size_t>(total) * sizeof(float), s);
  block_kl_kernel<<<grid_for(total), kThreads, 0, s>>>(query, batch, refs, n_refs, blocks, bins,
                                                       per_block.as<float>());
  CPR_CUDA_LAUNCH_CHECK("hist_match");
  keep_smallest_kernel<<<grid_for(batch * n_refs), kThreads, 0, s>>>(
      per_block.as<float>(), batch * n_refs, blocks, kept_blocks, distances);
  CPR_CUDA_LAUNCH_CHECK("hist_match");
}

}  // namespace cuda
}  // namespace cpr
