// nn_search, CUDA: one thread per (image, y, x) of a scale; one launch per scale on the stream.
//
// The thread walks the K retrieved references and the D planes; for a compile-time window R it keeps
// the R*R window dot products in registers (neighbour addresses are clamped into the map and the
// out-of-map offsets are masked out of the max), else it loops over the offsets. Reads of the
// query and of each bank plane are coalesced along x. Bank rows are read in place by index. An
// image whose index holds a row outside the bank gets NaN everywhere (only reachable with
// check_index = false, which skips the host-side range check).
#include <type_traits>

#include "cuda/helpers.cuh"
#include "cpr/ops.h"

namespace cpr {
namespace cuda {
namespace {

template <int kR, typename BankT>
__global__ void nn_search_kernel(const float* __restrict__ query, const BankT* __restrict__ bank,
                                 const int64_t* __restrict__ index, int64_t batch, int64_t k,
                                 int64_t n_bank, int64_t D, int64_t H, int64_t W, int64_t window,
                                 float* __restrict__ out) {
  const int64_t HW = H * W;
  CPR_GRID_STRIDE(p, batch * HW) {
    const int64_t b = p / HW, yx = p % HW, y = yx / W, x = yx % W;
    bool in_range = true;  // unchecked index (check_index = false): never read outside the bank
    for (int64_t j = 0; j < k; ++j) in_range &= index[b * k + j] >= 0 && index[b * k + j] < n_bank;
    if (!in_range) {
      out[b * HW + yx] = NAN;
      continue;
    }
    const float* q = query + b * D * HW + yx;
    float best = -INFINITY;
    if constexpr (kR > 0) {
      constexpr int P = kR / 2;
      int64_t offset[kR * kR];
      bool valid[kR * kR];
#pragma unroll
      for (int dy = -P; dy <= P; ++dy)
#pragma unroll
        for (int dx = -P; dx <= P; ++dx) {
          const int o = (dy + P) * kR + dx + P;
          const int64_t yy = y + dy, xx = x + dx;
          valid[o] = yy >= 0 && yy < H && xx >= 0 && xx < W;
          offset[o] = min(max(yy, int64_t(0)), H - 1) * W + min(max(xx, int64_t(0)), W - 1);
        }
      for (int64_t j = 0; j < k; ++j) {
        const BankT* ref = bank + index[b * k + j] * D * HW;
        float acc[kR * kR];
#pragma unroll
        for (int o = 0; o < kR * kR; ++o) acc[o] = 0.0f;
        for (int64_t d = 0; d < D; ++d) {
          const float qv = q[d * HW];
          const BankT* plane = ref + d * HW;
#pragma unroll
          for (int o = 0; o < kR * kR; ++o) acc[o] += qv * load_float(plane + offset[o]);
        }
#pragma unroll
        for (int o = 0; o < kR * kR; ++o)
          if (valid[o]) best = fmaxf(best, acc[o]);
      }
    } else {
      const int64_t P = window / 2;
      for (int64_t j = 0; j < k; ++j) {
        const BankT* ref = bank + index[b * k + j] * D * HW;
        for (int64_t yy = max(int64_t(0), y - P); yy <= min(H - 1, y + P); ++yy)
          for (int64_t xx = max(int64_t(0), x - P); xx <= min(W - 1, x + P); ++xx) {
            float acc = 0.0f;
            for (int64_t d = 0; d < D; ++d) acc += q[d * HW] * load_float(ref + d * HW + yy * W + xx);
            best = fmaxf(best, acc);
          }
      }
    }
    out[b * HW + yx] = 1.0f - best;
  }
}

template <typename BankT>
void launch_scale(const NNSearchScale& s, int64_t batch, const int64_t* index, int64_t k,
                  cudaStream_t stream) {
  const BankT* bank = static_cast<const BankT*>(s.bank);
  dispatch_window(s.window, [&](auto r) {
    constexpr int kR = decltype(r)::value;
    nn_search_kernel<kR, BankT><<<grid_for(batch * s.height * s.width), kThreads, 0, stream>>>(
        s.query, bank, index, batch, k, s.n_bank, s.dim, s.height, s.width, s.window, s.out);
  });
  CPR_CUDA_LAUNCH_CHECK("nn_search");
}

}  // namespace

void nn_search(const NNSearchScale* scales, int64_t n_scales, int64_t batch, const int64_t* index,
               int64_t k, void* stream) {
  for (int64_t i = 0; i < n_scales; ++i) {
    if (scales[i].bank_dtype == DType::kFloat16)
      launch_scale<uint16_t>(scales[i], batch, index, k, as_stream(stream));
    else
      launch_scale<float>(scales[i], batch, index, k, as_stream(stream));
  }
}

}  // namespace cuda
}  // namespace cpr
