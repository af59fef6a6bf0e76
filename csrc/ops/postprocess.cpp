// postprocess: validate, then run on the context's device.
#include <cmath>

#include "ops/dispatch.h"

namespace cpr {

// The kernels this op dispatches to (csrc/cpu/postprocess.cpp, csrc/cuda/postprocess.cu): no checks there;
// the CUDA launcher takes the same arguments plus the stream (a cudaStream_t as void*).
namespace cpu {
void postprocess(const MapView* maps, int64_t n_maps, int64_t batch, const float* foreground,
                 int64_t out_size, float sigma, int64_t top_t, float* anomaly_map, float* score);
}  // namespace cpu
#ifdef CPR_WITH_CUDA
namespace cuda {
void postprocess(const MapView* maps, int64_t n_maps, int64_t batch, const float* foreground,
                 int64_t out_size, float sigma, int64_t top_t, float* anomaly_map, float* score,
                 void* stream);
}  // namespace cuda
#endif

void postprocess(const MapView* maps, int64_t n_maps, int64_t batch, const float* foreground,
                 int64_t out_size, float sigma, int64_t top_t, float* anomaly_map, float* score,
                 const Context& ctx) {
  constexpr const char* op = "postprocess";
  detail::check_device(op, ctx);
  CPR_CHECK(n_maps >= 1 && maps != nullptr, op, ": need at least one map; got ", n_maps);
  CPR_CHECK(batch >= 0, op, ": batch must be >= 0; got ", batch);
  for (int64_t i = 0; i < n_maps; ++i) {
    CPR_CHECK(maps[i].height >= 1 && maps[i].width >= 1, op, ": maps[", i,
              "] must be (B, h, w) with h, w >= 1; got ",
              detail::shape_str({batch, maps[i].height, maps[i].width}));
    CPR_CHECK(batch == 0 || maps[i].data != nullptr, op, ": maps[", i, "] must not be null");
  }
  CPR_CHECK(out_size >= 1, op, ": out_size must be >= 1; got ", out_size);
  CPR_CHECK(std::isfinite(sigma), op, ": sigma must be finite; got ", sigma);
  CPR_CHECK(top_t >= 1, op, ": top_t must be >= 1; got ", top_t);
  if (batch == 0) return;
  CPR_CHECK(anomaly_map != nullptr && score != nullptr, op,
            ": anomaly_map and score must not be null");
  if (ctx.device == Device::kCPU) {
    cpu::postprocess(maps, n_maps, batch, foreground, out_size, sigma, top_t, anomaly_map, score);
  } else {
#ifdef CPR_WITH_CUDA
    cuda::postprocess(maps, n_maps, batch, foreground, out_size, sigma, top_t, anomaly_map, score,
                      ctx.stream);
#endif
  }
}

}  // namespace cpr
