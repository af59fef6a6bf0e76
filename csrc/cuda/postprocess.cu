// postprocess, CUDA: fuse (one thread per fine pixel), upsample (one thread per output pixel),
// separable blur (rows, then columns; taps computed on the device, so that nothing comes from host
// memory and the call can be captured in a CUDA graph), and one block per image for the top-T sum
// (radix select on ordered float keys, then a block sum in double).
#include <cmath>
#include <string>

#include "cuda/helpers.cuh"
#include "cpr/ops.h"

namespace cpr {
namespace cuda {
namespace {

constexpr int kMaxMaps = 8;

struct Maps {
  const float* data[kMaxMaps];
  int64_t height[kMaxMaps];
  int64_t width[kMaxMaps];
  int n;
};

// Bilinear source taps of output index o (align_corners=False), as torch computes them in float.
struct Taps {
  int64_t i0, i1;
  float l0, l1;
};
__device__ __forceinline__ Taps linear_taps(int64_t in, int64_t out, int64_t o) {
  Taps t;
  if (in == out) {
    t.i0 = t.i1 = o;
    t.l0 = 1.0f;
    t.l1 = 0.0f;
    return t;
  }
  const float scale = __fdiv_rn(static_cast<float>(in), static_cast<float>(out));
  float src = __fsub_rn(__fmul_rn(scale, __fadd_rn(static_cast<float>(o), 0.5f)), 0.5f);
  if (src < 0.0f) src = 0.0f;
  t.i0 = min(static_cast<int64_t>(floorf(src)), in - 1);
  t.l1 = fminf(fmaxf(__fsub_rn(src, static_cast<float>(t.i0)), 0.0f), 1.0f);
  t.i1 = t.i0 + (t.i0 < in - 1 ? 1 : 0);
  t.l0 = __fsub_rn(1.0f, t.l1);
  return t;
}

__device__ __forceinline__ float sample(const float* map, int64_t h, int64_t w, int64_t H,
                                        int64_t W, int64_t y, int64_t x) {
  const Taps ty = linear_taps(h, H, y), tx = linear_taps(w, W, x);
  const float* r0 = map + ty.i0 * w;
  const float* r1 = map + ty.i1 * w;
  const float t0 = __fadd_rn(__fmul_rn(r0[tx.i0], tx.l0), __fmul_rn(r0[tx.i1], tx.l1));
  const float t1 = __fadd_rn(__fmul_rn(r1[tx.i0], tx.l0), __fmul_rn(r1[tx.i1], tx.l1));
  return __fadd_rn(__fmul_rn(t0, ty.l0), __fmul_rn(t1, ty.l1));
}

__global__ void fuse_kernel(Maps maps, int64_t batch, const float* __restrict__ foreground,
                            float* __restrict__ fused) {
  const int64_t h0 = maps.height[0], w0 = maps.width[0], hw = h0 * w0;
  CPR_GRID_STRIDE(p, batch * hw) {
    const int64_t b = p / hw, y = (p % hw) / w0, x = p % w0;
    float v = maps.data[0][p];
    for (int m = 1; m < maps.n; ++m) {
      const int64_t h = maps.height[m], w = maps.width[m];
      v = __fadd_rn(v, sample(maps.data[m] + b * h * w, h, w, h0, w0, y, x));
    }
    if (foreground) v = __fmul_rn(v, foreground[p]);
    fused[p] = v;
  }
}

__global__ void upsample_kernel(const float* __restrict__ fused, int64_t batch, int64_t h0,
                                int64_t w0, int64_t S, float* __restrict__ out) {
  CPR_GRID_STRIDE(p, batch * S * S) {
    const int64_t b = p / (S * S), y = (p % (S * S)) / S, x = p % S;
    out[p] = sample(fused + b * h0 * w0, h0, w0, S, S, y, x);
  }
}

__device__ __forceinline__ int64_t pad_index(int64_t i, int64_t n, bool reflect) {
  if (reflect) return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i);
  return min(max(i, int64_t(0)), n - 1);
}

// vertical = false: along x; true: along y. Padded reads, taps in global memory.
__global__ void blur_kernel(const float* __restrict__ src, int64_t batch, int64_t S,
                            const float* __restrict__ taps, int64_t radius, bool reflect,
                            bool vertical, float* __restrict__ dst) {
  CPR_GRID_STRIDE(p, batch * S * S) {
    const int64_t b = p / (S * S), y = (p % (S * S)) / S, x = p % S;
    const float* img = src + b * S * S;
    float acc = 0.0f;
    for (int64_t t = -radius; t <= radius; ++t) {
      const float v = vertical ? img[pad_index(y + t, S, reflect) * S + x]
                               : img[y * S + pad_index(x + t, S, reflect)];
      acc += taps[t + radius] * v;
    }
    dst[p] = acc;
  }
}

// taps[i] = normalized exp(-(i - radius)^2 / (2 sigma^2)), i <= 2 radius, computed on the device
// so that the call enqueues no host memory (CUDA graph capture): one block, exp in double, summed
// in the order of the CPU kernel by thread 0. Shared memory: (2 radius + 1) doubles.
__global__ void gaussian_taps_kernel(int64_t radius, float sigma, float* __restrict__ taps) {
  extern __shared__ double g[];
  const int64_t n = 2 * radius + 1;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const double z = static_cast<double>(i - radius) / static_cast<double>(sigma);
    g[i] = exp(-0.5 * z * z);
  }
  __syncthreads();
  __shared__ double total;
  if (threadIdx.x == 0) {
    double t = 0.0;
    for (int64_t i = 0; i < n; ++i) t += g[i];
    total = t;
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) taps[i] = static_cast<float>(g[i] / total);
}

// score[b] = sum of the T largest values of map b: 4 rounds of 8-bit radix select on ordered keys
// find the T-th largest key; then sum(v > kth) + (T - count(v > kth)) * kth, in double.
__global__ void top_sum_kernel(const float* __restrict__ maps, int64_t n, int64_t T,
                               float* __restrict__ score) {
  __shared__ unsigned int hist[256];
  __shared__ uint32_t prefix_s;
  __shared__ int64_t remaining_s;
  __shared__ double partial[32];
  const float* v = maps + blockIdx.x * n;
  uint32_t prefix = 0, mask = 0;
  int64_t remaining = T;  // rank (1-based, from the top) still to find inside the prefix
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const uint32_t k = ordered_key(v[i]);
      if ((k & mask) == prefix) atomicAdd(&hist[(k >> shift) & 0xffu], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int64_t above = 0;
      int digit = 255;
      for (; digit > 0; --digit) {
        if (above + hist[digit] >= remaining) break;
        above += hist[digit];
      }
      prefix_s = prefix | (static_cast<uint32_t>(digit) << shift);
      remaining_s = remaining - above;
    }
    __syncthreads();
    prefix = prefix_s;
    remaining = remaining_s;
    mask |= 0xffu << shift;
  }
  // prefix is now the key of the T-th largest value
  double sum = 0.0;
  int64_t greater = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const uint32_t k = ordered_key(v[i]);
    if (k > prefix) {
      sum += v[i];
      ++greater;
    }
  }
  sum = block_sum(sum, partial);
  const double count = block_sum(static_cast<double>(greater), partial);
  if (threadIdx.x == 0)
    score[blockIdx.x] = static_cast<float>(sum + static_cast<double>(T - static_cast<int64_t>(count)) *
                                                     static_cast<double>(key_to_float(prefix)));
}

}  // namespace

