// Run-time choices of the operators' CPU kernels: which instruction-set build of the kernel loops runs, and which
// group_channels specialisation.
#pragma once

#include <cstdlib>
#include <cstring>
#include <type_traits>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define DCN_HAVE_AVX2_BUILD 1  // the kernels are also built with target("avx2,fma")
#endif

namespace dcn {

// Whether the AVX2 build runs: the CPU has AVX2 and FMA, and the environment variable `force_variable` is not
// "baseline" (tests compare both builds of the kernels).
inline bool use_avx2(const char* force_variable) {
#ifdef DCN_HAVE_AVX2_BUILD
  const char* forced = std::getenv(force_variable);
  if (forced != nullptr && std::strcmp(forced, "baseline") == 0) return false;
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  (void)force_variable;
  return false;
#endif
}

// Calls fn(std::integral_constant<int, GC>()) with the group_channels specialisation compiled for it (0 = any size).
template <typename Fn>
void dispatch_group_channels(int group_channels, Fn&& fn) {
  switch (group_channels) {
    case 8: fn(std::integral_constant<int, 8>()); break;
    case 16: fn(std::integral_constant<int, 16>()); break;
    case 32: fn(std::integral_constant<int, 32>()); break;
    default: fn(std::integral_constant<int, 0>()); break;
  }
}

}  // namespace dcn
