// nn_search on the CPU for a window that covers the whole map, as matrix products (private header): what
// csrc/ops/nn_search.cpp runs for such scales, and the scoring tail for its leave-one-out memory search.
#pragma once

#include <cstdint>

#include "cpr/ops.h"

namespace cpr {
namespace detail {

// True when an r x r window around any location reaches every location of an H x W map.
bool covers_map(int64_t window, int64_t height, int64_t width);

// Whether whole_map_search is built in: it needs a CBLAS (CPR_WITH_BLAS; OpenCV's own cv::gemm was
// 4x slower than the windowed kernel here). Without it every scale runs in the nn_search kernel.
bool whole_map_search_available();

// What nn_search gives for a window covering the map: scale.out (B, H, W) = 1 - max cosine of each
// query location over every location of its K bank images index[b * k .. (b + 1) * k) (float32 or
// float16), computed as sgemm products in blocks of query rows that stay in cache, the blocks split
// over the OpenMP threads, one BLAS thread each. scale.query is (B, D, H, W) float32. The K images are
// gathered once for consecutive queries with the same index row (the memory's). No checks (the caller's);
// throws std::logic_error when not built in.
//   sources  (N, H, W) int64 or nullptr: the training image each bank location comes from
//   exclude  (B,) int64 or nullptr (with sources): per query, locations whose source is exclude[b]
//            count with similarity 0, as if zeroed (the leave-one-out memory of cpr_engine.tail)
void whole_map_search(const NNSearchScale& scale, int64_t batch, const int64_t* index, int64_t k,
                      const int64_t* sources = nullptr, const int64_t* exclude = nullptr);

}  // namespace detail
}  // namespace cpr
