// DCNv4 call geometry, shared by the CPU kernel, the CUDA kernel and the CPU harness of the CUDA bodies.
// Light on purpose (no ATen): nvcc and the host compiler both include it.
#pragma once

#include "dcn_math.h"

namespace dcnv4 {

// The shared geometry (sizes, kernel, stride, pad, dilation, groups, offset_scale) plus what the packed layout adds.
// Point p of group g reads offset_mask[pixel][g * 3K + 2p] (x offset), [g * 3K + 2p + 1] (y offset) and
// [g * 3K + 2K + p] (mask); the channels from G * 3K to offset_mask_channels are padding.
struct Geometry : dcn::Geometry {
  int remove_center;         // 1: the kernel's centre point is not sampled
  int offset_mask_channels;  // Cpad: G * 3K rounded up to a multiple of 8

  DCN_HOST_DEVICE int kernel_points() const { return kernel_h * kernel_w - remove_center; }  // K
  DCN_HOST_DEVICE int group_stride() const { return 3 * kernel_points(); }  // offset_mask channels of a group
};

}  // namespace dcnv4
