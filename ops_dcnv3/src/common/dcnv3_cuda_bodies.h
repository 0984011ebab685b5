// Per-thread bodies of the DCNv3 CUDA kernels, as host-and-device functions.
//
// src/cuda/dcnv3_cuda.cu wraps each body in a thin grid-stride __global__ kernel; src/host/dcnv3_cuda_bodies_host.cpp
// compiles the very same bodies for the host and runs them over every thread index (the "host harness" the tests
// call through ops_dcnv3._C.cuda_bodies_*_host), with a host atomic add standing in for atomicAdd. So the index
// decomposition, the sampling and the scatter of the CUDA path are tested on machines without a GPU; only the launch
// configuration (grid size, stream) is not. Semantics of the sampling: docs/dcnv3_operator.md.
//
// Thread mapping (docs/dcnv3_operator.md, "CUDA thread mapping and the host harness", has the reasoning):
//   forward                one thread per (output pixel, group, pack of `pack` channels): the kernel point's
//                          location and corner weights are computed once for the whole pack, and the pack is loaded
//                          and stored as one vector (16 bytes when the layout allows it).
//   backward, input        one thread per (output pixel, group, channel): lanes of a warp are neighbouring channels,
//                          so each atomicAdd instruction of the scatter into grad_input hits one or two cache lines
//                          (a thread per kernel point looping over channels would hit 32 lines per instruction).
//   backward, offset/mask  one thread per (output pixel, group, kernel point): it owns that point's offset and mask
//                          gradients (a sum over the group's channels, done in the thread), so they need no atomics.
//   backward, softmax      (mask_softmax only) one thread per (output pixel, group): turns its points' weight
//                          gradients into logit gradients in place, after the offset/mask kernel.
// With mask_softmax every thread that needs a point's weight computes its (pixel, group)'s softmax itself from the
// logits (MaskWeights of dcn_math.h): a few exponentials per thread instead of a pass over memory.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "dcn_math.h"

