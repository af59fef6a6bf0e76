// cpr/ops.h -- public C++ entry points of the CPR hot path (no torch, no Python).
//
// Every function takes raw pointers + sizes; the caller owns every buffer, inputs and outputs.
// All buffers are dense, C-contiguous (row-major) arrays; each parameter's shape is given in the
// notation `name (D0, D1, ...) dtype`. float16 buffers hold IEEE 754 binary16 bit patterns as
// uint16_t (passed as `const void*` with a DType tag).
//
// Devices: with `Context{Device::kCPU}` (the default) pointers are host memory and the kernels run
// on OpenMP threads. With `Context{Device::kCUDA, stream}` every pointer is device memory of the
// current CUDA device and the kernels are enqueued on `stream` (a `cudaStream_t`, nullptr = the
// legacy default stream); the call returns without synchronising, except where noted.
//
// Errors: invalid sizes or arguments throw std::invalid_argument, out-of-range index values throw
// std::out_of_range, a build without CUDA asked for Device::kCUDA throws std::runtime_error. Every
// message starts with the operation's name and says what was expected and what was received.
//
// The operations reproduce the PyTorch reference of the Python package (cpr_engine/retrieval.py,
// nn_search.py, scoring.py) up to float rounding; tests/ops/ holds the equivalence tests.
#pragma once

#include <cstdint>

