// The scoring tail's own elementwise steps and its scratch memory, on the context's device (private
// header of csrc/tail/score_tail.cpp). Kernels: csrc/cpu/tail_steps.cpp, csrc/cuda/tail_steps.cu
// (the CUDA launchers take the same arguments plus the stream); no checks there: score_tail checks
// its arguments once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cpr/ops.h"

namespace cpr {

namespace cpu {
void memory_rows(int64_t* rows, int64_t batch, int64_t n_memory);
void merge_patch_scores(float* local, const float* whole, const float* offset, int64_t batch, int64_t plane);
void foreground_weight(const float* foreground, const float* bank_fg, const int64_t* index, int64_t batch,
                       int64_t k, int64_t plane, float* weight);
}  // namespace cpu
#ifdef CPR_WITH_CUDA
namespace cuda {
void memory_rows(int64_t* rows, int64_t batch, int64_t n_memory, void* stream);
void merge_patch_scores(float* local, const float* whole, const float* offset, int64_t batch, int64_t plane,
                        void* stream);
void foreground_weight(const float* foreground, const float* bank_fg, const int64_t* index, int64_t batch,
                       int64_t k, int64_t plane, float* weight, void* stream);
// Stream-ordered device memory (cudaMallocAsync / cudaFreeAsync, csrc/cuda/memory.cu): capturable.
void* allocate_async(size_t bytes, void* stream);
void free_async(void* ptr, void* stream);
}  // namespace cuda
#endif

namespace detail {

// rows (B, M) int64: rows[b, j] = j (every query searches every memory map).
inline void memory_rows(int64_t* rows, int64_t batch, int64_t n_memory, const Context& ctx) {
#ifdef CPR_WITH_CUDA
  if (ctx.device == Device::kCUDA) return cuda::memory_rows(rows, batch, n_memory, ctx.stream);
#endif
  cpu::memory_rows(rows, batch, n_memory);
}

// local (B, P) = min(local, whole), where either is NaN or inf the sum (a damaged bank or memory poisons
// the score instead of being hidden by the other search); then, where `offset` (P) is given (the fine
// scale), max(local - offset, 0) with NaN kept.
inline void merge_patch_scores(float* local, const float* whole, const float* offset, int64_t batch, int64_t plane,
                               const Context& ctx) {
#ifdef CPR_WITH_CUDA
  if (ctx.device == Device::kCUDA) return cuda::merge_patch_scores(local, whole, offset, batch, plane, ctx.stream);
#endif
  cpu::merge_patch_scores(local, whole, offset, batch, plane);
}

// weight (B, P) = max(foreground[b], bank_fg[index[b, j]] for j < k): the fused map's factor.
inline void foreground_weight(const float* foreground, const float* bank_fg, const int64_t* index, int64_t batch,
                              int64_t k, int64_t plane, float* weight, const Context& ctx) {
#ifdef CPR_WITH_CUDA
  if (ctx.device == Device::kCUDA)
    return cuda::foreground_weight(foreground, bank_fg, index, batch, k, plane, weight, ctx.stream);
#endif
  cpu::foreground_weight(foreground, bank_fg, index, batch, k, plane, weight);
}

// Scratch memory of `count` T on the context's device, released (stream-ordered on CUDA) at scope exit.
template <typename T>
class TailBuffer {
 public:
  TailBuffer(int64_t count, const Context& ctx) : ctx_(ctx) {
    if (ctx.device == Device::kCPU) {
      host_.resize(static_cast<size_t>(count));
      data_ = host_.data();
    }
#ifdef CPR_WITH_CUDA
    if (ctx.device == Device::kCUDA && count > 0)
      data_ = static_cast<T*>(cuda::allocate_async(static_cast<size_t>(count) * sizeof(T), ctx.stream));
#endif
  }
  ~TailBuffer() {
#ifdef CPR_WITH_CUDA
    if (ctx_.device == Device::kCUDA && data_ != nullptr) cuda::free_async(data_, ctx_.stream);
#endif
  }
  TailBuffer(const TailBuffer&) = delete;
  TailBuffer& operator=(const TailBuffer&) = delete;
  T* data() const { return data_; }

 private:
  Context ctx_;
  std::vector<T> host_;
  T* data_ = nullptr;
};

}  // namespace detail
}  // namespace cpr
