// Host harness of the CUDA kernel bodies (common/dcnv3_cuda_bodies.h): the per-thread functions the CUDA kernels
// run, compiled for the host and called for every thread index of the launch, with the same pack choice, opmath
// accumulation and grad_input buffer as the launchers in cuda/dcnv3_cuda.cu. dcn::host_atomic_add stands in
// for atomicAdd, and threads run concurrently (at::parallel_for), so the scatter is exercised as a real race.
// Test-only: the CPU kernel (dcnv3_cpu.cpp) is the fast path on the CPU.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include "../common/dcnv3_cuda_bodies.h"
#include "../dcnv3.h"

namespace dcnv3 {
namespace {

constexpr int64_t kGrain = 256;

// pack 0: the launcher's choice; otherwise 1 or the widest pack, which must divide group_channels.
int resolve_pack(int requested, const Geometry& geo, const at::Tensor& input, bool aligned) {
  const int element_bytes = static_cast<int>(input.element_size());
  if (requested == 0) return choose_pack(geo.group_channels, element_bytes, aligned);
  const int widest = kMaxPackBytes / element_bytes;
  TORCH_CHECK(requested == 1 || (requested == widest && geo.group_channels % widest == 0 && aligned),
              "dcnv3: pack must be 0 (automatic), 1, or ", widest, " when it divides group_channels (",
              geo.group_channels, ") and the tensors are 16-byte aligned, got ", requested);
  return requested;
}

template <typename Body>
void for_every_thread(int64_t total, const Body& body) {
  at::parallel_for(0, total, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t thread = begin; thread < end; ++thread) body(thread);
  });
}

}  // namespace

at::Tensor cuda_bodies_forward_host(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                                    const Geometry& geo, int pack) {
  auto output = at::empty({geo.batch, geo.height_out, geo.width_out, geo.channels()}, input.options());
  if (output.numel() == 0) return output;
  pack = resolve_pack(pack, geo, input, pack_aligned({input.const_data_ptr(), output.const_data_ptr()}));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcnv3_cuda_bodies_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    constexpr int kWide = kMaxPackBytes / sizeof(scalar_t);
    const scalar_t* input_ptr = input.const_data_ptr<scalar_t>();
    const scalar_t* offset_ptr = offset.const_data_ptr<scalar_t>();
    const scalar_t* mask_ptr = mask.const_data_ptr<scalar_t>();
    scalar_t* output_ptr = output.mutable_data_ptr<scalar_t>();
    const auto run = [&](auto pack_constant) {
      constexpr int kPack = decltype(pack_constant)::value;
      for_every_thread(forward_threads(geo, kPack), [&](int64_t thread) {
        forward_thread<kPack, scalar_t, acc_t>(geo, thread, input_ptr, offset_ptr, mask_ptr, output_ptr);
      });
    };
    if (pack == kWide) {
      run(std::integral_constant<int, kWide>());
    } else {
      run(std::integral_constant<int, 1>());
    }
  });
  return output;
}

std::vector<at::Tensor> cuda_bodies_backward_host(const at::Tensor& input, const at::Tensor& offset,
                                                  const at::Tensor& mask, const at::Tensor& grad_output,
                                                  const Geometry& geo, int pack) {
  auto grad_offset = at::zeros_like(offset);
  auto grad_mask = at::zeros_like(mask);
  auto grad_input_acc = at::zeros(input.sizes(), input.options().dtype(at::toOpMathType(input.scalar_type())));
  if (mask.numel() > 0 && input.numel() > 0) {
    pack = resolve_pack(pack, geo, input, pack_aligned({input.const_data_ptr(), grad_output.const_data_ptr()}));
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcnv3_cuda_bodies_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      constexpr int kWide = kMaxPackBytes / sizeof(scalar_t);
      const scalar_t* input_ptr = input.const_data_ptr<scalar_t>();
      const scalar_t* offset_ptr = offset.const_data_ptr<scalar_t>();
      const scalar_t* mask_ptr = mask.const_data_ptr<scalar_t>();
      const scalar_t* grad_output_ptr = grad_output.const_data_ptr<scalar_t>();
      acc_t* grad_input_ptr = grad_input_acc.mutable_data_ptr<acc_t>();
      scalar_t* grad_offset_ptr = grad_offset.mutable_data_ptr<scalar_t>();
      scalar_t* grad_mask_ptr = grad_mask.mutable_data_ptr<scalar_t>();
      for_every_thread(backward_input_threads(geo), [&](int64_t thread) {
        backward_input_thread<scalar_t, acc_t>(geo, thread, offset_ptr, mask_ptr, grad_output_ptr, grad_input_ptr);
      });
      const auto run_points = [&](auto pack_constant) {
        constexpr int kPack = decltype(pack_constant)::value;
        for_every_thread(backward_offset_mask_threads(geo), [&](int64_t thread) {
          backward_offset_mask_thread<kPack, scalar_t, acc_t>(geo, thread, input_ptr, offset_ptr, mask_ptr,
                                                              grad_output_ptr, grad_offset_ptr, grad_mask_ptr);
        });
      };
      if (pack == kWide) {
        run_points(std::integral_constant<int, kWide>());
      } else {
        run_points(std::integral_constant<int, 1>());
      }
      if (geo.mask_softmax) {  // a separate launch on the device too: it reads every point's weight gradient
        for_every_thread(backward_softmax_threads(geo), [&](int64_t thread) {
          backward_softmax_thread<scalar_t, acc_t>(geo, thread, mask_ptr, grad_mask_ptr);
        });
      }
    });
  }
  auto grad_input = grad_input_acc.scalar_type() == input.scalar_type() ? grad_input_acc
                                                                         : grad_input_acc.to(input.scalar_type());
  return {grad_input, grad_offset, grad_mask};
}

}  // namespace dcnv3
