// Helpers shared by the CUDA kernels (private header): error checks, grid-stride loops, stream-
// ordered scratch memory, float <-> ordered-key mapping, block-wide minimum, window dispatch.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace cpr {
namespace cuda {

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// CPR_CUDA_CHECK(cudaMemcpyAsync(...));  CPR_CUDA_LAUNCH_CHECK("nn_search") after <<<...>>>
#define CPR_CUDA_CHECK(call) ::cpr::cuda::check((call), #call)
#define CPR_CUDA_LAUNCH_CHECK(op) ::cpr::cuda::check(cudaGetLastError(), op ": kernel launch")

// for (int64_t i : grid-stride over [0, n))
#define CPR_GRID_STRIDE(i, n)                                                         \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

constexpr int kThreads = 256;

inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// Blocks for a grid-stride loop over n items (at least 1, at most 65535 * 8).
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, 65535 * 8)));
}

// Stream-ordered scratch memory, freed (stream-ordered) when it goes out of scope.
class Scratch {
 public:
  Scratch(size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes) CPR_CUDA_CHECK(cudaMallocAsync(&ptr_, bytes, stream));
  }
  ~Scratch() {
    if (ptr_) cudaFreeAsync(ptr_, stream_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
};

// Element loads of the descriptor bank: float, or IEEE half bits.
__device__ __forceinline__ float load_float(const float* p) { return *p; }
__device__ __forceinline__ float load_float(const uint16_t* p) {
  return __half2float(__ushort_as_half(*p));
}

// Monotone map float -> uint32 (a < b  <=>  key(a) < key(b)); -0 maps like +0, every NaN sorts
// after +inf.
__device__ __forceinline__ uint32_t ordered_key(float v) {
  if (v != v) return 0xffffffffu;
  if (v == 0.0f) v = 0.0f;
  const uint32_t u = __float_as_uint(v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float key_to_float(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// Minimum of one uint64 per thread over the block (every thread gets it). blockDim.x must be a
// multiple of 32 and at most 1024; `shared` holds 32 values.
__device__ __forceinline__ uint64_t block_min_u64(uint64_t v, uint64_t* shared) {
  for (int off = 16; off > 0; off /= 2) v = min(v, __shfl_down_sync(0xffffffffu, v, off));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  __syncthreads();  // `shared` may still be read from a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : ~0ull;
  for (int off = 16; off > 0; off /= 2) v = min(v, __shfl_down_sync(0xffffffffu, v, off));
  return __shfl_sync(0xffffffffu, v, 0);
}

// Sum of one double per thread over the block (valid in thread 0). Same constraints.
__device__ __forceinline__ double block_sum(double v, double* shared) {
  for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : 0.0;
  for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

// Calls f(std::integral_constant<int, R>{}) for R in {1, 3, 5, 7}, else
// f(std::integral_constant<int, 0>{}) (0 = the window size is a run-time value).
template <typename F>
void dispatch_window(int64_t window, F&& f) {
  switch (window) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 7: f(std::integral_constant<int, 7>{}); break;
    default: f(std::integral_constant<int, 0>{}); break;
  }
}

}  // namespace cuda
}  // namespace cpr
