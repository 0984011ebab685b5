// DCNv4 CPU kernel: forward parallel over output rows; backward race-free without atomics (see cpu_backward).
// The vector loops are the DCNv3 kernel's (ops_dcnv3/src/cpu/dcnv3_cpu_kernels.h), built here for the same two
// instruction sets; only the walk over the packed offset_mask is DCNv4's own (dcnv4_cpu_kernels.h).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "../dcnv4.h"
#include "cpu/dcnv3_cpu_dispatch.h"

namespace dcnv3 {

#define DCNV3_CPU_NS dcnv4_baseline
#define DCNV3_CPU_TARGET
#define DCNV3_CPU_VECTOR_BYTES 16  // SSE2, part of every x86-64 (and NEON width)
#include "cpu/dcnv3_cpu_kernels.h"
#include "dcnv4_cpu_kernels.h"
#undef DCNV3_CPU_NS
#undef DCNV3_CPU_TARGET
#undef DCNV3_CPU_VECTOR_BYTES

#ifdef DCNV3_HAVE_AVX2_BUILD
#define DCNV3_CPU_NS dcnv4_avx2
#define DCNV3_CPU_TARGET __attribute__((target("avx2,fma")))
#define DCNV3_CPU_VECTOR_BYTES 32
#include "cpu/dcnv3_cpu_kernels.h"
#include "dcnv4_cpu_kernels.h"
#undef DCNV3_CPU_NS
#undef DCNV3_CPU_TARGET
#undef DCNV3_CPU_VECTOR_BYTES
#endif

}  // namespace dcnv3

namespace dcnv4 {
namespace {

// DCNV4_CPU_ISA=baseline forces the portable loops.
bool use_avx2() { return dcnv3::use_avx2("DCNV4_CPU_ISA"); }

using dcnv3::dispatch_group_channels;

template <typename scalar_t, typename acc_t, int GC>
void run_forward(bool avx2, const Geometry& geo, const scalar_t* input, const scalar_t* offset_mask,
                 scalar_t* output, int64_t n, int row_begin, int row_end) {
#ifdef DCNV3_HAVE_AVX2_BUILD
  if (avx2)
    return dcnv3::dcnv4_avx2::dcnv4_forward_rows<scalar_t, acc_t, GC>(geo, input, offset_mask, output, n,
                                                                      row_begin, row_end);
#endif
  dcnv3::dcnv4_baseline::dcnv4_forward_rows<scalar_t, acc_t, GC>(geo, input, offset_mask, output, n, row_begin,
                                                                 row_end);
}

template <typename scalar_t, typename acc_t, int GC>
void run_backward(bool avx2, const Geometry& geo, const scalar_t* input_g, const scalar_t* offset_mask,
                  const scalar_t* grad_output, acc_t* grad_input_g, scalar_t* grad_offset_mask, int64_t n, int g,
                  int row_begin, int row_end) {
#ifdef DCNV3_HAVE_AVX2_BUILD
  if (avx2)
    return dcnv3::dcnv4_avx2::dcnv4_backward_slice<scalar_t, acc_t, GC>(
        geo, input_g, offset_mask, grad_output, grad_input_g, grad_offset_mask, n, g, row_begin, row_end);
#endif
  dcnv3::dcnv4_baseline::dcnv4_backward_slice<scalar_t, acc_t, GC>(geo, input_g, offset_mask, grad_output,
                                                                   grad_input_g, grad_offset_mask, n, g, row_begin,
                                                                   row_end);
}

// Multiply-adds a task should have before waking another thread pays off: small calls (tiny maps, gradcheck) run
// inline instead of paying a parallel region per call, which is costly on a busy machine.
constexpr int64_t kMinTaskWork = int64_t(1) << 16;

// Per (output pixel, group): four corners of each point, over the group's channels.
int64_t work_per_pixel_group(const Geometry& geo) {
  return std::max<int64_t>(1, int64_t(4) * geo.kernel_points() * geo.group_channels);
}

}  // namespace

std::string cpu_isa() { return use_avx2() ? "avx2" : "baseline"; }

at::Tensor cpu_forward(const at::Tensor& input, const at::Tensor& offset_mask, const Geometry& geo) {
  auto output = at::empty({geo.batch, geo.height_out, geo.width_out, geo.channels()}, input.options());
  const int64_t rows = geo.batch * geo.height_out;
  if (rows == 0 || output.numel() == 0) return output;
  const bool avx2 = use_avx2();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcnv4_cpu_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* input_ptr = input.const_data_ptr<scalar_t>();
    const scalar_t* offset_mask_ptr = offset_mask.const_data_ptr<scalar_t>();
    scalar_t* output_ptr = output.mutable_data_ptr<scalar_t>();
    dispatch_group_channels(geo.group_channels, [&](auto gc_constant) {
      constexpr int GC = decltype(gc_constant)::value;
      // Tasks are runs of output rows (of the flattened (n, h_out)); every output element is written by one task.
      const int64_t row_work = work_per_pixel_group(geo) * geo.width_out * geo.group;
      at::parallel_for(0, rows, std::max<int64_t>(1, kMinTaskWork / row_work), [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end;) {
          const int64_t n = row / geo.height_out;
          const int row_begin = static_cast<int>(row % geo.height_out);
          const int row_end = static_cast<int>(std::min<int64_t>(geo.height_out, row_begin + (end - row)));
          run_forward<scalar_t, acc_t, GC>(avx2, geo, input_ptr, offset_mask_ptr, output_ptr, n, row_begin,
                                           row_end);
          row += row_end - row_begin;
        }
      });
    });
  });
  return output;
}

