// The DCN operators' CPU kernels, written once: the vector loops of dcn_cpu_kernels.h built for two instruction sets
// (baseline and AVX2, chosen at run time), and the threading of the forward and of the race-free backward. An
// operator supplies its offset/mask Layout (see dcn_cpu_kernels.h) through make_layout and allocates its offset and
// mask gradients; everything else is here.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "dcn_cpu_dispatch.h"
#include "dcn_math.h"

namespace dcn {

#define DCN_CPU_NS cpu_baseline
#define DCN_CPU_TARGET
#define DCN_CPU_VECTOR_BYTES 16  // SSE2, part of every x86-64 (and NEON width)
#include "dcn_cpu_kernels.h"
#undef DCN_CPU_NS
#undef DCN_CPU_TARGET
#undef DCN_CPU_VECTOR_BYTES

#ifdef DCN_HAVE_AVX2_BUILD
#define DCN_CPU_NS cpu_avx2
#define DCN_CPU_TARGET __attribute__((target("avx2,fma")))
#define DCN_CPU_VECTOR_BYTES 32
#include "dcn_cpu_kernels.h"
#undef DCN_CPU_NS
#undef DCN_CPU_TARGET
#undef DCN_CPU_VECTOR_BYTES
#endif

// Multiply-adds a task should have before waking another thread pays off: small calls (tiny maps, gradcheck) run
// inline instead of paying a parallel region per call, which is costly on a busy machine.
constexpr int64_t kMinTaskWork = int64_t(1) << 16;

// Per (output pixel, group): four corners of each point, over the group's channels.
inline int64_t work_per_pixel_group(const Geometry& geo, int points) {
  return std::max<int64_t>(1, int64_t(4) * points * geo.group_channels);
}

// Forward: output (N, H_out, W_out, G * gc), parallel over runs of output rows; every output element is written by
// one task. make_layout(static_cast<scalar_t*>(nullptr)) returns the operator's Layout for scalar_t.
template <typename MakeLayout>
at::Tensor cpu_forward(const at::Tensor& input, const Geometry& geo, int points, bool avx2,
                       MakeLayout&& make_layout) {
  auto output = at::empty({geo.batch, geo.height_out, geo.width_out, geo.channels()}, input.options());
  const int64_t rows = geo.batch * geo.height_out;
  if (rows == 0 || output.numel() == 0) return output;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcn_cpu_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto layout = make_layout(static_cast<scalar_t*>(nullptr));
    using Layout = std::decay_t<decltype(layout)>;
    const scalar_t* input_ptr = input.const_data_ptr<scalar_t>();
    scalar_t* output_ptr = output.mutable_data_ptr<scalar_t>();
    dispatch_group_channels(geo.group_channels, [&](auto gc_constant) {
      constexpr int GC = decltype(gc_constant)::value;
      const int64_t row_work = work_per_pixel_group(geo, points) * geo.width_out * geo.group;
      at::parallel_for(0, rows, std::max<int64_t>(1, kMinTaskWork / row_work), [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end;) {  // rows of the flattened (n, h_out)
          const int64_t n = row / geo.height_out;
          const int row_begin = static_cast<int>(row % geo.height_out);
          const int row_end = static_cast<int>(std::min<int64_t>(geo.height_out, row_begin + (end - row)));
#ifdef DCN_HAVE_AVX2_BUILD
          if (avx2) {
            cpu_avx2::forward_rows<Layout, scalar_t, acc_t, GC>(layout, input_ptr, output_ptr, n, row_begin, row_end);
          } else
#endif
          {
            cpu_baseline::forward_rows<Layout, scalar_t, acc_t, GC>(layout, input_ptr, output_ptr, n, row_begin,
                                                                    row_end);
          }
          row += row_end - row_begin;
        }
      });
    });
  });
  return output;
}

