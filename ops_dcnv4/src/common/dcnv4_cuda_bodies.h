// Per-thread bodies of the DCNv4 CUDA kernels, as host-and-device functions: dcnv4_cuda.cu wraps each in a thin
// __global__ grid-stride loop, and host/dcnv4_cuda_bodies_host.cpp runs the very same bodies on the CPU over every thread
// index (with a host atomic add for atomicAdd), so the CPU test suite covers the CUDA code paths except the launch.
// The sampling math is the operators' shared one (ops_common/src/dcn_math.h).
#pragma once

#include <cstdint>

#include "../dcnv4_geometry.h"

namespace dcnv4 {
namespace cuda_bodies {

using dcn::bilinear_corners;
using dcn::Corners;
using dcn::grid_centre;
using dcn::point_displacement;
using dcn::sample_channel;
using dcn::sample_gradients;
using dcn::sampling_location;

// Forward, one thread per output element `element` = ((n * H_out + h_out) * W_out + w_out) * C + g * D + d:
// neighbouring threads read neighbouring channels of the same sampling locations.
template <typename scalar_t, typename acc_t>
DCN_HOST_DEVICE void forward_element(const Geometry& geo, const scalar_t* input, const scalar_t* offset_mask,
                                       scalar_t* output, int64_t element) {
  const int gc = geo.group_channels, channels = geo.channels(), points = geo.kernel_points();
  const int c = static_cast<int>(element % gc);
  const int64_t pixel_group = element / gc;  // (index, g)
  const int g = static_cast<int>(pixel_group % geo.group);
  const int64_t index = pixel_group / geo.group;  // flat (n, h_out, w_out)
  const int w_out = static_cast<int>(index % geo.width_out);
  const int h_out = static_cast<int>(index / geo.width_out % geo.height_out);
  const int64_t n = index / (static_cast<int64_t>(geo.width_out) * geo.height_out);
  const acc_t scale = static_cast<acc_t>(geo.offset_scale);
  acc_t centre_y, centre_x;
  grid_centre(geo, h_out, w_out, centre_y, centre_x);
  const scalar_t* offsets = offset_mask + index * geo.offset_mask_channels + g * geo.group_stride();
  const scalar_t* mask = offsets + 2 * points;
  const scalar_t* input_c =
      input + n * static_cast<int64_t>(geo.height_in) * geo.width_in * channels + g * gc + c;
  acc_t sum = acc_t(0);
  for (int p = 0; p < points; ++p) {
    acc_t disp_y, disp_x, loc_y, loc_x;
    point_displacement(geo, p, geo.remove_center != 0, disp_y, disp_x);
    sampling_location(centre_y, centre_x, disp_y, disp_x, static_cast<acc_t>(offsets[2 * p + 1]),
                      static_cast<acc_t>(offsets[2 * p]), scale, loc_y, loc_x);
    const Corners<acc_t> corners = bilinear_corners(loc_y, loc_x, geo.height_in, geo.width_in);
    if (!corners.inside) continue;
    sum += static_cast<acc_t>(mask[p]) * sample_channel<acc_t>(input_c, channels, corners);
  }
  output[element] = static_cast<scalar_t>(sum);
}

// Backward, one thread per (pixel, group, point) `point` = (index * G + g) * K + p: it owns that point's two offset
// gradients and its mask gradient (sums over the group's channels, no reduction across threads) and scatters the
// input gradient through atomic_add(address, value) into an opmath buffer (grad_input, layout of the input).
template <typename scalar_t, typename acc_t, typename AtomicAdd>
DCN_HOST_DEVICE void backward_point(const Geometry& geo, const scalar_t* input, const scalar_t* offset_mask,
                                      const scalar_t* grad_output, acc_t* grad_input, scalar_t* grad_offset_mask,
                                      int64_t point, const AtomicAdd& atomic_add) {
  const int gc = geo.group_channels, channels = geo.channels(), points = geo.kernel_points();
  const int p = static_cast<int>(point % points);
  const int64_t pixel_group = point / points;
  const int g = static_cast<int>(pixel_group % geo.group);
  const int64_t index = pixel_group / geo.group;
  const int w_out = static_cast<int>(index % geo.width_out);
  const int h_out = static_cast<int>(index / geo.width_out % geo.height_out);
  const int64_t n = index / (static_cast<int64_t>(geo.width_out) * geo.height_out);
  const acc_t scale = static_cast<acc_t>(geo.offset_scale);
  acc_t centre_y, centre_x, disp_y, disp_x, loc_y, loc_x;
  grid_centre(geo, h_out, w_out, centre_y, centre_x);
  point_displacement(geo, p, geo.remove_center != 0, disp_y, disp_x);
  const int64_t first = index * geo.offset_mask_channels + static_cast<int64_t>(g) * geo.group_stride();
  const scalar_t* offsets = offset_mask + first;
  sampling_location(centre_y, centre_x, disp_y, disp_x, static_cast<acc_t>(offsets[2 * p + 1]),
                    static_cast<acc_t>(offsets[2 * p]), scale, loc_y, loc_x);
  const Corners<acc_t> corners = bilinear_corners(loc_y, loc_x, geo.height_in, geo.width_in);
  const acc_t m = static_cast<acc_t>(offsets[2 * points + p]);
  acc_t dot[4] = {acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
  if (corners.inside) {
    const int64_t base = n * static_cast<int64_t>(geo.height_in) * geo.width_in * channels + g * gc;
    const scalar_t* grad_out_g = grad_output + index * channels + g * gc;
    for (int c = 0; c < gc; ++c) {
      const acc_t go = static_cast<acc_t>(grad_out_g[c]);
      DCN_UNROLL
      for (int q = 0; q < 4; ++q) {
        if (!corners.valid[q]) continue;
        const int64_t at = base + corners.pixel[q] * channels + c;
        dot[q] += go * static_cast<acc_t>(input[at]);
        atomic_add(grad_input + at, m * corners.weight[q] * go);
      }
    }
  }
  acc_t g_mask, g_dx, g_dy;
  sample_gradients(corners, dot, m, scale, g_mask, g_dx, g_dy);
  scalar_t* grad_offsets = grad_offset_mask + first;
  grad_offsets[2 * p] = static_cast<scalar_t>(g_dx);
  grad_offsets[2 * p + 1] = static_cast<scalar_t>(g_dy);
  grad_offsets[2 * points + p] = static_cast<scalar_t>(g_mask);
}

}  // namespace cuda_bodies
}  // namespace dcnv4