namespace dcnv3 {

using namespace dcn;  // the sampling math (ops_common/src/dcn_math.h)

// Widest vector access of the kernels, in bytes.
constexpr int kMaxPackBytes = 16;

// `pack` channels of one pixel, loaded or stored as one aligned vector.
template <typename scalar_t, int N>
struct alignas(sizeof(scalar_t) * N) Pack {
  scalar_t value[N];
};

// Channels per thread of the vectorised bodies: the widest pack (at most kMaxPackBytes) that divides group_channels,
// or 1. `aligned` says whether every tensor the pack accesses starts at a multiple of kMaxPackBytes; channel offsets
// inside a tensor are multiples of the pack whenever group_channels is (channels = group * group_channels).
inline int choose_pack(int group_channels, int element_bytes, bool aligned) {
  if (!aligned) return 1;
  const int widest = kMaxPackBytes / element_bytes;
  return group_channels % widest == 0 ? widest : 1;
}

// Whether every pointer starts at a multiple of kMaxPackBytes (the `aligned` of choose_pack).
inline bool pack_aligned(std::initializer_list<const void*> pointers) {
  for (const void* pointer : pointers) {
    if (reinterpret_cast<uintptr_t>(pointer) % kMaxPackBytes != 0) return false;
  }
  return true;
}

// Thread counts of the three bodies.
inline int64_t forward_threads(const Geometry& geo, int pack) {
  return geo.batch * geo.height_out * geo.width_out * geo.group * (geo.group_channels / pack);
}
inline int64_t backward_input_threads(const Geometry& geo) {
  return geo.batch * geo.height_out * geo.width_out * geo.channels();
}
inline int64_t backward_offset_mask_threads(const Geometry& geo) {
  return geo.batch * geo.height_out * geo.width_out * geo.group * geo.points();
}
inline int64_t backward_softmax_threads(const Geometry& geo) {
  return geo.batch * geo.height_out * geo.width_out * geo.group;
}

// Position of a (sample, output pixel, group) triple, flattened as ((n * H_out + h_out) * W_out + w_out) * G + g:
// the memory order of the channels-last output, offset and mask.
struct PixelGroup {
  int64_t n;
  int h_out, w_out, g;
  int64_t pixel;  // (n * H_out + h_out) * W_out + w_out
};

DCN_HOST_DEVICE PixelGroup decompose_pixel_group(const Geometry& geo, int64_t pixel_group) {
  PixelGroup at;
  at.g = static_cast<int>(pixel_group % geo.group);
  at.pixel = pixel_group / geo.group;
  at.w_out = static_cast<int>(at.pixel % geo.width_out);
  at.h_out = static_cast<int>(at.pixel / geo.width_out % geo.height_out);
  at.n = at.pixel / (static_cast<int64_t>(geo.width_out) * geo.height_out);
  return at;
}

// Corners of kernel point k of a (pixel, group); offset_pg/mask_pg point at the pair/weight of its point 0.
template <typename acc_t, typename scalar_t>
DCN_HOST_DEVICE Corners<acc_t> point_corners(const Geometry& geo, const PixelGroup& at, int k,
                                               const scalar_t* offset_pg) {
  acc_t centre_y, centre_x, disp_y, disp_x, loc_y, loc_x;
  grid_centre(geo, at.h_out, at.w_out, centre_y, centre_x);
  point_displacement(geo, k, disp_y, disp_x);
  sampling_location(centre_y, centre_x, disp_y, disp_x, static_cast<acc_t>(offset_pg[2 * k + 1]),
                    static_cast<acc_t>(offset_pg[2 * k]), static_cast<acc_t>(geo.offset_scale), loc_y, loc_x);
  return bilinear_corners(loc_y, loc_x, geo.height_in, geo.width_in);
}

template <int N, typename acc_t, typename scalar_t>
DCN_HOST_DEVICE void load_pack(const scalar_t* source, acc_t (&values)[N]) {
  const Pack<scalar_t, N> pack = *reinterpret_cast<const Pack<scalar_t, N>*>(source);
DCN_UNROLL
  for (int i = 0; i < N; ++i) values[i] = static_cast<acc_t>(pack.value[i]);
}

template <int N, typename acc_t, typename scalar_t>
DCN_HOST_DEVICE void store_pack(scalar_t* target, const acc_t (&values)[N]) {
  Pack<scalar_t, N> pack;
DCN_UNROLL
  for (int i = 0; i < N; ++i) pack.value[i] = static_cast<scalar_t>(values[i]);
  *reinterpret_cast<Pack<scalar_t, N>*>(target) = pack;
}

// atomicAdd on the device; on the host (the harness) an atomic read-modify-write of the same element.
template <typename T>
DCN_HOST_DEVICE void atomic_add(T* address, T value) {
#ifdef __CUDA_ARCH__
  atomicAdd(address, value);
#else
  host_atomic_add(address, value);
#endif
}

// Forward of thread `thread` < forward_threads(geo, PACK): output channels [c0, c0 + PACK) of one (pixel, group).
template <int PACK, typename scalar_t, typename acc_t>
DCN_HOST_DEVICE void forward_thread(const Geometry& geo, int64_t thread, const scalar_t* __restrict__ input,
                                      const scalar_t* __restrict__ offset, const scalar_t* __restrict__ mask,
                                      scalar_t* __restrict__ output) {
  const int gc = geo.group_channels, channels = geo.channels(), points = geo.points();
  const int packs = gc / PACK;
  const int c0 = static_cast<int>(thread % packs) * PACK;
  const int64_t pixel_group = thread / packs;
  const PixelGroup at = decompose_pixel_group(geo, pixel_group);
  const scalar_t* offset_pg = offset + pixel_group * points * 2;
  const scalar_t* mask_pg = mask + pixel_group * points;
  const scalar_t* input_c = input + at.n * geo.height_in * geo.width_in * channels + at.g * gc + c0;
  const MaskWeights<acc_t> weights(mask_pg, points, geo.mask_softmax);
  acc_t sum[PACK];
DCN_UNROLL
  for (int i = 0; i < PACK; ++i) sum[i] = acc_t(0);
  for (int k = 0; k < points; ++k) {
    const Corners<acc_t> corners = point_corners<acc_t>(geo, at, k, offset_pg);
    if (!corners.inside) continue;
    const acc_t m = weights(mask_pg, k);
DCN_UNROLL
    for (int q = 0; q < 4; ++q) {
      if (!corners.valid[q]) continue;
      acc_t values[PACK];
      load_pack<PACK>(input_c + corners.pixel[q] * channels, values);
      const acc_t weight = m * corners.weight[q];
DCN_UNROLL
      for (int i = 0; i < PACK; ++i) sum[i] += weight * values[i];
    }
  }
  store_pack<PACK>(output + at.pixel * channels + at.g * gc + c0, sum);
}

// Input gradient of thread `thread` < backward_input_threads(geo): channel c of one (pixel, group) scatters
// mask * bilinear weight * grad_out into the four corners of each kernel point (grad_input in opmath precision).
template <typename scalar_t, typename acc_t>
DCN_HOST_DEVICE void backward_input_thread(const Geometry& geo, int64_t thread, const scalar_t* __restrict__ offset,
                                             const scalar_t* __restrict__ mask,
                                             const scalar_t* __restrict__ grad_output, acc_t* grad_input) {
  const int gc = geo.group_channels, channels = geo.channels(), points = geo.points();
  const int c = static_cast<int>(thread % gc);
  const int64_t pixel_group = thread / gc;
  const PixelGroup at = decompose_pixel_group(geo, pixel_group);
  const acc_t grad_out = static_cast<acc_t>(grad_output[thread]);  // thread == pixel * channels + g * gc + c
  if (grad_out == acc_t(0)) return;
  const scalar_t* offset_pg = offset + pixel_group * points * 2;
  const scalar_t* mask_pg = mask + pixel_group * points;
  acc_t* grad_input_c = grad_input + at.n * geo.height_in * geo.width_in * channels + at.g * gc + c;
  const MaskWeights<acc_t> weights(mask_pg, points, geo.mask_softmax);
  for (int k = 0; k < points; ++k) {
    const Corners<acc_t> corners = point_corners<acc_t>(geo, at, k, offset_pg);
    if (!corners.inside) continue;
    const acc_t scaled = weights(mask_pg, k) * grad_out;
DCN_UNROLL
    for (int q = 0; q < 4; ++q) {
      if (corners.valid[q]) atomic_add(grad_input_c + corners.pixel[q] * channels, scaled * corners.weight[q]);
    }
  }
}

// Offset and mask gradients of thread `thread` < backward_offset_mask_threads(geo): kernel point k of one
// (pixel, group); the sum over the group's channels runs in PACK-wide loads.
template <int PACK, typename scalar_t, typename acc_t>
DCN_HOST_DEVICE void backward_offset_mask_thread(const Geometry& geo, int64_t thread,
                                                   const scalar_t* __restrict__ input,
                                                   const scalar_t* __restrict__ offset,
                                                   const scalar_t* __restrict__ mask,
                                                   const scalar_t* __restrict__ grad_output,
                                                   scalar_t* __restrict__ grad_offset,
                                                   scalar_t* __restrict__ grad_mask) {
  const int gc = geo.group_channels, channels = geo.channels(), points = geo.points();
  const int k = static_cast<int>(thread % points);
  const int64_t pixel_group = thread / points;
  const PixelGroup at = decompose_pixel_group(geo, pixel_group);
  const Corners<acc_t> corners = point_corners<acc_t>(geo, at, k, offset + pixel_group * points * 2);
  const scalar_t* mask_pg = mask + pixel_group * points;  // thread == pixel_group * points + k
  const acc_t m = MaskWeights<acc_t>(mask_pg, points, geo.mask_softmax)(mask_pg, k);
  acc_t dot[4] = {acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
  if (corners.inside) {
    const scalar_t* input_g = input + at.n * geo.height_in * geo.width_in * channels + at.g * gc;
    const scalar_t* grad_out_g = grad_output + at.pixel * channels + at.g * gc;
    for (int c = 0; c < gc; c += PACK) {
      acc_t grad_out[PACK];
      load_pack<PACK>(grad_out_g + c, grad_out);
DCN_UNROLL
      for (int q = 0; q < 4; ++q) {
        if (!corners.valid[q]) continue;
        acc_t values[PACK];
        load_pack<PACK>(input_g + corners.pixel[q] * channels + c, values);
DCN_UNROLL
        for (int i = 0; i < PACK; ++i) dot[q] += grad_out[i] * values[i];
      }
    }
  }
  acc_t g_mask, g_dx, g_dy;
  sample_gradients(corners, dot, m, static_cast<acc_t>(geo.offset_scale), g_mask, g_dx, g_dy);
  grad_offset[2 * thread] = static_cast<scalar_t>(g_dx);
  grad_offset[2 * thread + 1] = static_cast<scalar_t>(g_dy);
  grad_mask[thread] = static_cast<scalar_t>(g_mask);
}

// Softmax backward of thread `thread` < backward_softmax_threads(geo), run after backward_offset_mask_thread when
// geo.mask_softmax: the points of (pixel, group) `thread` hold d loss / d weight and get d loss / d logit.
template <typename scalar_t, typename acc_t>
DCN_HOST_DEVICE void backward_softmax_thread(const Geometry& geo, int64_t thread, const scalar_t* __restrict__ mask,
                                               scalar_t* __restrict__ grad_mask) {
  const int points = geo.points();
  const scalar_t* mask_pg = mask + thread * points;
  softmax_backward(MaskWeights<acc_t>(mask_pg, points, true), mask_pg, points, grad_mask + thread * points);
}

}  // namespace dcnv3
