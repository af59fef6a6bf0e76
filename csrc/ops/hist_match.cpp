// hist_match: validate, then run on the context's device.
#include "ops/dispatch.h"

namespace cpr {

// The kernels this op dispatches to (csrc/cpu/hist_match.cpp, csrc/cuda/hist_match.cu): no checks there;
// the CUDA launcher takes the same arguments plus the stream (a cudaStream_t as void*).
namespace cpu {
void hist_match(const float* query, int64_t batch, const float* refs, int64_t n_refs,
                int64_t blocks, int64_t bins, int64_t kept_blocks, float* distances);
}  // namespace cpu
#ifdef CPR_WITH_CUDA
namespace cuda {
void hist_match(const float* query, int64_t batch, const float* refs, int64_t n_refs,
                int64_t blocks, int64_t bins, int64_t kept_blocks, float* distances, void* stream);
}  // namespace cuda
#endif

void hist_match(const float* query, int64_t batch, const float* refs, int64_t n_refs,
                int64_t blocks, int64_t bins, int64_t kept_blocks, float* distances,
                const Context& ctx) {
  constexpr const char* op = "hist_match";
  detail::check_device(op, ctx);
  CPR_CHECK(batch >= 0 && n_refs >= 0, op, ": batch and n_refs must be >= 0; got ", batch, " and ",
            n_refs);
  CPR_CHECK(blocks >= 1 && bins >= 1, op,
            ": histograms must be (*, S*S, M+1) with S*S, M+1 >= 1; got (*, ", blocks, ", ", bins,
            ")");
  CPR_CHECK(kept_blocks >= 1 && kept_blocks <= blocks, op, ": kept_blocks must be in [1, ", blocks,
            "]; got ", kept_blocks);
  if (batch == 0 || n_refs == 0) return;
  CPR_CHECK(query != nullptr && refs != nullptr && distances != nullptr, op,
            ": query, refs and distances must not be null");
  if (ctx.device == Device::kCPU) {
    cpu::hist_match(query, batch, refs, n_refs, blocks, bins, kept_blocks, distances);
  } else {
#ifdef CPR_WITH_CUDA
    cuda::hist_match(query, batch, refs, n_refs, blocks, bins, kept_blocks, distances, ctx.stream);
#endif
  }
}

}  // namespace cpr
