#include "cpu/whole_map_search.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <stdexcept>
#include <vector>

#if CPR_WITH_BLAS
#include <cblas.h>

// OpenBLAS's thread count (weak: absent with another BLAS, and then left alone)
extern "C" int openblas_get_num_threads(void) __attribute__((weak));
extern "C" void openblas_set_num_threads(int) __attribute__((weak));
#endif

#include "common/half.h"
#include "cpu/simd.h"

namespace cpr {
namespace detail {
namespace {

// One thread's similarity block: 1 MiB, kept in cache between its product and its row maxima (the demo
// model's scoring tail 1.1-1.2x faster than with 4 MiB blocks; benchmarks/RESULTS.md).
constexpr int64_t kBlockFloats = int64_t(1) << 18;
constexpr int64_t kMinRows = 16;
// Searches of more multiply-adds than this split their row blocks over the OpenMP threads (as nn_search).
constexpr int64_t kParallelMacs = int64_t(1) << 20;

#if CPR_WITH_BLAS
// While alive, OpenBLAS runs on one thread (when it is OpenBLAS and runs on more): the search splits
// its work over OpenMP threads itself. Process-wide.
class OneBlasThread {
 public:
  OneBlasThread() {
    if (openblas_get_num_threads != nullptr && openblas_set_num_threads != nullptr) {
      previous_ = openblas_get_num_threads();
      if (previous_ > 1) openblas_set_num_threads(1);
    }
  }
  ~OneBlasThread() {
    if (previous_ > 1) openblas_set_num_threads(previous_);
  }
  OneBlasThread(const OneBlasThread&) = delete;
  OneBlasThread& operator=(const OneBlasThread&) = delete;

 private:
  int previous_ = 0;
};
#endif

// out[r] = 1 - max_j block[r, j] for n rows of `columns` floats, with eight independent running
// maxima (std::max_element's single one is a chain of dependent compares: 19 % of the tail's time in
// perf); the AVX2 copy where the CPU has it (cpu/simd.h). NaN similarities are skipped, as
// std::max_element skips them; a NaN query gives 1 - (-inf) = inf, non-finite as the NumPy path's NaN.
CPR_ALWAYS_INLINE void one_minus_row_max_body(const float* block, int64_t n, int64_t columns, float* out) {
  constexpr int kLanes = 8;
  for (int64_t r = 0; r < n; ++r) {
    const float* row = block + r * columns;
    float lane[kLanes];
    for (int l = 0; l < kLanes; ++l) lane[l] = -std::numeric_limits<float>::infinity();
    int64_t j = 0;
    for (; j + kLanes <= columns; j += kLanes) {
      for (int l = 0; l < kLanes; ++l) lane[l] = row[j + l] > lane[l] ? row[j + l] : lane[l];
    }
    for (; j < columns; ++j) lane[0] = row[j] > lane[0] ? row[j] : lane[0];
    float best = lane[0];
    for (int l = 1; l < kLanes; ++l) best = lane[l] > best ? lane[l] : best;
    out[r] = 1.f - best;
  }
}
CPR_CPU_CLONES(one_minus_row_max, (const float* block, int64_t n, int64_t columns, float* out),
               (block, n, columns, out))

}  // namespace

bool covers_map(int64_t window, int64_t height, int64_t width) { return window / 2 >= std::max(height, width) - 1; }

bool whole_map_search_available() { return CPR_WITH_BLAS != 0; }

void whole_map_search(const NNSearchScale& scale, int64_t batch, const int64_t* index, int64_t k,
                      const int64_t* sources, const int64_t* exclude) {
#if CPR_WITH_BLAS
  const int64_t plane = scale.height * scale.width, columns = k * plane, dim = scale.dim;
  // uninitialised, as each thread's similarity block: written in full before they are read (a std::vector
  // would zero them on every call)
  const std::unique_ptr<float[]> refs(new float[size_t(dim * columns)]);  // (D, K * H * W)
  const int64_t rows = std::max(kMinRows, kBlockFloats / std::max<int64_t>(1, columns));
  const bool parallel = plane * columns * dim > kParallelMacs && plane > rows;
  const OneBlasThread one_thread;
  std::vector<int64_t> excluded;  // columns of this query's excluded source
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t* row = index + b * k;
    // gather the K bank images, unless they are the previous image's (the memory: the same for every image)
    if (b == 0 || !std::equal(row, row + k, row - k)) {
      for (int64_t c = 0; c < dim; ++c) {
        for (int64_t j = 0; j < k; ++j) {
          float* dst = refs.get() + c * columns + j * plane;
          const int64_t offset = (row[j] * dim + c) * plane;
          if (scale.bank_dtype == DType::kFloat32) {
            std::copy_n(static_cast<const float*>(scale.bank) + offset, plane, dst);
          } else {
            const uint16_t* src = static_cast<const uint16_t*>(scale.bank) + offset;
            for (int64_t i = 0; i < plane; ++i) dst[i] = detail::half_to_float(src[i]);
          }
        }
      }
    }
    excluded.clear();
    if (exclude != nullptr) {
      for (int64_t j = 0; j < k; ++j) {
        const int64_t* source = sources + row[j] * plane;
        for (int64_t i = 0; i < plane; ++i) {
          if (source[i] == exclude[b]) excluded.push_back(j * plane + i);
        }
      }
    }
    const float* query = scale.query + b * dim * plane;
    float* out = scale.out + b * plane;
    // row blocks split over OpenMP threads, each with its own similarity block and one BLAS thread: the
    // products and their row maxima both run in parallel
#pragma omp parallel if (parallel)
    {
      const std::unique_ptr<float[]> similarity(new float[size_t(std::min(rows, plane) * columns)]);
#pragma omp for schedule(dynamic, 1)
      for (int64_t start = 0; start < plane; start += rows) {
        const int64_t n = std::min(plane, start + rows) - start;
        // similarity (n, K*H*W) = query[:, start:start+n]^T (n, D) x refs (D, K*H*W); query is (D, H*W)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(n), int(columns), int(dim), 1.f, query + start,
                    int(plane), refs.get(), int(columns), 0.f, similarity.get(), int(columns));
        for (int64_t r = 0; r < n; ++r) {
          float* sim_row = similarity.get() + r * columns;
          for (const int64_t column : excluded) sim_row[column] = 0.f;
        }
        one_minus_row_max(similarity.get(), n, columns, out + start);
      }
    }
  }
#else
  (void)scale, (void)batch, (void)index, (void)k, (void)sources, (void)exclude;
  throw std::logic_error("whole_map_search: built without a CBLAS (CPR_WITH_BLAS)");
#endif
}

}  // namespace detail
}  // namespace cpr
