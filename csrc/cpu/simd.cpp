// Runtime ISA choice of the CPU kernels (see simd.h).
#include "cpu/simd.h"

#include <atomic>
#include <cstring>

#include "common/check.h"
#include "cpr/ops.h"

namespace cpr {
namespace cpu {
namespace {

bool cpu_has_avx2_fma() noexcept {
#if CPR_HAS_AVX2_CLONES
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
  }();
  return has;
#else
  return false;
#endif
}

std::atomic<bool> g_force_portable{false};

}  // namespace

bool use_avx2() noexcept {
  return cpu_has_avx2_fma() && !g_force_portable.load(std::memory_order_relaxed);
}

}  // namespace cpu

const char* cpu_isa() noexcept { return cpu::use_avx2() ? "avx2+fma" : "portable"; }

void set_cpu_isa(const char* isa) {
  CPR_CHECK(isa != nullptr && (std::strcmp(isa, "auto") == 0 || std::strcmp(isa, "portable") == 0),
            "set_cpu_isa: isa must be \"auto\" or \"portable\"; got ",
            isa ? "\"" + std::string(isa) + "\"" : std::string("nullptr"));
  cpu::g_force_portable.store(std::strcmp(isa, "portable") == 0);
}

}  // namespace cpr
