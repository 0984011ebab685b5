// DCNv3 CPU kernel: forward parallel over output pixels; backward race-free without atomics (see cpu_backward).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "../dcnv3.h"
#include "dcnv3_cpu_dispatch.h"

namespace dcnv3 {

#define DCNV3_CPU_NS baseline
#define DCNV3_CPU_TARGET
#define DCNV3_CPU_VECTOR_BYTES 16  // SSE2, part of every x86-64 (and NEON width)
#include "dcnv3_cpu_kernels.h"
#undef DCNV3_CPU_NS
#undef DCNV3_CPU_TARGET
#undef DCNV3_CPU_VECTOR_BYTES

#ifdef DCNV3_HAVE_AVX2_BUILD
#define DCNV3_CPU_NS avx2
#define DCNV3_CPU_TARGET __attribute__((target("avx2,fma")))
#define DCNV3_CPU_VECTOR_BYTES 32
#include "dcnv3_cpu_kernels.h"
#undef DCNV3_CPU_NS
#undef DCNV3_CPU_TARGET
#undef DCNV3_CPU_VECTOR_BYTES
#endif

namespace {

// DCNV3_CPU_ISA=baseline forces the portable loops.
bool use_avx2() { return dcnv3::use_avx2("DCNV3_CPU_ISA"); }

template <typename scalar_t, typename acc_t, int GC>
void run_forward(bool avx2, const Geometry& geo, const scalar_t* input, const scalar_t* offset,
                 const scalar_t* mask, scalar_t* output, int64_t n, int row_begin, int row_end) {
#ifdef DCNV3_HAVE_AVX2_BUILD
  if (avx2)
    return avx2::forward_rows<scalar_t, acc_t, GC>(geo, input, offset, mask, output, n, row_begin, row_end);
#endif
  baseline::forward_rows<scalar_t, acc_t, GC>(geo, input, offset, mask, output, n, row_begin, row_end);
}

template <typename scalar_t, typename acc_t, int GC>
void run_backward(bool avx2, const Geometry& geo, const scalar_t* input_g, const scalar_t* offset,
                  const scalar_t* mask, const scalar_t* grad_output, acc_t* grad_input_g, scalar_t* grad_offset,
                  scalar_t* grad_mask, int64_t n, int g, int row_begin, int row_end) {
#ifdef DCNV3_HAVE_AVX2_BUILD
  if (avx2)
    return avx2::backward_slice<scalar_t, acc_t, GC>(geo, input_g, offset, mask, grad_output, grad_input_g,
                                                     grad_offset, grad_mask, n, g, row_begin, row_end);
#endif
  baseline::backward_slice<scalar_t, acc_t, GC>(geo, input_g, offset, mask, grad_output, grad_input_g, grad_offset,
                                                grad_mask, n, g, row_begin, row_end);
}

}  // namespace

std::string cpu_isa() { return use_avx2() ? "avx2" : "baseline"; }

at::Tensor cpu_forward(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                       const Geometry& geo) {
  auto output = at::empty({geo.batch, geo.height_out, geo.width_out, geo.channels()}, input.options());
  const int64_t rows = geo.batch * geo.height_out;
  if (rows == 0) return output;
  const bool avx2 = use_avx2();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcnv3_cpu_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* input_ptr = input.const_data_ptr<scalar_t>();
    const scalar_t* offset_ptr = offset.const_data_ptr<scalar_t>();
    const scalar_t* mask_ptr = mask.const_data_ptr<scalar_t>();
    scalar_t* output_ptr = output.mutable_data_ptr<scalar_t>();
    dispatch_group_channels(geo.group_channels, [&](auto gc_constant) {
      constexpr int GC = decltype(gc_constant)::value;
      // Tasks are runs of output rows (of the flattened (n, h_out)); every output element is written by one task.
      at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end;) {
          const int64_t n = row / geo.height_out;
          const int row_begin = static_cast<int>(row % geo.height_out);
          const int row_end = static_cast<int>(std::min<int64_t>(geo.height_out, row_begin + (end - row)));
          run_forward<scalar_t, acc_t, GC>(avx2, geo, input_ptr, offset_ptr, mask_ptr, output_ptr, n, row_begin,
                                           row_end);
          row += row_end - row_begin;
        }
      });
    });
  });
  return output;
}

