// CPU kernels (private header): one function per operation, same arguments in the same order as
// csrc/cuda/kernels.h. Called by csrc/ops/<op>.cpp after validation; no checks here.
#pragma once

#include <cstdint>

#include "cpr/ops.h"

namespace cpr {
namespace cpu {

void codebook_histogram(const float* features, int64_t batch, int64_t channels, int64_t height,
                        int64_t width, const float* centers, int64_t n_codes, int64_t grid,
                        int64_t* ids, float* hists);

void hist_match(const float* query, int64_t batch, const float* refs, int64_t n_refs,
                int64_t blocks, int64_t bins, int64_t kept_blocks, float* distances);

void top_k(const float* distances, int64_t batch, int64_t n_refs, int64_t k,
           const int64_t* exclude, int64_t* indices);

void nn_search(const NNSearchScale* scales, int64_t n_scales, int64_t batch, const int64_t* index,
               int64_t k);

void postprocess(const MapView* maps, int64_t n_maps, int64_t batch, const float* foreground,
                 int64_t out_size, float sigma, int64_t top_t, float* anomaly_map, float* score);

}  // namespace cpu
}  // namespace cpr