// Backward without atomics; returns grad_input (the Layout's grad_offsets / grad_mask are written). Group g of sample
// n only scatters into grad_input[n, :, :, g*gc:(g+1)*gc], so with at least as many (sample, group) slices as useful
// threads each task owns whole slices and the result does not depend on the number of threads; with fewer (one
// image, few groups) the output rows are split among threads instead, each scattering into a private zeroed buffer,
// summed afterwards. Either way each offset/mask gradient of (pixel, group, point) is written by exactly one task.
// The input and its gradient are handled in group-major layout (N, G, H, W, gc) so that each slice is dense in
// memory; the transposes cost far less than the cache misses they save.
template <typename MakeLayout>
at::Tensor cpu_backward(const at::Tensor& input, const at::Tensor& grad_output, const Geometry& geo, int points,
                        bool avx2, MakeLayout&& make_layout) {
  const int64_t gc = geo.group_channels;
  const at::ScalarType acc_type = at::toOpMathType(input.scalar_type());
  const at::Tensor input_gm =
      input.view({geo.batch, geo.height_in, geo.width_in, geo.group, gc}).permute({0, 3, 1, 2, 4}).contiguous();
  at::Tensor grad_input_gm = at::zeros(input_gm.sizes(), input.options().dtype(acc_type));
  const int64_t slice_size = static_cast<int64_t>(geo.height_in) * geo.width_in * gc;
  const int64_t slices = geo.batch * geo.group;
  // Backward work per (pixel, group) is about twice the forward's (a dot product and an axpy per corner).
  const int64_t slice_work = 2 * work_per_pixel_group(geo, points) * geo.height_out * geo.width_out;
  const int threads = static_cast<int>(
      std::clamp<int64_t>(slice_work * slices / kMinTaskWork, 1, std::max(1, at::get_num_threads())));

  if (geo.batch > 0 && geo.height_out > 0 && geo.width_out > 0 && input.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcn_cpu_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const auto layout = make_layout(static_cast<scalar_t*>(nullptr));
      using Layout = std::decay_t<decltype(layout)>;
      const scalar_t* input_ptr = input_gm.const_data_ptr<scalar_t>();
      const scalar_t* grad_output_ptr = grad_output.const_data_ptr<scalar_t>();
      dispatch_group_channels(geo.group_channels, [&](auto gc_constant) {
        constexpr int GC = decltype(gc_constant)::value;
        // Slices [slice_begin, slice_end) over output rows [row_begin, row_end), scattering into grad_target.
        const auto run_slices = [&](acc_t* grad_target, int64_t slice_begin, int64_t slice_end, int row_begin,
                                    int row_end) {
          for (int64_t slice = slice_begin; slice < slice_end; ++slice) {
            const int64_t n = slice / geo.group;
            const int g = static_cast<int>(slice % geo.group);
#ifdef DCN_HAVE_AVX2_BUILD
            if (avx2) {
              cpu_avx2::backward_slice<Layout, scalar_t, acc_t, GC>(layout, input_ptr + slice * slice_size,
                                                                    grad_output_ptr, grad_target + slice * slice_size,
                                                                    n, g, row_begin, row_end);
              continue;
            }
#endif
            cpu_baseline::backward_slice<Layout, scalar_t, acc_t, GC>(layout, input_ptr + slice * slice_size,
                                                                      grad_output_ptr,
                                                                      grad_target + slice * slice_size, n, g,
                                                                      row_begin, row_end);
          }
        };
        acc_t* grad_ptr = grad_input_gm.mutable_data_ptr<acc_t>();
        if (slices >= threads) {
          const int64_t grain = std::max<int64_t>(1, kMinTaskWork / slice_work);
          at::parallel_for(0, slices, grain, [&](int64_t begin, int64_t end) {
            run_slices(grad_ptr, begin, end, 0, geo.height_out);
          });
        } else {
          const int64_t parts = std::min<int64_t>(threads, geo.height_out);
          auto private_grads = at::zeros({parts - 1, grad_input_gm.numel()}, grad_input_gm.options());
          acc_t* private_ptr = private_grads.mutable_data_ptr<acc_t>();
          at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
            for (int64_t part = begin; part < end; ++part) {
              acc_t* target = part == 0 ? grad_ptr : private_ptr + (part - 1) * grad_input_gm.numel();
              run_slices(target, 0, slices, static_cast<int>(geo.height_out * part / parts),
                         static_cast<int>(geo.height_out * (part + 1) / parts));
            }
          });
          if (parts > 1) grad_input_gm.add_(private_grads.sum(0).view(grad_input_gm.sizes()));
        }
      });
    });
  }
  auto grad_input = grad_input_gm.permute({0, 2, 3, 1, 4}).reshape(input.sizes());
  return grad_input.to(input.scalar_type()).contiguous();
}

}  // namespace dcn