// Backward without atomics. Group g of sample n only ever scatters into grad_input[n, :, :, g*gc:(g+1)*gc], so
// when there are at least as many (sample, group) slices as threads, each task owns whole slices and accumulates
// their input gradient alone; the result then does not depend on the number of threads. With fewer slices than
// threads (e.g. one image, one group) the output rows are split among threads instead, each scattering into a
// private zeroed gradient buffer, summed afterwards. grad_offset and grad_mask are written per (pixel, group, point)
// by exactly one task in both schemes. The input and its gradient are handled in group-major layout (N, G, H, W, gc)
// so that each slice is dense in memory; the transposes cost far less than the cache misses they save.
std::vector<at::Tensor> cpu_backward(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                                     const at::Tensor& grad_output, const Geometry& geo) {
  auto grad_offset = at::zeros_like(offset);
  auto grad_mask = at::zeros_like(mask);
  const int64_t gc = geo.group_channels;
  const at::ScalarType acc_type = at::toOpMathType(input.scalar_type());
  const auto group_major = [&](const at::Tensor& t) {
    return t.view({geo.batch, geo.height_in, geo.width_in, geo.group, gc}).permute({0, 3, 1, 2, 4}).contiguous();
  };
  const at::Tensor input_gm = group_major(input);
  at::Tensor grad_input_gm = at::zeros(input_gm.sizes(), input.options().dtype(acc_type));
  const int64_t slice_size = static_cast<int64_t>(geo.height_in) * geo.width_in * gc;
  const int64_t slices = geo.batch * geo.group;
  const int threads = at::get_num_threads();
  const bool avx2 = use_avx2();

  if (geo.batch > 0 && geo.height_out > 0 && input.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcnv3_cpu_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const scalar_t* input_ptr = input_gm.const_data_ptr<scalar_t>();
      const scalar_t* offset_ptr = offset.const_data_ptr<scalar_t>();
      const scalar_t* mask_ptr = mask.const_data_ptr<scalar_t>();
      const scalar_t* grad_output_ptr = grad_output.const_data_ptr<scalar_t>();
      scalar_t* grad_offset_ptr = grad_offset.mutable_data_ptr<scalar_t>();
      scalar_t* grad_mask_ptr = grad_mask.mutable_data_ptr<scalar_t>();
      dispatch_group_channels(geo.group_channels, [&](auto gc_constant) {
        constexpr int GC = decltype(gc_constant)::value;
        const auto run_slices = [&](acc_t* grad_target, int row_begin, int row_end) {
          for (int64_t slice = 0; slice < slices; ++slice) {
            run_backward<scalar_t, acc_t, GC>(avx2, geo, input_ptr + slice * slice_size, offset_ptr, mask_ptr,
                                              grad_output_ptr, grad_target + slice * slice_size, grad_offset_ptr,
                                              grad_mask_ptr, slice / geo.group, static_cast<int>(slice % geo.group),
                                              row_begin, row_end);
          }
        };
        if (slices >= threads) {
          acc_t* grad_ptr = grad_input_gm.mutable_data_ptr<acc_t>();
          at::parallel_for(0, slices, 1, [&](int64_t begin, int64_t end) {
            for (int64_t slice = begin; slice < end; ++slice) {
              run_backward<scalar_t, acc_t, GC>(avx2, geo, input_ptr + slice * slice_size, offset_ptr, mask_ptr,
                                                grad_output_ptr, grad_ptr + slice * slice_size, grad_offset_ptr,
                                                grad_mask_ptr, slice / geo.group, static_cast<int>(slice % geo.group),
                                                0, geo.height_out);
            }
          });
        } else {
          const int64_t parts = std::min<int64_t>(threads, geo.height_out);
          auto private_grads = at::zeros({parts - 1, grad_input_gm.numel()}, grad_input_gm.options());
          at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
            for (int64_t part = begin; part < end; ++part) {
              acc_t* target = part == 0 ? grad_input_gm.mutable_data_ptr<acc_t>()
                                        : private_grads.mutable_data_ptr<acc_t>() + (part - 1) * grad_input_gm.numel();
              run_slices(target, static_cast<int>(geo.height_out * part / parts),
                         static_cast<int>(geo.height_out * (part + 1) / parts));
            }
          });
          if (parts > 1) grad_input_gm.add_(private_grads.sum(0).view(grad_input_gm.sizes()));
        }
      });
    });
  }
  auto grad_input = grad_input_gm.permute({0, 2, 3, 1, 4}).reshape(input.sizes());
  grad_input = grad_input.to(input.scalar_type()).contiguous();
  return {grad_input, grad_offset, grad_mask};
}

}  // namespace dcnv3
