// What the operators' Python bindings (vision.cpp) share: the geometry of a call from its input and arguments, the
// guards of the invariants the kernels rely on, and the CPU/CUDA dispatch. Argument checks with user-facing messages
// are Python's (check_dcnv3_args, check_dcnv4_args); these guards only keep a direct call to _C memory-safe.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#include "dcn_math.h"

// Guards of the invariants shared by every operator, through the operator's CHECK macro (which names its Python
// check). Expects the binding's argument names: input, kernel_h .. group_channels, im2col_step.
#define DCN_CHECK_GEOMETRY_INVARIANTS(CHECK)                                  \
  CHECK(at::isFloatingType(input.scalar_type()));                              \
  CHECK(kernel_h >= 1 && kernel_w >= 1 && stride_h >= 1 && stride_w >= 1);     \
  CHECK(pad_h >= 0 && pad_w >= 0 && dilation_h >= 1 && dilation_w >= 1);      \
  CHECK(group >= 1 && group_channels >= 1 && im2col_step >= 1);                \
  CHECK(input.size(3) == static_cast<int64_t>(group) * group_channels)

namespace dcn {

// The fields of `geo` that the input (N, H, W, C) and the geometry arguments fix, output size included (the caller
// guards height_out, width_out >= 1).
inline void fill_geometry(Geometry& geo, const at::Tensor& input, int kernel_h, int kernel_w, int stride_h,
                          int stride_w, int pad_h, int pad_w, int dilation_h, int dilation_w, int group,
                          int group_channels, double offset_scale) {
  geo.batch = input.size(0);
  geo.height_in = static_cast<int>(input.size(1));
  geo.width_in = static_cast<int>(input.size(2));
  geo.kernel_h = kernel_h, geo.kernel_w = kernel_w, geo.stride_h = stride_h, geo.stride_w = stride_w;
  geo.pad_h = pad_h, geo.pad_w = pad_w, geo.dilation_h = dilation_h, geo.dilation_w = dilation_w;
  geo.group = group, geo.group_channels = group_channels, geo.offset_scale = offset_scale;
  geo.height_out = (geo.height_in + 2 * pad_h - (dilation_h * (kernel_h - 1) + 1)) / stride_h + 1;
  geo.width_out = (geo.width_in + 2 * pad_w - (dilation_w * (kernel_w - 1) + 1)) / stride_w + 1;
}

// cuda() for a CUDA input (an error where the extension was built without CUDA), cpu() for a CPU one. `op` names
// the operator in messages ("dcnv3", "dcnv4").
template <typename Cuda, typename Cpu>
auto on_device(const at::Tensor& input, const char* op, Cuda&& cuda, Cpu&& cpu) -> decltype(cpu()) {
  if (input.is_cuda()) {
#ifdef WITH_CUDA
    return cuda();
#else
    (void)cuda;
    TORCH_CHECK(false, op, ": input is a CUDA tensor but ops_", op, "._C was built without CUDA");
#endif
  }
  TORCH_CHECK(input.is_cpu(), op, ": input must be a CPU or CUDA tensor, got device ", input.device());
  return cpu();
}

}  // namespace dcn
