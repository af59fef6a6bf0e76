// codebook_histogram, CUDA: squared-norm kernel, one thread per pixel for the argmin, one block per
// (image, grid cell) for the histogram (shared-memory counts).
#include "cuda/helpers.cuh"
#include "cpr/ops.h"

namespace cpr {
namespace cuda {
namespace {

__global__ void center_norms_kernel(const float* __restrict__ centers, int64_t M, int64_t C,
                                    float* __restrict__ norms) {
  CPR_GRID_STRIDE(m, M) {
    float s = 0.0f;
    for (int64_t c = 0; c < C; ++c) s += centers[m * C + c] * centers[m * C + c];
    norms[m] = s;
  }
}

// ids = argmin_m ||c_m||^2 - 2 x.c_m, the lowest m on ties (as torch.argmin)
__global__ void assign_kernel(const float* __restrict__ features, int64_t batch, int64_t C,
                              int64_t HW, const float* __restrict__ centers,
                              const float* __restrict__ norms, int64_t M,
                              int64_t* __restrict__ ids) {
  CPR_GRID_STRIDE(p, batch * HW) {
    const int64_t b = p / HW, hw = p % HW;
    const float* f = features + b * C * HW + hw;
    float best = INFINITY;
    int64_t arg = 0;
    for (int64_t m = 0; m < M; ++m) {
      const float* c = centers + m * C;
      float dot = 0.0f;
      for (int64_t k = 0; k < C; ++k) dot += c[k] * f[k * HW];
      const float d = norms[m] - 2.0f * dot;
      if (d < best || m == 0) {
        best = d;
        arg = m;
      }
    }
    ids[p] = arg;
  }
}

// one block per (image, cell): counts of id + 1 over the cell, padding (outside the map) in bin 0
__global__ void histogram_kernel(const int64_t* __restrict__ ids, int64_t H, int64_t W,
                                 int64_t grid, int64_t M, float* __restrict__ hists) {
  extern __shared__ int counts[];
  const int64_t cell = blockIdx.x, cells = grid * grid;
  const int64_t b = cell / cells, gy = (cell % cells) / grid, gx = cell % grid;
  const int64_t bh = (H + grid - 1) / grid, bw = (W + grid - 1) / grid;
  for (int64_t i = threadIdx.x; i <= M; i += blockDim.x) counts[i] = 0;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < bh * bw; i += blockDim.x) {
    const int64_t y = gy * bh + i / bw, x = gx * bw + i % bw;
    const int64_t bin = (y < H && x < W) ? ids[(b * H + y) * W + x] + 1 : 0;
    atomicAdd(&counts[bin], 1);
  }
  __syncthreads();
  const float area = static_cast<float>(bh * bw);
  for (int64_t i = threadIdx.x; i <= M; i += blockDim.x)
    hists[cell * (M + 1) + i] = static_cast<float>(counts[i]) / area;
}

}  // namespace

void codebook_histogram(const float* features, int64_t batch, int64_t channels, int64_t height,
                        int64_t width, const float* centers, int64_t n_codes, int64_t grid,
                        int64_t* ids, float* hists, void* stream) {
  const size_t shared = static_cast<size_t>(n_codes + 1) * sizeof(int);
  if (shared > 48 * 1024)
    throw std::invalid_argument("codebook_histogram: the CUDA kernel takes at most 12287 centers; got " +
                                std::to_string(n_codes));
  cudaStream_t s = as_stream(stream);
  const int64_t HW = height * width;
  Scratch norms(static_cast<size_t>(n_codes) * sizeof(float), s);
  Scratch own_ids(ids ? 0 : static_cast<size_t>(batch * HW) * sizeof(int64_t), s);
  if (!ids) ids = own_ids.as<int64_t>();
  center_norms_kernel<<<grid_for(n_codes), kThreads, 0, s>>>(centers, n_codes, channels,
                                                              norms.as<float>());
  CPR_CUDA_LAUNCH_CHECK("codebook_histogram");
  assign_kernel<<<grid_for(batch * HW), kThreads, 0, s>>>(features, batch, channels, HW, centers,
                                                          norms.as<float>(), n_codes, ids);
  CPR_CUDA_LAUNCH_CHECK("codebook_histogram");
  histogram_kernel<<<static_cast<unsigned>(batch * grid * grid), kThreads, shared, s>>>(
      ids, height, width, grid, n_codes, hists);
  CPR_CUDA_LAUNCH_CHECK("codebook_histogram");
}

}  // namespace cuda
}  // namespace cpr
