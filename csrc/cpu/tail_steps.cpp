// The scoring tail's elementwise steps, CPU (csrc/tail/steps.h says what each computes).
#include <algorithm>
#include <cmath>

#include "tail/steps.h"

namespace cpr {
namespace cpu {

void memory_rows(int64_t* rows, int64_t batch, int64_t n_memory) {
  for (int64_t i = 0; i < batch * n_memory; ++i) rows[i] = i % n_memory;
}

void merge_patch_scores(float* local, const float* whole, const float* offset, int64_t batch, int64_t plane) {
  for (int64_t i = 0; i < batch * plane; ++i) {
    const float total = local[i] + whole[i];
    float v = std::isfinite(total) ? std::min(local[i], whole[i]) : total;
    if (offset != nullptr) {
      v -= offset[i % plane];
      v = v < 0.0f ? 0.0f : v;
    }
    local[i] = v;
  }
}

void foreground_weight(const float* foreground, const float* bank_fg, const int64_t* index, int64_t batch,
                       int64_t k, int64_t plane, float* weight) {
  std::copy(foreground, foreground + batch * plane, weight);
  for (int64_t b = 0; b < batch; ++b) {
    float* out = weight + b * plane;
    for (int64_t j = 0; j < k; ++j) {  // one retrieved image's plane at a time: contiguous reads
      const float* fg = bank_fg + index[b * k + j] * plane;
      for (int64_t i = 0; i < plane; ++i) out[i] = std::max(out[i], fg[i]);
    }
  }
}

}  // namespace cpu
}  // namespace cpr
