// codebook_histogram, CPU: nearest codebook center per pixel, then block histograms.
//
// Distances as the reference: ||c||^2 - 2 x.c (||x||^2 does not change the argmin), float32 dot
// products (4 channels per step); the strict `<` keeps the lowest id on exact ties.
// One OpenMP item per (image, row): acc[m][x] = sum_c centers[m][c] * f[c][y][x], vectorized
// along x.
#include <algorithm>
#include <vector>

#include "cpr/ops.h"
#include "cpu/simd.h"

namespace cpr {
namespace cpu {
namespace {

CPR_ALWAYS_INLINE void assign_row_body(const float* __restrict row, int64_t plane, int64_t C,
                                       int64_t W, const float* __restrict centers,
                                       const float* __restrict norms, int64_t M,
                                       float* __restrict acc, int64_t* __restrict ids) {
  std::fill(acc, acc + M * W, 0.0f);
  int64_t c = 0;
  for (; c + 4 <= C; c += 4) {  // 4 channels per pass over the accumulators
    const float* f = row + c * plane;
    for (int64_t m = 0; m < M; ++m) {
      const float* w = centers + m * C + c;
      const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
      float* a = acc + m * W;
      for (int64_t x = 0; x < W; ++x)
        a[x] += w0 * f[x] + w1 * f[x + plane] + w2 * f[x + 2 * plane] + w3 * f[x + 3 * plane];
    }
  }
  for (; c < C; ++c) {
    const float* f = row + c * plane;
    for (int64_t m = 0; m < M; ++m) {
      const float w = centers[m * C + c];
      float* a = acc + m * W;
      for (int64_t x = 0; x < W; ++x) a[x] += w * f[x];
    }
  }
  for (int64_t x = 0; x < W; ++x) {
    float best = norms[0] - 2.0f * acc[x];
    int64_t arg = 0;
    for (int64_t m = 1; m < M; ++m) {
      const float v = norms[m] - 2.0f * acc[m * W + x];
      if (v < best) {
        best = v;
        arg = m;
      }
    }
    ids[x] = arg;
  }
}
CPR_CPU_CLONES(assign_row,
               (const float* row, int64_t plane, int64_t C, int64_t W, const float* centers,
                const float* norms, int64_t M, float* acc, int64_t* ids),
               (row, plane, C, W, centers, norms, M, acc, ids))

}  // namespace

void codebook_histogram(const float* features, int64_t batch, int64_t channels, int64_t height,
                        int64_t width, const float* centers, int64_t n_codes, int64_t grid,
                        int64_t* ids, float* hists) {
  const int64_t C = channels, H = height, W = width, M = n_codes, HW = H * W;
  std::vector<int64_t> own_ids;
  if (ids == nullptr) {
    own_ids.resize(static_cast<size_t>(batch * HW));
    ids = own_ids.data();
  }
  std::vector<float> norms(static_cast<size_t>(M));
  for (int64_t m = 0; m < M; ++m) {
    float s = 0.0f;
    for (int64_t c = 0; c < C; ++c) s += centers[m * C + c] * centers[m * C + c];
    norms[static_cast<size_t>(m)] = s;
  }
  const int64_t rows = batch * H;
#pragma omp parallel if (rows * W * C * M > (1 << 20))  // threads past ~0.1 ms of work
  {
    std::vector<float> acc(static_cast<size_t>(M * W));
#pragma omp for schedule(static)
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t b = i / H, y = i % H;
      assign_row(features + b * C * HW + y * W, HW, C, W, centers, norms.data(), M, acc.data(),
                 ids + i * W);
    }
  }
  // block histograms over the map padded to grid * ceil(H / grid) (same for W); padding -> bin 0
  const int64_t bh = (H + grid - 1) / grid, bw = (W + grid - 1) / grid, bins = M + 1;
  const float area = static_cast<float>(bh * bw);
#pragma omp parallel for schedule(static) if (batch * HW > (1 << 16))
  for (int64_t i = 0; i < batch * grid * grid; ++i) {
    const int64_t b = i / (grid * grid), gy = (i / grid) % grid, gx = i % grid;
    std::vector<int64_t> count(static_cast<size_t>(bins), 0);
    const int64_t ya = gy * bh, yb = std::min(H, ya + bh), xa = gx * bw, xb = std::min(W, xa + bw);
    int64_t real = 0;
    for (int64_t y = ya; y < yb; ++y)
      for (int64_t x = xa; x < xb; ++x) {
        ++count[static_cast<size_t>(ids[b * HW + y * W + x] + 1)];
        ++real;
      }
    count[0] += bh * bw - std::max<int64_t>(real, 0);
    float* h = hists + i * bins;
    for (int64_t m = 0; m < bins; ++m) h[m] = static_cast<float>(count[static_cast<size_t>(m)]) / area;
  }
}

}  // namespace cpu
}  // namespace cpr
