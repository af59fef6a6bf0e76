// Runtime choice between the portable build of a CPU kernel and an AVX2+FMA build of the same
// source (private header of csrc/cpu/).
//
// The library is compiled for the baseline ISA (no -march=native). A hot loop is written once as an
// always-inline body; CPR_CPU_CLONES(...) below emits two copies of a wrapper around it, one compiled
// with target("avx2,fma,f16c"), one without, and cpr::cpu::use_avx2() picks at run time from
// __builtin_cpu_supports. set_cpu_isa("portable") forces the portable copies (tests run both).
// On compilers/targets without the attribute only the portable copy exists.
#pragma once

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(CPR_NO_SIMD_CLONES)
#define CPR_HAS_AVX2_CLONES 1
#define CPR_AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#else
#define CPR_HAS_AVX2_CLONES 0
#define CPR_AVX2_TARGET
#endif

#if defined(__GNUC__)
#define CPR_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define CPR_ALWAYS_INLINE inline
#endif

namespace cpr {
namespace cpu {

// True when the AVX2+FMA copies run: the CPU supports them and set_cpu_isa did not force
// "portable".
bool use_avx2() noexcept;

}  // namespace cpu
}  // namespace cpr

// CPR_CPU_CLONES(name, (params...), (args...)) defines `name##_avx2` and `name##_portable`, both
// returning void and calling `name##_body args`, and `name(params)` that picks one of them.
#if CPR_HAS_AVX2_CLONES
#define CPR_CPU_CLONES(name, params, args)                                  \
  CPR_AVX2_TARGET void name##_avx2 params { name##_body args; }             \
  void name##_portable params { name##_body args; }                         \
  void name params {                                                        \
    if (::cpr::cpu::use_avx2()) name##_avx2 args; else name##_portable args; \
  }
#else
#define CPR_CPU_CLONES(name, params, args) \
  void name params { name##_body args; }
#endif
