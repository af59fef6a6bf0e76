// nn_search: validate every scale and (unless check_index is false on CUDA) the index values, then
// run on the context's device (on the CPU, windows that cover the map as matrix products).
#include <algorithm>
#include <vector>

#include "cpu/whole_map_search.h"
#include "ops/dispatch.h"

namespace cpr {

// The kernels this op dispatches to (csrc/cpu/nn_search.cpp, csrc/cuda/nn_search.cu): no checks there;
// the CUDA launcher takes the same arguments plus the stream (a cudaStream_t as void*).
namespace cpu {
void nn_search(const NNSearchScale* scales, int64_t n_scales, int64_t batch, const int64_t* index,
               int64_t k);
}  // namespace cpu
#ifdef CPR_WITH_CUDA
namespace cuda {
void nn_search(const NNSearchScale* scales, int64_t n_scales, int64_t batch, const int64_t* index,
               int64_t k, void* stream);
}  // namespace cuda
#endif

void nn_search(const NNSearchScale* scales, int64_t n_scales, int64_t batch, const int64_t* index,
               int64_t k, const Context& ctx, bool check_index) {
  constexpr const char* op = "nn_search";
  detail::check_device(op, ctx);
  CPR_CHECK(n_scales >= 1 && scales != nullptr, op, ": need at least one scale; got ", n_scales);
  CPR_CHECK(batch >= 0, op, ": batch must be >= 0; got ", batch);
  CPR_CHECK(k >= 1, op, ": index must be (B, K) with K >= 1; got ", detail::shape_str({batch, k}));
  for (int64_t i = 0; i < n_scales; ++i) {
    const NNSearchScale& s = scales[i];
    CPR_CHECK(s.dim >= 1 && s.height >= 1 && s.width >= 1, op, ": scales[", i,
              "]: query must be (B, D, H, W) with D, H, W >= 1; got ",
              detail::shape_str({batch, s.dim, s.height, s.width}));
    CPR_CHECK(s.n_bank >= 1, op, ": scales[", i, "]: bank must be (N, D, H, W) with N >= 1; got ",
              detail::shape_str({s.n_bank, s.dim, s.height, s.width}));
    CPR_CHECK(s.bank_dtype == DType::kFloat32 || s.bank_dtype == DType::kFloat16, op, ": scales[",
              i, "]: bank_dtype must be kFloat32 or kFloat16; got ",
              static_cast<int>(s.bank_dtype));
    CPR_CHECK(s.window >= 1 && s.window % 2 == 1, op, ": scales[", i,
              "]: window must be odd and >= 1; got ", s.window);
    CPR_CHECK(s.bank != nullptr, op, ": scales[", i, "]: bank must not be null");
    CPR_CHECK(batch == 0 || (s.query != nullptr && s.out != nullptr), op, ": scales[", i,
              "]: query and out must not be null");
  }
  if (batch == 0) return;
  CPR_CHECK(index != nullptr, op, ": index must not be null");
  if (check_index || ctx.device == Device::kCPU) {
    std::vector<int64_t> storage;
    const int64_t* ix = detail::host_view(index, batch * k, ctx, storage);
    const auto mm = std::minmax_element(ix, ix + batch * k);
    for (int64_t i = 0; i < n_scales; ++i)
      CPR_CHECK_RANGE(*mm.first >= 0 && *mm.second < scales[i].n_bank, op,
                      ": index values must be in [0, ", scales[i].n_bank, "); got [", *mm.first,
                      ", ", *mm.second, "]");
  }
  if (ctx.device == Device::kCPU) {
    // a window that covers the map runs as matrix products where a BLAS is built in (several times faster)
    std::vector<NNSearchScale> windowed;
    for (int64_t i = 0; i < n_scales; ++i) {
      const NNSearchScale& s = scales[i];
      if (detail::whole_map_search_available() && detail::covers_map(s.window, s.height, s.width)) {
        detail::whole_map_search(s, batch, index, k);
      } else {
        windowed.push_back(s);
      }
    }
    if (!windowed.empty()) cpu::nn_search(windowed.data(), int64_t(windowed.size()), batch, index, k);
  } else {
#ifdef CPR_WITH_CUDA
    cuda::nn_search(scales, n_scales, batch, index, k, ctx.stream);
#endif
  }
}

}  // namespace cpr
