// nn_search, CPU: location-restricted nearest-neighbour search (OpenMP over row blocks).
//
// Work item = (scale, image b, rows [y0, y1)). For each retrieved reference j the item
// correlates the query rows with the reference rows plane by plane,
//     acc[o][y][x] += q[d][y][x] * r[d][y + dy][x + dx]     for every offset o = (dy, dx),
// only over the (y, x) whose neighbour (y + dy, x + dx) lies inside the map, so outside positions
// never enter the max. The loops run along x (contiguous) and vectorize; acc holds r*r offsets x
// rows x W floats, sized to stay in L1/L2. Reference rows are read in place from the bank
// (float16 rows are converted into a small buffer first). Then best = max over o and j, out = 1 -
// best.
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "common/half.h"
#include "cpr/ops.h"
#include "cpu/simd.h"

#if CPR_HAS_AVX2_CLONES
#include <immintrin.h>  // F16C conversion in the AVX2 copy only
#endif

namespace cpr {
namespace cpu {
namespace {

// Measured on a 2-core EPYC (benchmarks/run_ops.py): 24..200 KiB accumulators and 2..16 fused planes
// were tried; 48 KiB and 4 planes were the fastest (8 and 16 planes were slower).
constexpr int64_t kAccBytes = 48 * 1024;  // budget for one item's accumulators
constexpr int64_t kPlanesPerStep = 4;     // query/reference planes fused per accumulator pass

struct Item {
  const NNSearchScale* scale;
  int64_t b, y0, y1;
};

// a[x] += sum_{i < kN} q_i[x] * r_i[x] for x in [xa, xb), with q_i = q + i*qs, r_i = r + i*rs (r is
// already shifted by dx). Vectorizes along x; the plane loop is unrolled.
template <int kN>
CPR_ALWAYS_INLINE void fma_rows(float* __restrict a, const float* __restrict q, int64_t qs,
                                const float* __restrict r, int64_t rs, int64_t xa, int64_t xb) {
  for (int64_t x = xa; x < xb; ++x) {
    float s = q[x] * r[x];
#pragma GCC unroll 16
    for (int i = 1; i < kN; ++i) s += q[x + i * qs] * r[x + i * rs];
    a[x] += s;
  }
}

// One step over kN consecutive planes: every offset of the window, every row of the item.
template <int kN>
CPR_ALWAYS_INLINE void correlate_step(float* acc, const float* q, int64_t q_plane,
                                      const float* r, int64_t r_plane, int64_t ry0, int64_t H,
                                      int64_t W, int64_t R, int64_t y0, int64_t y1) {
  const int64_t p = R / 2, rows = y1 - y0;
  for (int64_t dy = -p; dy <= p; ++dy) {
    const int64_t ya = std::max(y0, -dy), yb = std::min(y1, H - dy);
    for (int64_t y = ya; y < yb; ++y) {
      const float* qrow = q + (y - y0) * W;
      const float* rrow = r + (y + dy - ry0) * W;
      for (int64_t dx = -p; dx <= p; ++dx) {
        float* a = acc + (((dy + p) * R + (dx + p)) * rows + (y - y0)) * W;
        // valid x: 0 <= x + dx < W; r is indexed as rrow[x + dx] through the shifted pointer
        fma_rows<kN>(a, qrow, q_plane, rrow + dx, r_plane, std::max<int64_t>(0, -dx),
                     std::min(W, W - dx));
      }
    }
  }
}

// Correlate the item's query rows with one reference map over all D planes into acc.
// BankT = float or uint16_t (IEEE half bits); `buf` holds converted half rows (kPlanesPerStep
// planes x (rows + 2p) x W floats).
template <typename BankT, typename HalfToFloat>
CPR_ALWAYS_INLINE void correlate_body(const float* query, const BankT* ref, int64_t D, int64_t H,
                                      int64_t W, int64_t R, int64_t y0, int64_t y1, float* acc,
                                      float* buf) {
  const int64_t p = R / 2, HW = H * W;
  const int64_t ry0 = std::max<int64_t>(0, y0 - p), ry1 = std::min(H, y1 + p);
  const int64_t ref_rows = (ry1 - ry0) * W;
  std::fill(acc, acc + R * R * (y1 - y0) * W, 0.0f);
  const float* q = query + y0 * W;
  int64_t d = 0;
  for (; d + kPlanesPerStep <= D; d += kPlanesPerStep) {
    const float* r;
    int64_t r_plane;
    if constexpr (sizeof(BankT) == 2) {
      for (int64_t i = 0; i < kPlanesPerStep; ++i)
        HalfToFloat::run(reinterpret_cast<const uint16_t*>(ref) + (d + i) * HW + ry0 * W,
                         buf + i * ref_rows, ref_rows);
      r = buf;
      r_plane = ref_rows;
    } else {
      r = reinterpret_cast<const float*>(ref) + d * HW + ry0 * W;
      r_plane = HW;
    }
    correlate_step<kPlanesPerStep>(acc, q + d * HW, HW, r, r_plane, ry0, H, W, R, y0, y1);
  }
  for (; d < D; ++d) {
    const float* r;
    if constexpr (sizeof(BankT) == 2) {
      HalfToFloat::run(reinterpret_cast<const uint16_t*>(ref) + d * HW + ry0 * W, buf, ref_rows);
      r = buf;
    } else {
      r = reinterpret_cast<const float*>(ref) + d * HW + ry0 * W;
    }
    correlate_step<1>(acc, q + d * HW, HW, r, HW, ry0, H, W, R, y0, y1);
  }
}

// float16 -> float32 of a run of bank values: portable bit manipulation, or F16C in the AVX2 copy.
struct HalfPortable {
  static CPR_ALWAYS_INLINE void run(const uint16_t* src, float* dst, int64_t n) {
    detail::half_to_float_n(src, dst, n);
  }
};
#if CPR_HAS_AVX2_CLONES
struct HalfF16C {
  // not inlined (an AVX2 function cannot be inlined into the generic body); called per plane
  static CPR_AVX2_TARGET void run(const uint16_t* src, float* dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
    for (; i < n; ++i) dst[i] = detail::half_to_float(src[i]);
  }
};
#endif

CPR_ALWAYS_INLINE void correlate_f32_body(const float* query, const float* ref, int64_t D,
                                          int64_t H, int64_t W, int64_t R, int64_t y0, int64_t y1,
                                          float* acc, float* buf) {
  correlate_body<float, HalfPortable>(query, ref, D, H, W, R, y0, y1, acc, buf);
}
CPR_CPU_CLONES(correlate_f32,
               (const float* query, const float* ref, int64_t D, int64_t H, int64_t W, int64_t R,
                int64_t y0, int64_t y1, float* acc, float* buf),
               (query, ref, D, H, W, R, y0, y1, acc, buf))

// the float16 copies differ in the converter, so they are spelled out
void correlate_f16_portable(const float* query, const uint16_t* ref, int64_t D, int64_t H, int64_t W,
                            int64_t R, int64_t y0, int64_t y1, float* acc, float* buf) {
  correlate_body<uint16_t, HalfPortable>(query, ref, D, H, W, R, y0, y1, acc, buf);
}
#if CPR_HAS_AVX2_CLONES
CPR_AVX2_TARGET void correlate_f16_avx2(const float* query, const uint16_t* ref, int64_t D, int64_t H,
                                        int64_t W, int64_t R, int64_t y0, int64_t y1, float* acc,
                                        float* buf) {
  correlate_body<uint16_t, HalfF16C>(query, ref, D, H, W, R, y0, y1, acc, buf);
}
#endif
void correlate_f16(const float* query, const uint16_t* ref, int64_t D, int64_t H, int64_t W, int64_t R,
                   int64_t y0, int64_t y1, float* acc, float* buf) {
#if CPR_HAS_AVX2_CLONES
  if (use_avx2()) return correlate_f16_avx2(query, ref, D, H, W, R, y0, y1, acc, buf);
#endif
  correlate_f16_portable(query, ref, D, H, W, R, y0, y1, acc, buf);
}

// best[y][x] = max(best, acc[o][y][x]) over the offsets whose neighbour is inside the map.
void reduce_max(const float* acc, int64_t H, int64_t W, int64_t R, int64_t y0, int64_t y1,
                float* best) {
  const int64_t p = R / 2, rows = y1 - y0;
  for (int64_t dy = -p; dy <= p; ++dy) {
    const int64_t ya = std::max(y0, -dy), yb = std::min(y1, H - dy);
    for (int64_t dx = -p; dx <= p; ++dx) {
      const float* a = acc + ((dy + p) * R + (dx + p)) * rows * W;
      const int64_t xa = std::max<int64_t>(0, -dx), xb = std::min(W, W - dx);
      for (int64_t y = ya; y < yb; ++y) {
        const float* ar = a + (y - y0) * W;
        float* br = best + (y - y0) * W;
        for (int64_t x = xa; x < xb; ++x) br[x] = std::max(br[x], ar[x]);
      }
    }
  }
}

void run_item(const Item& it, const int64_t* index, int64_t k, std::vector<float>& acc,
              std::vector<float>& buf, std::vector<float>& best) {
  const NNSearchScale& s = *it.scale;
  const int64_t D = s.dim, H = s.height, W = s.width, R = s.window, HW = H * W;
  const int64_t rows = it.y1 - it.y0, p = R / 2;
  acc.resize(static_cast<size_t>(R * R * rows * W));
  best.assign(static_cast<size_t>(rows * W), -std::numeric_limits<float>::infinity());
  if (s.bank_dtype == DType::kFloat16)
    buf.resize(static_cast<size_t>(kPlanesPerStep * (rows + 2 * p) * W));
  const float* query = s.query + it.b * D * HW;
  for (int64_t j = 0; j < k; ++j) {
    const int64_t n = index[it.b * k + j];
    if (s.bank_dtype == DType::kFloat16) {
      const uint16_t* ref = static_cast<const uint16_t*>(s.bank) + n * D * HW;
      correlate_f16(query, ref, D, H, W, R, it.y0, it.y1, acc.data(), buf.data());
    } else {
      const float* ref = static_cast<const float*>(s.bank) + n * D * HW;
      correlate_f32(query, ref, D, H, W, R, it.y0, it.y1, acc.data(), buf.data());
    }
    reduce_max(acc.data(), H, W, R, it.y0, it.y1, best.data());
  }
  float* out = s.out + it.b * HW + it.y0 * W;
  for (int64_t i = 0; i < rows * W; ++i) out[i] = 1.0f - best[static_cast<size_t>(i)];
}

}  // namespace

void nn_search(const NNSearchScale* scales, int64_t n_scales, int64_t batch, const int64_t* index,
               int64_t k) {
  std::vector<Item> items;
  int64_t macs = 0;  // multiply-adds of the whole call, to skip threads for tiny inputs
  for (int64_t si = 0; si < n_scales; ++si) {
    const NNSearchScale& s = scales[si];
    macs += batch * k * s.dim * s.height * s.width * s.window * s.window;
    const int64_t per_row = s.window * s.window * s.width * static_cast<int64_t>(sizeof(float));
    const int64_t rows = std::max<int64_t>(1, std::min(s.height, kAccBytes / per_row));
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t y0 = 0; y0 < s.height; y0 += rows)
        items.push_back({&s, b, y0, std::min(s.height, y0 + rows)});
  }
  const int64_t n_items = static_cast<int64_t>(items.size());
#pragma omp parallel if (n_items > 1 && macs > (1 << 20))
  {
    std::vector<float> acc, buf, best;  // per-thread scratch, reused across items
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < n_items; ++i) run_item(items[static_cast<size_t>(i)], index, k, acc, buf, best);
  }
}

}  // namespace cpu
}  // namespace cpr
