#include "whole_map_search.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#if CPR_WITH_BLAS
#include <cblas.h>
#endif

#include "common/half.h"

namespace cpr {
namespace runtime {
namespace {

constexpr int64_t kBlockFloats = int64_t(1) << 20;  // one similarity block: 4 MiB
constexpr int64_t kMinRows = 16;

}  // namespace

bool covers_map(int64_t window, int64_t height, int64_t width) { return window / 2 >= std::max(height, width) - 1; }

bool whole_map_search_available() { return CPR_WITH_BLAS != 0; }

void whole_map_search(const NNSearchScale& scale, const int64_t* index, int64_t k) {
#if CPR_WITH_BLAS
  const int64_t plane = scale.height * scale.width, columns = k * plane, dim = scale.dim;
  std::vector<float> refs(size_t(dim * columns));  // (D, K * H * W)
  for (int64_t c = 0; c < dim; ++c) {
    for (int64_t j = 0; j < k; ++j) {
      float* dst = refs.data() + c * columns + j * plane;
      const int64_t offset = (index[j] * dim + c) * plane;
      if (scale.bank_dtype == DType::kFloat32) {
        std::copy_n(static_cast<const float*>(scale.bank) + offset, plane, dst);
      } else {
        const uint16_t* src = static_cast<const uint16_t*>(scale.bank) + offset;
        for (int64_t i = 0; i < plane; ++i) dst[i] = detail::half_to_float(src[i]);
      }
    }
  }
  const int64_t rows = std::max(kMinRows, kBlockFloats / std::max<int64_t>(1, columns));
  std::vector<float> similarity(size_t(std::min(rows, plane) * columns));
  for (int64_t start = 0; start < plane; start += rows) {
    const int64_t n = std::min(plane, start + rows) - start;
    // similarity (n, K*H*W) = query[:, start:start+n]^T (n, D) x refs (D, K*H*W); query is (D, H*W)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(n), int(columns), int(dim), 1.f, scale.query + start,
                int(plane), refs.data(), int(columns), 0.f, similarity.data(), int(columns));
    for (int64_t r = 0; r < n; ++r) {
      const float* row = similarity.data() + r * columns;
      scale.out[start + r] = 1.f - *std::max_element(row, row + columns);
    }
  }
#else
  (void)scale, (void)index, (void)k;
  throw std::logic_error("whole_map_search: built without a CBLAS (CPR_WITH_BLAS)");
#endif
}

}  // namespace runtime
}  // namespace cpr