namespace cpr {

enum class Device : int { kCPU = 0, kCUDA = 1 };

// Element type of a buffer whose type may vary (descriptor banks).
enum class DType : int { kFloat32 = 0, kFloat16 = 1 };

// Where a call runs. On CUDA, `stream` is a cudaStream_t (nullptr: the default stream).
struct Context {
  Device device = Device::kCPU;
  void* stream = nullptr;
};

// True when this build contains the CUDA kernels (it says nothing about a GPU being present).
bool cuda_compiled() noexcept;

// Instruction set the CPU kernels use now: "avx2+fma" (runtime-detected copies of the hot loops)
// or "portable" (baseline build).
const char* cpu_isa() noexcept;
// "auto" (default: AVX2+FMA when the CPU has it) or "portable" (forces the baseline copies, e.g. to
// test them). Anything else throws std::invalid_argument. Process-wide; not thread-safe against
// running kernels.
void set_cpu_isa(const char* isa);

// ---------------------------------------------------------------------------------------------
// codebook_histogram: nearest codebook center of every feature vector, then block histograms.
//
//   features (B, C, H, W) float32   feature maps (stride-4 backbone tap)
//   centers  (M, C) float32         codebook centers
//   grid     S >= 1                 blocks per side
//   ids      (B, H, W) int64        out: id of the nearest center in [0, M) (squared L2 computed as
//                                   ||c||^2 - 2 x.c; ties go to the lowest id); may be nullptr on
//                                   CPU (not written)
//   hists    (B, S*S, M+1) float32  out: normalized histogram of each block, blocks row-major. The
//                                   map is padded to S*ceil(H/S) x S*ceil(W/S); padding counts in
//                                   bin 0 and id m counts in bin m + 1; each row sums to 1.
// B may be 0 (nothing is written).
void codebook_histogram(const float* features, int64_t batch, int64_t channels, int64_t height,
                        int64_t width, const float* centers, int64_t n_codes, int64_t grid,
                        int64_t* ids, float* hists, const Context& ctx = {});

// ---------------------------------------------------------------------------------------------
// hist_match: robust block-wise KL distance of each query histogram set to each reference set.
//
//   query     (B, S2, M1) float32   query block histograms (S2 = blocks, M1 = bins)
//   refs      (N, S2, M1) float32   reference block histograms
//   kept_blocks 1 <= kept_blocks <= S2   number of smallest per-block distances summed
//   distances (B, N) float32        out: sum of the `kept_blocks` smallest KL(q + eps || r + eps) over
//                                   blocks, eps = 1e-8 (kKlEps)
// Histogram values are expected >= 0 (r = 0 gives log(eps)); negative values that make a block
// distance NaN give unspecified results (the reference sorts NaN last).
constexpr float kKlEps = 1e-8f;
void hist_match(const float* query, int64_t batch, const float* refs, int64_t n_refs,
                int64_t blocks, int64_t bins, int64_t kept_blocks, float* distances,
                const Context& ctx = {});

// ---------------------------------------------------------------------------------------------
// top_k: the k smallest distances of each row, ascending; equal values keep the lower index first,
// NaN sorts after +inf.
//
//   distances (B, N) float32
//   k         >= 1; clipped to N, or to N - 1 when `exclude` is given (see top_k_count)
//   exclude   (B,) int64 or nullptr: per row, an index in [0, N) never returned
//   indices   (B, top_k_count(N, k, exclude != nullptr)) int64   out
// On CUDA the exclude values are range-checked on the host (a small synchronous copy).
int64_t top_k_count(int64_t n_refs, int64_t k, bool has_exclude) noexcept;
void top_k(const float* distances, int64_t batch, int64_t n_refs, int64_t k,
           const int64_t* exclude, int64_t* indices, const Context& ctx = {});

// ---------------------------------------------------------------------------------------------
// nn_search: location-restricted nearest-neighbour search, every scale in one call.
//
// For query location (y, x) of image b at a scale, the candidates are
// bank[index[b, j], :, y + dy, x + dx] for every j < K and |dy|, |dx| <= window / 2 inside the map;
// positions outside the map never win. Descriptors are expected L2-normalized, so the result is
// 1 - max dot product. The bank is read in place at the indexed rows (never gathered), except on the
// CPU for a window that covers the map (window / 2 >= max(H, W) - 1) in a build with a CBLAS: that scale
// runs as matrix products over the K images gathered once (the same result up to float rounding).
struct NNSearchScale {
  const float* query = nullptr;  // (B, D, H, W) float32 query descriptors
  const void* bank = nullptr;    // (N, D, H, W) float32 or float16 (bank_dtype) training descriptors
  DType bank_dtype = DType::kFloat32;
  int64_t n_bank = 0;            // N
  int64_t dim = 0;               // D
  int64_t height = 0;            // H
  int64_t width = 0;             // W
  int64_t window = 1;            // r, odd >= 1
  float* out = nullptr;          // (B, H, W) float32 out: 1 - max cosine, in [0, 2]
};
//   scales    (n_scales,) per-scale views (finest first by convention; the order does not matter)
//   batch     B, shared by every scale
//   index     (B, K) int64, 0 <= index < n_bank of every scale; K > N (repeats) is allowed
//   check_index  true: out-of-range index values throw std::out_of_range. On CUDA that check copies
//             the index to the host and synchronises the stream; false skips it there (for CUDA
//             graph capture, where the index comes from top_k and is in range by construction), and
//             the kernel writes NaN for every pixel of an image with an out-of-range index instead
//             of reading outside the bank. On CPU the check always runs (it needs no copy).
void nn_search(const NNSearchScale* scales, int64_t n_scales, int64_t batch, const int64_t* index,
               int64_t k, const Context& ctx = {}, bool check_index = true);

// ---------------------------------------------------------------------------------------------
// postprocess: per-scale patch scores -> anomaly map and image score (fused).
//
//   1. every map is bilinearly resized (align_corners=False) to the first map's size and summed;
//   2. the sum is multiplied by `foreground` when given;
//   3. bilinearly resized to out_size x out_size;
//   4. separable Gaussian blur, radius ceil(4 sigma), reflect padding (replicate when the map side
//      is <= the radius); sigma <= 0: no blur;
//   5. score = sum of the top min(top_t, out_size^2) values of the blurred map.
struct MapView {
  const float* data = nullptr;   // (B, H, W) float32
  int64_t height = 0;
  int64_t width = 0;
};
//   maps        (n_maps,) views, finest first; the first one sets (h0, w0)
//   foreground  (B, h0, w0) float32 or nullptr
//   anomaly_map (B, out_size, out_size) float32   out
//   score       (B,) float32                      out
void postprocess(const MapView* maps, int64_t n_maps, int64_t batch, const float* foreground,
                 int64_t out_size, float sigma, int64_t top_t, float* anomaly_map, float* score,
                 const Context& ctx = {});

}  // namespace cpr
