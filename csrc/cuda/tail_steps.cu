// The scoring tail's elementwise steps, CUDA: one thread per element, grid-stride, on the caller's
// stream (csrc/tail/steps.h says what each computes; the same float operations as the CPU copies).
#include "cuda/helpers.cuh"
#include "tail/steps.h"

namespace cpr {
namespace cuda {
namespace {

__global__ void memory_rows_kernel(int64_t* __restrict__ rows, int64_t batch, int64_t n_memory) {
  CPR_GRID_STRIDE(i, batch * n_memory) { rows[i] = i % n_memory; }
}

__global__ void merge_kernel(float* __restrict__ local, const float* __restrict__ whole,
                             const float* __restrict__ offset, int64_t batch, int64_t plane) {
  CPR_GRID_STRIDE(i, batch * plane) {
    const float a = local[i], b = whole[i], total = __fadd_rn(a, b);
    float v = isfinite(total) ? fminf(a, b) : total;
    if (offset != nullptr) {
      v = __fsub_rn(v, offset[i % plane]);
      v = v < 0.0f ? 0.0f : v;
    }
    local[i] = v;
  }
}

__global__ void foreground_weight_kernel(const float* __restrict__ foreground, const float* __restrict__ bank_fg,
                                         const int64_t* __restrict__ index, int64_t batch, int64_t k,
                                         int64_t plane, float* __restrict__ weight) {
  CPR_GRID_STRIDE(i, batch * plane) {
    const int64_t b = i / plane, p = i % plane;
    float v = foreground[i];
    for (int64_t j = 0; j < k; ++j) {
      const float f = bank_fg[index[b * k + j] * plane + p];
      v = v < f ? f : v;  // std::max's choice, as the CPU copy
    }
    weight[i] = v;
  }
}

}  // namespace

void memory_rows(int64_t* rows, int64_t batch, int64_t n_memory, void* stream) {
  const int64_t n = batch * n_memory;
  if (n == 0) return;
  memory_rows_kernel<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(rows, batch, n_memory);
  CPR_CUDA_LAUNCH_CHECK("score_tail (memory rows)");
}

void merge_patch_scores(float* local, const float* whole, const float* offset, int64_t batch, int64_t plane,
                        void* stream) {
  const int64_t n = batch * plane;
  if (n == 0) return;
  merge_kernel<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(local, whole, offset, batch, plane);
  CPR_CUDA_LAUNCH_CHECK("score_tail (closer search, location offset)");
}

void foreground_weight(const float* foreground, const float* bank_fg, const int64_t* index, int64_t batch,
                       int64_t k, int64_t plane, float* weight, void* stream) {
  const int64_t n = batch * plane;
  if (n == 0) return;
  foreground_weight_kernel<<<grid_for(n), kThreads, 0, as_stream(stream)>>>(foreground, bank_fg, index, batch, k,
                                                                             plane, weight);
  CPR_CUDA_LAUNCH_CHECK("score_tail (foreground weight)");
}

}  // namespace cuda
}  // namespace cpr
