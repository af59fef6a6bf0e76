// cpr/tail.h -- the scoring tail in one call: everything after the network (no torch, no Python).
//
// The stage sequence of cpr_engine/tail.py (its PyTorch reference), composed from the operations of
// <cpr/ops.h>: codebook block histograms of the fine taps, histogram matching, top-K training
// images, the location-restricted search in their banks beside a whole-map search of the memory
// (the closer of the two per patch), the location offset, the foreground weight, post-processing.
// cpr::Detector, cpr_engine's torch-free ArtifactDetector, CPRModel and the CUDA-graph GraphPipeline
// score through it.
//
// Buffers follow <cpr/ops.h> (dense, row-major), on the device of the Context: host memory on the CPU;
// on CUDA every pointer (inputs, training state, outputs) is device memory and the call only enqueues
// work on ctx.stream (no host synchronisation, scratch memory stream-ordered: capturable in a CUDA
// graph). Two scales, finest first: h_0 = w_0 = fine side, h_1 = w_1 = coarse side.
#pragma once

#include <cstdint>

#include "cpr/ops.h"

namespace cpr {

// One scale of the training state.
struct TailScale {
  const void* bank = nullptr;      // (N, D, h, w) float32 or float16 (bank_dtype): every training image
  const void* memory = nullptr;    // (M, D, h, w) float32 or float16 (memory_dtype): coreset maps, searched whole
  DType bank_dtype = DType::kFloat32;
  DType memory_dtype = DType::kFloat32;
  int64_t n_memory = 0;            // M >= 1
  int64_t dim = 0;                 // D
  int64_t side = 0;                // h = w
  int64_t window = 1;              // odd search window of the retrieved images' banks
  const int64_t* memory_sources = nullptr;  // (M, h, w) training image of each memory location; only
                                            // read with score_tail's `exclude`
};

// What training left for the tail to search (an artifact's arrays).
struct TailState {
  const float* centers = nullptr;          // (n_codes, channels) codebook
  int64_t n_codes = 0;
  int64_t channels = 0;                    // C of the fine taps
  const float* train_hists = nullptr;      // (N, grid^2, n_codes + 1) training block histograms
  int64_t n_train = 0;                     // N
  TailScale scales[2];                     // fine, coarse
  const float* bank_fg = nullptr;          // (N, h_0, w_0) training foregrounds; nullptr: no foreground
  const float* location_offset = nullptr;  // (h_0, w_0) subtracted from the fine patch scores
};

// The manifest settings the tail scores with.
struct TailSettings {
  int64_t grid = 1;              // histogram blocks per side
  int64_t kept_blocks = 1;       // blocks summed by the histogram matching
  int64_t top_k = 1;             // training images retrieved
  int64_t image_size = 1;        // S: side of the anomaly map
  float blur_sigma = 0.0f;
  int64_t top_t = 1;             // pixels summed for the image score
  bool foreground_on_map = true; // false: the foreground weights the image score only
};

// True when this build runs windows that cover the whole map (the memory, global windows) as CBLAS
// matrix products (CPR_WITH_BLAS); without a BLAS they run in the nn_search kernel, several times slower.
bool score_tail_uses_blas() noexcept;

// Scores a batch of B network outputs.
//   features    (B, C, h_0, w_0) float32  fine backbone taps (graph output feat_4)
//   descriptors [2] (B, D_s, h_s, w_s) float32 unit-norm descriptors per scale (desc_4, desc_8)
//   foreground  (B, h_0, w_0) float32 or nullptr (used only when state.bank_fg is set)
//   anomaly_map (B, S, S) float32 out;  score (B,) float32 out
//   exclude     (B,) int64 or nullptr: leave-one-out scoring of training images. Query b never retrieves
//               training image exclude[b], and its memory locations from that image (memory_sources,
//               then required) count as zeroed vectors (similarity 0). CPU only; needs
//               score_tail_uses_blas().
//   ctx         the device (default: the CPU) and, on CUDA, the stream.
// Throws what the operations throw (std::invalid_argument naming the op and the argument).
void score_tail(const TailState& state, const TailSettings& settings, int64_t batch, const float* features,
                const float* const descriptors[2], const float* foreground, float* anomaly_map, float* score,
                const int64_t* exclude = nullptr, const Context& ctx = {});

}  // namespace cpr
