// top_k, CPU: k smallest distances per row, ascending, ties to the lower index, NaN last.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpr/ops.h"

namespace cpr {
namespace cpu {

void top_k(const float* distances, int64_t batch, int64_t n_refs, int64_t k,
           const int64_t* exclude, int64_t* indices) {
  const int64_t kk = top_k_count(n_refs, k, exclude != nullptr);
#pragma omp parallel for schedule(static) if (batch * n_refs > (1 << 16))
  for (int64_t b = 0; b < batch; ++b) {
    const float* d = distances + b * n_refs;
    const int64_t skip = exclude ? exclude[b] : -1;
    std::vector<int64_t> order;
    order.reserve(static_cast<size_t>(n_refs));
    for (int64_t i = 0; i < n_refs; ++i)
      if (i != skip) order.push_back(i);
    // strict weak order on (value, index): NaN after every number, then the lower index first
    auto before = [d](int64_t i, int64_t j) {
      const float a = d[i], c = d[j];
      const bool an = std::isnan(a), cn = std::isnan(c);
      if (an != cn) return cn;
      if (!an && a != c) return a < c;
      return i < j;
    };
    std::partial_sort(order.begin(), order.begin() + kk, order.end(), before);
    std::copy(order.begin(), order.begin() + kk, indices + b * kk);
  }
}

}  // namespace cpu
}  // namespace cpr