void postprocess(const MapView* maps, int64_t n_maps, int64_t batch, const float* foreground,
                 int64_t out_size, float sigma, int64_t top_t, float* anomaly_map, float* score,
                 void* stream) {
  if (n_maps > kMaxMaps)
    throw std::invalid_argument("postprocess: the CUDA kernels take at most 8 maps; got " +
                                std::to_string(n_maps));
  cudaStream_t s = as_stream(stream);
  Maps m{};
  m.n = static_cast<int>(n_maps);
  for (int64_t i = 0; i < n_maps; ++i) {
    m.data[i] = maps[i].data;
    m.height[i] = maps[i].height;
    m.width[i] = maps[i].width;
  }
  const int64_t h0 = maps[0].height, w0 = maps[0].width, S = out_size, SS = S * S;
  const bool blur = sigma > 0.0f;
  const int64_t radius = blur ? static_cast<int64_t>(std::ceil(4.0 * static_cast<double>(sigma))) : 0;
  const size_t taps_shared = static_cast<size_t>(2 * radius + 1) * sizeof(double);
  if (taps_shared > 48 * 1024)  // 6144 doubles of shared memory for gaussian_taps_kernel
    throw std::invalid_argument("postprocess: the CUDA kernels take a blur radius ceil(4 sigma) <= 3071; "
                                "got sigma " + std::to_string(sigma));
  Scratch fused(static_cast<size_t>(batch * h0 * w0) * sizeof(float), s);
  Scratch full(blur ? static_cast<size_t>(2 * batch * SS) * sizeof(float) : 0, s);
  Scratch taps(blur ? static_cast<size_t>(2 * radius + 1) * sizeof(float) : 0, s);

  fuse_kernel<<<grid_for(batch * h0 * w0), kThreads, 0, s>>>(m, batch, foreground, fused.as<float>());
  CPR_CUDA_LAUNCH_CHECK("postprocess");
  float* up = blur ? full.as<float>() : anomaly_map;
  upsample_kernel<<<grid_for(batch * SS), kThreads, 0, s>>>(fused.as<float>(), batch, h0, w0, S, up);
  CPR_CUDA_LAUNCH_CHECK("postprocess");
  if (blur) {
    gaussian_taps_kernel<<<1, kThreads, taps_shared, s>>>(radius, sigma, taps.as<float>());
    CPR_CUDA_LAUNCH_CHECK("postprocess");
    const bool reflect = S > radius;
    float* rows = full.as<float>() + batch * SS;
    blur_kernel<<<grid_for(batch * SS), kThreads, 0, s>>>(up, batch, S, taps.as<float>(), radius,
                                                          reflect, false, rows);
    CPR_CUDA_LAUNCH_CHECK("postprocess");
    blur_kernel<<<grid_for(batch * SS), kThreads, 0, s>>>(rows, batch, S, taps.as<float>(), radius,
                                                          reflect, true, anomaly_map);
    CPR_CUDA_LAUNCH_CHECK("postprocess");
  }
  top_sum_kernel<<<static_cast<unsigned>(batch), kThreads, 0, s>>>(anomaly_map, SS,
                                                                   std::min(top_t, SS), score);
  CPR_CUDA_LAUNCH_CHECK("postprocess");
}

}  // namespace cuda
}  // namespace cpr