// Backward without atomics. Group g of sample n only scatters into grad_input[n, :, :, g*D:(g+1)*D], so with at
// least as many (sample, group) slices as useful threads each task owns whole slices; with fewer (one image, few groups)
// the output rows are split among threads instead, each scattering into a private zeroed buffer, summed afterwards.
// Either way each grad_offset_mask entry of (pixel, group, point) is written by exactly one task, and the result does
// not depend on the number of threads. The input and its gradient are handled in group-major layout (N, G, H, W, D).
std::vector<at::Tensor> cpu_backward(const at::Tensor& input, const at::Tensor& offset_mask,
                                     const at::Tensor& grad_output, const Geometry& geo) {
  // Every non-padding entry is written below: only the padding tail needs zeros.
  auto grad_offset_mask = at::empty_like(offset_mask);
  const int64_t used = static_cast<int64_t>(geo.group) * geo.group_stride();
  grad_offset_mask.narrow(3, used, geo.offset_mask_channels - used).zero_();
  const int64_t gc = geo.group_channels;
  const at::ScalarType acc_type = at::toOpMathType(input.scalar_type());
  const at::Tensor input_gm =
      input.view({geo.batch, geo.height_in, geo.width_in, geo.group, gc}).permute({0, 3, 1, 2, 4}).contiguous();
  at::Tensor grad_input_gm = at::zeros(input_gm.sizes(), input.options().dtype(acc_type));
  const int64_t slice_size = static_cast<int64_t>(geo.height_in) * geo.width_in * gc;
  const int64_t slices = geo.batch * geo.group;
  // Backward work per (pixel, group) is about twice the forward's (a dot product and an axpy per corner).
  const int64_t slice_work = 2 * work_per_pixel_group(geo) * geo.height_out * geo.width_out;
  const int threads = static_cast<int>(
      std::clamp<int64_t>(slice_work * slices / kMinTaskWork, 1, std::max(1, at::get_num_threads())));
  const bool avx2 = use_avx2();

  if (grad_offset_mask.numel() > 0 && input.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcnv4_cpu_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const scalar_t* input_ptr = input_gm.const_data_ptr<scalar_t>();
      const scalar_t* offset_mask_ptr = offset_mask.const_data_ptr<scalar_t>();
      const scalar_t* grad_output_ptr = grad_output.const_data_ptr<scalar_t>();
      scalar_t* grad_offset_mask_ptr = grad_offset_mask.mutable_data_ptr<scalar_t>();
      dispatch_group_channels(geo.group_channels, [&](auto gc_constant) {
        constexpr int GC = decltype(gc_constant)::value;
        // Slices [slice_begin, slice_end) over output rows [row_begin, row_end), scattering into grad_target.
        const auto run_slices = [&](acc_t* grad_target, int64_t slice_begin, int64_t slice_end, int row_begin,
                                    int row_end) {
          for (int64_t slice = slice_begin; slice < slice_end; ++slice) {
            run_backward<scalar_t, acc_t, GC>(avx2, geo, input_ptr + slice * slice_size, offset_mask_ptr,
                                              grad_output_ptr, grad_target + slice * slice_size,
                                              grad_offset_mask_ptr, slice / geo.group,
                                              static_cast<int>(slice % geo.group), row_begin, row_end);
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
  grad_input = grad_input.to(input.scalar_type()).contiguous();
  return {grad_input, grad_offset_mask};
}

}  // namespace dcnv4
