// top_k: validate, then run on the context's device.
#include <algorithm>

#include "ops/dispatch.h"

namespace cpr {

// The kernels this op dispatches to (csrc/cpu/top_k.cpp, csrc/cuda/top_k.cu): no checks there;
// the CUDA launcher takes the same arguments plus the stream (a cudaStream_t as void*).
namespace cpu {
void top_k(const float* distances, int64_t batch, int64_t n_refs, int64_t k,
           const int64_t* exclude, int64_t* indices);
}  // namespace cpu
#ifdef CPR_WITH_CUDA
namespace cuda {
void top_k(const float* distances, int64_t batch, int64_t n_refs, int64_t k,
           const int64_t* exclude, int64_t* indices, void* stream);
}  // namespace cuda
#endif

int64_t top_k_count(int64_t n_refs, int64_t k, bool has_exclude) noexcept {
  return std::max<int64_t>(0, std::min(k, n_refs - (has_exclude ? 1 : 0)));
}

void top_k(const float* distances, int64_t batch, int64_t n_refs, int64_t k,
           const int64_t* exclude, int64_t* indices, const Context& ctx) {
  constexpr const char* op = "top_k";
  detail::check_device(op, ctx);
  CPR_CHECK(batch >= 0, op, ": batch must be >= 0; got ", batch);
  CPR_CHECK(n_refs >= 1, op, ": distances must be (B, N) with N >= 1; got ",
            detail::shape_str({batch, n_refs}));
  CPR_CHECK(k >= 1, op, ": k must be >= 1; got ", k);
  CPR_CHECK(!(exclude != nullptr && n_refs < 2), op,
            ": no reference left to retrieve (N = 1 with exclude)");
  if (batch == 0) return;
  CPR_CHECK(distances != nullptr && indices != nullptr, op,
            ": distances and indices must not be null");
  if (exclude != nullptr) {
    std::vector<int64_t> storage;
    const int64_t* ex = detail::host_view(exclude, batch, ctx, storage);
    const auto mm = std::minmax_element(ex, ex + batch);
    CPR_CHECK_RANGE(*mm.first >= 0 && *mm.second < n_refs, op, ": exclude values must be in [0, ",
                    n_refs, "); got [", *mm.first, ", ", *mm.second, "]");
  }
  if (ctx.device == Device::kCPU) {
    cpu::top_k(distances, batch, n_refs, k, exclude, indices);
  } else {
#ifdef CPR_WITH_CUDA
    cuda::top_k(distances, batch, n_refs, k, exclude, indices, ctx.stream);
#endif
  }
}

}  // namespace cpr
