// DCNv3 CUDA kernel. The sampling math (locations, corner weights, gradients) is the same header the CPU kernel
// runs (common/dcnv3_math.h); this file only maps it onto threads.
//
// forward:  one thread per output element (pixel, group, channel); neighbouring threads read neighbouring channels.
// backward: one thread per (pixel, group, kernel point): it owns that point's offset and mask gradients (a sum over
//           the group's channels, so no reduction across threads) and scatters the input gradient with atomicAdd
//           into an opmath (float for half/bfloat16) buffer, cast back at the end.
// Only c10/cuda headers: ATen/cuda/CUDAContext.h would also need the cuBLAS/cuSPARSE headers, which minimal
// toolkits do not ship.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "../dcnv3.h"

namespace dcnv3 {
namespace {

constexpr int kThreads = 256;

// Grid-stride loops: the grid size is capped, every thread handles as many items as needed.
int64_t blocks_for(int64_t work) {
  return std::max<int64_t>(1, std::min<int64_t>((work + kThreads - 1) / kThreads, int64_t(1) << 22));
}

template <typename scalar_t, typename acc_t>
__global__ void forward_kernel(const Geometry geo, const scalar_t* __restrict__ input,
                               const scalar_t* __restrict__ offset, const scalar_t* __restrict__ mask,
                               scalar_t* __restrict__ output, int64_t total) {
  const int gc = geo.group_channels, channels = geo.channels(), points = geo.points();
  const int64_t pixels_in = static_cast<int64_t>(geo.height_in) * geo.width_in;
  const acc_t scale = static_cast<acc_t>(geo.offset_scale);
  for (int64_t element = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; element < total;
       element += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int c = static_cast<int>(element % gc);
    const int64_t pixel_group = element / gc;  // (index, g)
    const int g = static_cast<int>(pixel_group % geo.group);
    const int64_t index = pixel_group / geo.group;  // flat (n, h_out, w_out)
    const int w_out = static_cast<int>(index % geo.width_out);
    const int h_out = static_cast<int>(index / geo.width_out % geo.height_out);
    const int64_t n = index / (static_cast<int64_t>(geo.width_out) * geo.height_out);
    acc_t centre_y, centre_x;
    grid_centre(geo, h_out, w_out, centre_y, centre_x);
    const scalar_t* offset_g = offset + pixel_group * points * 2;
    const scalar_t* mask_g = mask + pixel_group * points;
    const scalar_t* input_c = input + n * pixels_in * channels + g * gc + c;
    acc_t sum = acc_t(0);
    for (int k = 0; k < points; ++k) {
      acc_t disp_y, disp_x, loc_y, loc_x;
      point_displacement(geo, k, disp_y, disp_x);
      sampling_location(centre_y, centre_x, disp_y, disp_x, static_cast<acc_t>(offset_g[2 * k + 1]),
                        static_cast<acc_t>(offset_g[2 * k]), scale, loc_y, loc_x);
      const Corners<acc_t> corners = bilinear_corners(loc_y, loc_x, geo.height_in, geo.width_in);
      if (!corners.inside) continue;
      sum += static_cast<acc_t>(mask_g[k]) * sample_channel<acc_t>(input_c, channels, corners);
    }
    output[element] = static_cast<scalar_t>(sum);  // element == index * channels + g * gc + c
  }
}

template <typename scalar_t, typename acc_t>
__global__ void backward_kernel(const Geometry geo, const scalar_t* __restrict__ input,
                                const scalar_t* __restrict__ offset, const scalar_t* __restrict__ mask,
                                const scalar_t* __restrict__ grad_output, acc_t* __restrict__ grad_input,
                                scalar_t* __restrict__ grad_offset, scalar_t* __restrict__ grad_mask, int64_t total) {
  const int gc = geo.group_channels, channels = geo.channels(), points = geo.points();
  const int64_t pixels_in = static_cast<int64_t>(geo.height_in) * geo.width_in;
  const acc_t scale = static_cast<acc_t>(geo.offset_scale);
  for (int64_t point = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; point < total;
       point += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int k = static_cast<int>(point % points);
    const int64_t pixel_group = point / points;
    const int g = static_cast<int>(pixel_group % geo.group);
    const int64_t index = pixel_group / geo.group;
    const int w_out = static_cast<int>(index % geo.width_out);
    const int h_out = static_cast<int>(index / geo.width_out % geo.height_out);
    const int64_t n = index / (static_cast<int64_t>(geo.width_out) * geo.height_out);
    acc_t centre_y, centre_x, disp_y, disp_x, loc_y, loc_x;
    grid_centre(geo, h_out, w_out, centre_y, centre_x);
    point_displacement(geo, k, disp_y, disp_x);
    sampling_location(centre_y, centre_x, disp_y, disp_x, static_cast<acc_t>(offset[2 * point + 1]),
                      static_cast<acc_t>(offset[2 * point]), scale, loc_y, loc_x);
    const Corners<acc_t> corners = bilinear_corners(loc_y, loc_x, geo.height_in, geo.width_in);
    const acc_t m = static_cast<acc_t>(mask[point]);
    acc_t dot[4] = {acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
    if (corners.inside) {
      const int64_t base = n * pixels_in * channels + g * gc;
      const scalar_t* grad_out_g = grad_output + index * channels + g * gc;
      for (int c = 0; c < gc; ++c) {
        const acc_t go = static_cast<acc_t>(grad_out_g[c]);
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          if (!corners.valid[q]) continue;
          const int64_t at = base + corners.pixel[q] * channels + c;
          dot[q] += go * static_cast<acc_t>(input[at]);
          atomicAdd(grad_input + at, m * corners.weight[q] * go);
        }
      }
    }
    acc_t g_mask, g_dx, g_dy;
    sample_gradients(corners, dot, m, scale, g_mask, g_dx, g_dy);
    grad_offset[2 * point] = static_cast<scalar_t>(g_dx);
    grad_offset[2 * point + 1] = static_cast<scalar_t>(g_dy);
    grad_mask[point] = static_cast<scalar_t>(g_mask);
  }
}

}  // namespace

at::Tensor cuda_forward(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                        const Geometry& geo) {
  const c10::cuda::CUDAGuard device_guard(input.device());
  auto output = at::empty({geo.batch, geo.height_out, geo.width_out, geo.channels()}, input.options());
  const int64_t total = output.numel();
  if (total == 0) return output;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcnv3_cuda_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    forward_kernel<scalar_t, acc_t><<<blocks_for(total), kThreads, 0, stream>>>(
        geo, input.const_data_ptr<scalar_t>(), offset.const_data_ptr<scalar_t>(), mask.const_data_ptr<scalar_t>(),
        output.mutable_data_ptr<scalar_t>(), total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return output;
}

std::vector<at::Tensor> cuda_backward(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                                      const at::Tensor& grad_output, const Geometry& geo) {
  const c10::cuda::CUDAGuard device_guard(input.device());
  auto grad_offset = at::zeros_like(offset);
  auto grad_mask = at::zeros_like(mask);
  auto grad_input_acc = at::zeros(input.sizes(), input.options().dtype(at::toOpMathType(input.scalar_type())));
  const int64_t total = mask.numel();  // one thread per (pixel, group, point)
  if (total > 0 && input.numel() > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcnv3_cuda_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      backward_kernel<scalar_t, acc_t><<<blocks_for(total), kThreads, 0, stream>>>(
          geo, input.const_data_ptr<scalar_t>(), offset.const_data_ptr<scalar_t>(), mask.const_data_ptr<scalar_t>(),
          grad_output.const_data_ptr<scalar_t>(), grad_input_acc.mutable_data_ptr<acc_t>(),
          grad_offset.mutable_data_ptr<scalar_t>(), grad_mask.mutable_data_ptr<scalar_t>(), total);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  auto grad_input = grad_input_acc.scalar_type() == input.scalar_type() ? grad_input_acc
                                                                         : grad_input_acc.to(input.scalar_type());
  return {grad_input, grad_offset, grad_mask};
}

}  // namespace dcnv3
