// postprocess, CPU: fuse scales, foreground, upsample, Gaussian blur, top-T image score.
//
// Bilinear resizing reproduces torch's upsample_bilinear2d (align_corners=False): source index
// s = (in / out) * (i + 0.5) - 0.5 clamped at 0, i0 = min(floor(s), in - 1), i1 = i0 + (i0 < in - 1),
// l1 = s - i0, l0 = 1 - l1, value = (x00 l0w + x01 l1w) l0h + (x10 l0w + x11 l1w) l1h, in float.
// The blur is separable (rows, then columns) over a padded copy; taps computed in double.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#include "cpr/ops.h"
#include "cpu/simd.h"

namespace cpr {
namespace cpu {
namespace {

struct Axis {  // bilinear taps of one output axis
  std::vector<int64_t> i0, i1;
  std::vector<float> l0, l1;
};

Axis linear_axis(int64_t in, int64_t out) {
  Axis a;
  a.i0.resize(static_cast<size_t>(out));
  a.i1.resize(static_cast<size_t>(out));
  a.l0.resize(static_cast<size_t>(out));
  a.l1.resize(static_cast<size_t>(out));
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int64_t o = 0; o < out; ++o) {
    const size_t k = static_cast<size_t>(o);
    if (in == out) {
      a.i0[k] = a.i1[k] = o;
      a.l0[k] = 1.0f;
      a.l1[k] = 0.0f;
      continue;
    }
    float src = scale * (static_cast<float>(o) + 0.5f) - 0.5f;
    if (src < 0.0f) src = 0.0f;
    const int64_t i0 = std::min(static_cast<int64_t>(std::floor(src)), in - 1);
    const float l1 = std::min(std::max(src - static_cast<float>(i0), 0.0f), 1.0f);
    a.i0[k] = i0;
    a.i1[k] = i0 + (i0 < in - 1 ? 1 : 0);
    a.l1[k] = l1;
    a.l0[k] = 1.0f - l1;
  }
  return a;
}

// out row y of a bilinear resize of src (h_in, w_in) with taps ay (rows), ax (columns)
inline void resize_row(const float* src, int64_t w_in, const Axis& ay, const Axis& ax, int64_t y,
                       int64_t w_out, float* out) {
  const size_t yk = static_cast<size_t>(y);
  const float* r0 = src + ay.i0[yk] * w_in;
  const float* r1 = src + ay.i1[yk] * w_in;
  const float h0 = ay.l0[yk], h1 = ay.l1[yk];
  for (int64_t x = 0; x < w_out; ++x) {
    const size_t xk = static_cast<size_t>(x);
    const int64_t c0 = ax.i0[xk], c1 = ax.i1[xk];
    const float w0 = ax.l0[xk], w1 = ax.l1[xk];
    const float t0 = r0[c0] * w0 + r0[c1] * w1;
    const float t1 = r1[c0] * w0 + r1[c1] * w1;
    out[x] = t0 * h0 + t1 * h1;
  }
}

// padded index of i in [-r, n + r): reflect (edge not repeated) or replicate
inline int64_t pad_index(int64_t i, int64_t n, bool reflect) {
  if (reflect) {
    if (i < 0) return -i;
    if (i >= n) return 2 * (n - 1) - i;
    return i;
  }
  return std::min(std::max<int64_t>(i, 0), n - 1);
}

// dst[x] = sum_t taps[t] * src[x + t], x < n (src has n + 2r values)
CPR_ALWAYS_INLINE void conv_row_body(const float* __restrict src, const float* __restrict taps,
                                     int64_t n_taps, float* __restrict dst, int64_t n) {
  std::fill(dst, dst + n, 0.0f);
  for (int64_t t = 0; t < n_taps; ++t) {
    const float w = taps[t];
    const float* s = src + t;
    for (int64_t x = 0; x < n; ++x) dst[x] += w * s[x];
  }
}
CPR_CPU_CLONES(conv_row, (const float* src, const float* taps, int64_t n_taps, float* dst, int64_t n),
               (src, taps, n_taps, dst, n))

// dst[x] = sum_t taps[t] * rows[t][x]
CPR_ALWAYS_INLINE void conv_col_body(const float* const* rows, const float* __restrict taps,
                                     int64_t n_taps, float* __restrict dst, int64_t n) {
  std::fill(dst, dst + n, 0.0f);
  for (int64_t t = 0; t < n_taps; ++t) {
    const float w = taps[t];
    const float* __restrict s = rows[t];
    for (int64_t x = 0; x < n; ++x) dst[x] += w * s[x];
  }
}
CPR_CPU_CLONES(conv_col,
               (const float* const* rows, const float* taps, int64_t n_taps, float* dst, int64_t n),
               (rows, taps, n_taps, dst, n))

// Monotone float -> uint32 key (a < b <=> key(a) < key(b) for non-NaN values).
inline uint32_t ordered_key(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Sum of the t largest values of v (1 <= t <= n), accumulated in double. A 2048-bin histogram of
// the keys' top bits finds the bin holding the t-th largest value; values above it are summed
// directly and only that bin's values are partially sorted.
float top_sum(const float* v, int64_t n, int64_t t, std::vector<float>& scratch) {
  constexpr int kShift = 21;  // 32 - 11 bits
  std::vector<int64_t> hist(size_t{1} << (32 - kShift), 0);
  for (int64_t i = 0; i < n; ++i) ++hist[ordered_key(v[i]) >> kShift];
  int64_t above = 0;
  uint32_t bin = static_cast<uint32_t>(hist.size() - 1);
  for (; bin > 0; --bin) {
    if (above + hist[bin] >= t) break;
    above += hist[bin];
  }
  double s = 0.0;
  scratch.clear();
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t b = ordered_key(v[i]) >> kShift;
    if (b > bin)
      s += v[i];
    else if (b == bin)
      scratch.push_back(v[i]);
  }
  const int64_t need = t - above;  // 1 <= need <= scratch.size()
  std::nth_element(scratch.begin(), scratch.begin() + (need - 1), scratch.end(), std::greater<float>());
  for (int64_t i = 0; i < need; ++i) s += scratch[static_cast<size_t>(i)];
  return static_cast<float>(s);
}

}  // namespace

void postprocess(const MapView* maps, int64_t n_maps, int64_t batch, const float* foreground,
                 int64_t out_size, float sigma, int64_t top_t, float* anomaly_map, float* score) {
  const int64_t h0 = maps[0].height, w0 = maps[0].width, S = out_size, SS = S * S;
  std::vector<Axis> ay(static_cast<size_t>(n_maps)), ax(static_cast<size_t>(n_maps));
  for (int64_t m = 1; m < n_maps; ++m) {
    ay[static_cast<size_t>(m)] = linear_axis(maps[m].height, h0);
    ax[static_cast<size_t>(m)] = linear_axis(maps[m].width, w0);
  }
  const Axis up_y = linear_axis(h0, S), up_x = linear_axis(w0, S);
  // Gaussian taps, radius ceil(4 sigma)
  const bool blur = sigma > 0.0f;
  const int64_t radius = blur ? static_cast<int64_t>(std::ceil(4.0 * static_cast<double>(sigma))) : 0;
  std::vector<float> taps(static_cast<size_t>(2 * radius + 1), 1.0f);
  if (blur) {
    std::vector<double> g(taps.size());
    double total = 0.0;
    for (int64_t i = -radius; i <= radius; ++i) {
      const double z = static_cast<double>(i) / static_cast<double>(sigma);
      g[static_cast<size_t>(i + radius)] = std::exp(-0.5 * z * z);
      total += g[static_cast<size_t>(i + radius)];
    }
    for (size_t i = 0; i < g.size(); ++i) taps[i] = static_cast<float>(g[i] / total);
  }
  const bool reflect = S > radius;  // torch 'reflect' needs pad < size; else 'replicate'
  const int64_t n_taps = 2 * radius + 1;

  std::vector<float> fused(static_cast<size_t>(batch * h0 * w0));
  std::vector<float> full(static_cast<size_t>(blur ? batch * SS : 0));
  float* up = blur ? full.data() : anomaly_map;  // upsampled map (blur input)
  const int64_t fused_rows = batch * h0, out_rows = batch * S;
  // threads past ~0.1 ms of work (one 320 x 320 image: ~0.9 ms on one core)
  const bool parallel = batch * SS > (1 << 14);
#pragma omp parallel if (parallel)
  {
    std::vector<float> row(static_cast<size_t>(std::max(w0, S + 2 * radius)));
    std::vector<const float*> col(static_cast<size_t>(n_taps));
    // 1-2: fuse the scales into the finest grid, times the foreground
#pragma omp for schedule(static)
    for (int64_t i = 0; i < fused_rows; ++i) {
      const int64_t b = i / h0, y = i % h0;
      float* dst = fused.data() + i * w0;
      std::copy(maps[0].data + i * w0, maps[0].data + (i + 1) * w0, dst);
      for (int64_t m = 1; m < n_maps; ++m) {
        const MapView& mv = maps[m];
        resize_row(mv.data + b * mv.height * mv.width, mv.width, ay[static_cast<size_t>(m)],
                   ax[static_cast<size_t>(m)], y, w0, row.data());
        for (int64_t x = 0; x < w0; ++x) dst[x] = dst[x] + row[static_cast<size_t>(x)];
      }
      if (foreground) {
        const float* fg = foreground + i * w0;
        for (int64_t x = 0; x < w0; ++x) dst[x] = dst[x] * fg[x];
      }
    }
    // 3: upsample to S x S, then the horizontal blur pass (row by row, in place via `row`)
#pragma omp for schedule(static)
    for (int64_t i = 0; i < out_rows; ++i) {
      const int64_t b = i / S, y = i % S;
      float* dst = up + i * S;
      resize_row(fused.data() + b * h0 * w0, w0, up_y, up_x, y, S, dst);
      if (blur) {
        float* padded = row.data();
        for (int64_t x = -radius; x < S + radius; ++x)
          padded[static_cast<size_t>(x + radius)] = dst[pad_index(x, S, reflect)];
        conv_row(padded, taps.data(), n_taps, dst, S);
      }
    }
    // 4: vertical blur pass into the output
    if (blur) {
#pragma omp for schedule(static)
      for (int64_t i = 0; i < out_rows; ++i) {
        const int64_t b = i / S, y = i % S;
        for (int64_t t = 0; t < n_taps; ++t)
          col[static_cast<size_t>(t)] = up + (b * S + pad_index(y + t - radius, S, reflect)) * S;
        conv_col(col.data(), taps.data(), n_taps, anomaly_map + i * S, S);
      }
    }
  }
  // 5: image score
  const int64_t t = std::min(top_t, SS);
#pragma omp parallel for schedule(static) if (batch > 1 && parallel)
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<float> scratch;
    score[b] = top_sum(anomaly_map + b * SS, SS, t, scratch);
  }
}

}  // namespace cpu
}  // namespace cpr
