// codebook_histogram: validate, then run on the context's device.
#include "ops/dispatch.h"

namespace cpr {

// The kernels this op dispatches to (csrc/cpu/codebook_histogram.cpp, csrc/cuda/codebook_histogram.cu): no checks there;
// the CUDA launcher takes the same arguments plus the stream (a cudaStream_t as void*).
namespace cpu {
void codebook_histogram(const float* features, int64_t batch, int64_t channels, int64_t height,
                        int64_t width, const float* centers, int64_t n_codes, int64_t grid,
                        int64_t* ids, float* hists);
}  // namespace cpu
#ifdef CPR_WITH_CUDA
namespace cuda {
void codebook_histogram(const float* features, int64_t batch, int64_t channels, int64_t height,
                        int64_t width, const float* centers, int64_t n_codes, int64_t grid,
                        int64_t* ids, float* hists, void* stream);
}  // namespace cuda
#endif

void codebook_histogram(const float* features, int64_t batch, int64_t channels, int64_t height,
                        int64_t width, const float* centers, int64_t n_codes, int64_t grid,
                        int64_t* ids, float* hists, const Context& ctx) {
  constexpr const char* op = "codebook_histogram";
  detail::check_device(op, ctx);
  CPR_CHECK(batch >= 0, op, ": batch must be >= 0; got ", batch);
  CPR_CHECK(channels >= 1 && height >= 1 && width >= 1, op,
            ": features must be (B, C, H, W) with C, H, W >= 1; got ",
            detail::shape_str({batch, channels, height, width}));
  CPR_CHECK(n_codes >= 1, op, ": centers must be (M, C) with M >= 1; got ",
            detail::shape_str({n_codes, channels}));
  CPR_CHECK(grid >= 1, op, ": grid must be >= 1; got ", grid);
  if (batch == 0) return;
  CPR_CHECK(features != nullptr && centers != nullptr && hists != nullptr, op,
            ": features, centers and hists must not be null");
  if (ctx.device == Device::kCPU) {
    cpu::codebook_histogram(features, batch, channels, height, width, centers, n_codes, grid, ids,
                            hists);
  } else {
#ifdef CPR_WITH_CUDA
    cuda::codebook_histogram(features, batch, channels, height, width, centers, n_codes, grid, ids,
                             hists, ctx.stream);
#endif
  }
}

}  // namespace cpr
