// CUDA kernels (private header): one launcher per operation, same arguments in the same order as
// csrc/cpu/kernels.h plus the stream (a cudaStream_t passed as void*). Pointers are device memory;
// called by csrc/ops/<op>.cpp after validation. Compiled only with CPR_WITH_CUDA.
#pragma once

#include <cstdint>

#include "cpr/ops.h"

namespace cpr {
namespace cuda {

void codebook_histogram(const float* features, int64_t batch, int64_t channels, int64_t height,
                        int64_t width, const float* centers, int64_t n_codes, int64_t grid,
                        int64_t* ids, float* hists, void* stream);

void hist_match(const float* query, int64_t batch, const float* refs, int64_t n_refs,
                int64_t blocks, int64_t bins, int64_t kept_blocks, float* distances, void* stream);

void top_k(const float* distances, int64_t batch, int64_t n_refs, int64_t k,
           const int64_t* exclude, int64_t* indices, void* stream);

void nn_search(const NNSearchScale* scales, int64_t n_scales, int64_t batch, const int64_t* index,
               int64_t k, void* stream);

void postprocess(const MapView* maps, int64_t n_maps, int64_t batch, const float* foreground,
                 int64_t out_size, float sigma, int64_t top_t, float* anomaly_map, float* score,
                 void* stream);

// Copy n int64 values from device to host on `stream` and wait (for the index range checks).
void copy_to_host(const int64_t* device, int64_t n, int64_t* host, void* stream);

}  // namespace cuda
}  // namespace cpr
