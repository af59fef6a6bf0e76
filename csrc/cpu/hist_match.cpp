// hist_match, CPU: robust block-wise KL distances (OpenMP over chunks of references).
//
// dist[b][n] = sum of the `kept` smallest per-block KL(q + eps || r + eps) with
// KL = sum_m q log q - sum_m q log r, as the reference computes it. log(r + eps) of a chunk of
// references is computed once (vectorized polynomial log) and reused by every query; references
// are then scored 8 at a time, one SIMD lane each, with a branch-free selection network.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/half.h"
#include "cpr/ops.h"
#include "cpu/simd.h"

namespace cpr {
namespace cpu {
namespace {

// Natural logarithm for positive, normal, finite x (Cephes logf scheme: x = m 2^e with m in
// [sqrt(1/2), sqrt(2)), a degree-9 polynomial in m - 1; about 1 ulp). Integer bit work only, no
// branches or selects, so loops over it vectorize.
CPR_ALWAYS_INLINE float log_positive(float x) {
  const uint32_t u = detail::float_to_bits(x);
  const uint32_t mant = u & 0x007fffffu;
  const uint32_t low = mant < 0x003504f3u ? 1u : 0u;  // mantissa of sqrt(1/2): m < sqrt(1/2)
  const int32_t e = static_cast<int32_t>(u >> 23) - 126 - static_cast<int32_t>(low);
  // m in [0.5, 1) scaled by 2 when low: exponent field 126 + low
  const float m = detail::bits_to_float(mant | (0x3f000000u + (low << 23))) - 1.0f;
  const float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  const float fe = static_cast<float>(e);
  y += fe * -2.12194440e-4f;
  y += -0.5f * z;
  return (m + y) + fe * 0.693359375f;
}

// true unless v is positive, normal and finite (the domain of log_positive)
CPR_ALWAYS_INLINE uint32_t outside_log_domain(float v) {
  return (detail::float_to_bits(v) - 0x00800000u) >= 0x7f000000u ? 1u : 0u;
}

// out[i] = log(in[i] + eps); values outside the fast path's domain go through std::log.
CPR_ALWAYS_INLINE void log_eps_body(const float* __restrict in, float* __restrict out, int64_t n) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float v = in[i] + kKlEps;
    bad |= outside_log_domain(v);
    out[i] = log_positive(v);
  }
  if (bad) {
    for (int64_t i = 0; i < n; ++i) {
      const float v = in[i] + kKlEps;
      if (outside_log_domain(v)) out[i] = std::log(v);
    }
  }
}
CPR_CPU_CLONES(log_eps, (const float* in, float* out, int64_t n), (in, out, n))

constexpr int kLanes = 8;              // references scored together, one SIMD lane each
constexpr int64_t kGroupsPerTask = 4;  // OpenMP work item: 32 references

// Eight lanes as one value (GCC/Clang vector extension: two SSE registers on the baseline build,
// one AVX register in the AVX2 copies). Only float alignment is assumed and it may alias floats, so
// Lanes* can point into float buffers.
typedef float Lanes
    __attribute__((vector_size(kLanes * sizeof(float)), aligned(alignof(float)), may_alias));

CPR_ALWAYS_INLINE Lanes load_lanes(const float* p) {
  Lanes v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// v[s] (lanes) = qent[s] - sum_m qe[s][m] * lt[s*bins + m] (lanes), then per lane the sum of the
// `kept` smallest v[.], written to dist[l] for l < nl. Selection is a branch-free min/max
// insertion network across the lanes:
// - kept <= blocks - kept: keep the `kept` smallest in ascending order and sum them;
// - otherwise keep the (blocks - kept + 1) largest; their minimum t is the kept-th smallest value
//   and sum = (sum of v < t) + (kept - #{v < t}) * t  (no cancellation, ties counted once).
CPR_ALWAYS_INLINE void score_group_body(const float* __restrict qe, const float* __restrict qent,
                                        const float* __restrict lt, int64_t nl, int64_t blocks,
                                        int64_t bins, int64_t kept, Lanes* __restrict v,
                                        Lanes* __restrict net, float* __restrict dist) {
  for (int64_t s = 0; s < blocks; ++s) {
    Lanes acc = {};
    for (int64_t m = 0; m < bins; ++m) acc += qe[s * bins + m] * load_lanes(lt + (s * bins + m) * kLanes);
    v[s] = qent[s] - acc;
  }
  Lanes sum = {};
  if (kept <= blocks - kept) {
    const Lanes inf = Lanes{} + __builtin_inff();
    for (int64_t i = 0; i < kept; ++i) net[i] = inf;
    for (int64_t s = 0; s < blocks; ++s) {
      Lanes x = v[s];
      for (int64_t i = 0; i < kept; ++i) {
        const Lanes n = net[i];
        net[i] = x < n ? x : n;
        x = x < n ? n : x;
      }
    }
    for (int64_t i = 0; i < kept; ++i) sum += net[i];
  } else {
    const int64_t w = blocks - kept + 1;
    const Lanes minus_inf = Lanes{} - __builtin_inff();
    for (int64_t i = 0; i < w; ++i) net[i] = minus_inf;
    for (int64_t s = 0; s < blocks; ++s) {
      Lanes x = v[s];
      for (int64_t i = 0; i < w; ++i) {
        const Lanes n = net[i];
        net[i] = x > n ? x : n;
        x = x > n ? n : x;
      }
    }
    const Lanes t = net[w - 1], zero = Lanes{}, one = zero + 1.0f;
    Lanes below = {}, count = {};
    for (int64_t s = 0; s < blocks; ++s) {
      below += v[s] < t ? v[s] : zero;
      count += v[s] < t ? one : zero;
    }
    sum = below + (static_cast<float>(kept) - count) * t;
  }
  for (int64_t l = 0; l < nl; ++l) dist[l] = sum[l];
}

// One work item: groups [g0, g1) of kLanes references, every query. log(r + eps) runs on the
// references' natural layout (contiguous), then 8 x 8 tiles are transposed into lanes.
CPR_ALWAYS_INLINE void score_refs_body(const float* __restrict qe, const float* __restrict qent,
                                       int64_t batch, const float* __restrict refs, int64_t n_refs,
                                       int64_t blocks, int64_t bins, int64_t kept, int64_t g0,
                                       int64_t g1, float* __restrict nat, float* __restrict lt,
                                       Lanes* __restrict v, Lanes* __restrict net,
                                       float* __restrict distances) {
  const int64_t sm = blocks * bins;
  for (int64_t g = g0; g < g1; ++g) {
    const int64_t n0 = g * kLanes, nl = std::min<int64_t>(kLanes, n_refs - n0);
    log_eps_body(refs + n0 * sm, nat, nl * sm);
    for (int64_t l = nl; l < kLanes; ++l) std::copy(nat, nat + sm, nat + l * sm);  // pad lanes
    int64_t i0 = 0;
    for (; i0 + kLanes <= sm; i0 += kLanes)
      for (int64_t j = 0; j < kLanes; ++j)
        for (int64_t l = 0; l < kLanes; ++l) lt[(i0 + j) * kLanes + l] = nat[l * sm + i0 + j];
    for (int64_t i = i0; i < sm; ++i)
      for (int64_t l = 0; l < kLanes; ++l) lt[i * kLanes + l] = nat[l * sm + i];
    for (int64_t b = 0; b < batch; ++b)
      score_group_body(qe + b * sm, qent + b * blocks, lt, nl, blocks, bins, kept, v, net,
                       distances + b * n_refs + n0);
  }
}
CPR_CPU_CLONES(score_refs,
               (const float* qe, const float* qent, int64_t batch, const float* refs,
                int64_t n_refs, int64_t blocks, int64_t bins, int64_t kept, int64_t g0, int64_t g1,
                float* nat, float* lt, Lanes* v, Lanes* net, float* distances),
               (qe, qent, batch, refs, n_refs, blocks, bins, kept, g0, g1, nat, lt, v, net,
                distances))

}  // namespace

void hist_match(const float* query, int64_t batch, const float* refs, int64_t n_refs,
                int64_t blocks, int64_t bins, int64_t kept, float* distances) {
  const int64_t sm = blocks * bins;
  // q + eps and the per-block entropy sum_m q log q of every query
  std::vector<float> qe(static_cast<size_t>(batch * sm)), qlog(static_cast<size_t>(batch * sm));
  std::vector<float> qent(static_cast<size_t>(batch * blocks));
  for (int64_t i = 0; i < batch * sm; ++i) qe[static_cast<size_t>(i)] = query[i] + kKlEps;
  log_eps(query, qlog.data(), batch * sm);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t s = 0; s < blocks; ++s) {
      float acc = 0.0f;
      for (int64_t m = 0; m < bins; ++m) {
        const size_t i = static_cast<size_t>(b * sm + s * bins + m);
        acc += qe[i] * qlog[i];
      }
      qent[static_cast<size_t>(b * blocks + s)] = acc;
    }
  const int64_t n_groups = (n_refs + kLanes - 1) / kLanes;
  const int64_t n_tasks = (n_groups + kGroupsPerTask - 1) / kGroupsPerTask;
  // roughly 0.3 ns per histogram value and query: threads pay off past ~50 us of work
  const bool parallel = n_tasks > 1 && n_refs * batch * sm > (1 << 17);
#pragma omp parallel if (parallel)
  {
    std::vector<float> nat(static_cast<size_t>(sm * kLanes)), lt(static_cast<size_t>(sm * kLanes));
    std::vector<float> v(static_cast<size_t>(blocks * kLanes)), net(static_cast<size_t>(blocks * kLanes));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n_tasks; ++t)
      score_refs(qe.data(), qent.data(), batch, refs, n_refs, blocks, bins, kept,
                 t * kGroupsPerTask, std::min(n_groups, (t + 1) * kGroupsPerTask), nat.data(),
                 lt.data(), reinterpret_cast<Lanes*>(v.data()), reinterpret_cast<Lanes*>(net.data()),
                 distances);
  }
}

}  // namespace cpu
}  // namespace cpr
