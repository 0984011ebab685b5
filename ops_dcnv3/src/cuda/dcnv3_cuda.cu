// DCNv3 CUDA launchers. Each kernel is a thin grid-stride wrapper around a per-thread body of
// common/dcnv3_cuda_bodies.h (the same bodies the host harness runs in the CPU test suite); this file only picks the
// pack width, allocates the outputs and launches. Thread mapping: docs/dcnv3_operator.md, "CUDA thread mapping and
// the host harness".
// Only c10/cuda headers: ATen/cuda/CUDAContext.h would also need the cuBLAS/cuSPARSE headers, which minimal
// toolkits do not ship.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "../common/dcnv3_cuda_bodies.h"
#include "../dcnv3.h"

namespace dcnv3 {
namespace {

constexpr int kThreads = 256;

// Grid-stride loops: the grid size is capped, every thread handles as many items as needed.
int64_t blocks_for(int64_t work) {
  return std::max<int64_t>(1, std::min<int64_t>((work + kThreads - 1) / kThreads, int64_t(1) << 22));
}

#define DCNV3_GRID_STRIDE_LOOP(index, total)                                                       \
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < (total); \
       index += static_cast<int64_t>(blockDim.x) * gridDim.x)

template <int PACK, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) forward_kernel(const Geometry geo, const scalar_t* __restrict__ input,
                                                           const scalar_t* __restrict__ offset,
                                                           const scalar_t* __restrict__ mask,
                                                           scalar_t* __restrict__ output, int64_t total) {
  DCNV3_GRID_STRIDE_LOOP(thread, total) {
    forward_thread<PACK, scalar_t, acc_t>(geo, thread, input, offset, mask, output);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) backward_input_kernel(const Geometry geo,
                                                                  const scalar_t* __restrict__ offset,
                                                                  const scalar_t* __restrict__ mask,
                                                                  const scalar_t* __restrict__ grad_output,
                                                                  acc_t* grad_input, int64_t total) {
  DCNV3_GRID_STRIDE_LOOP(thread, total) {
    backward_input_thread<scalar_t, acc_t>(geo, thread, offset, mask, grad_output, grad_input);
  }
}

template <int PACK, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) backward_offset_mask_kernel(
    const Geometry geo, const scalar_t* __restrict__ input, const scalar_t* __restrict__ offset,
    const scalar_t* __restrict__ mask, const scalar_t* __restrict__ grad_output, scalar_t* __restrict__ grad_offset,
    scalar_t* __restrict__ grad_mask, int64_t total) {
  DCNV3_GRID_STRIDE_LOOP(thread, total) {
    backward_offset_mask_thread<PACK, scalar_t, acc_t>(geo, thread, input, offset, mask, grad_output, grad_offset,
                                                       grad_mask);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) backward_softmax_kernel(const Geometry geo,
                                                                    const scalar_t* __restrict__ mask,
                                                                    scalar_t* __restrict__ grad_mask, int64_t total) {
  DCNV3_GRID_STRIDE_LOOP(thread, total) { backward_softmax_thread<scalar_t, acc_t>(geo, thread, mask, grad_mask); }
}

}  // namespace

at::Tensor cuda_forward(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                        const Geometry& geo) {
  const c10::cuda::CUDAGuard device_guard(input.device());
  auto output = at::empty({geo.batch, geo.height_out, geo.width_out, geo.channels()}, input.options());
  if (output.numel() == 0) return output;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const int pack = choose_pack(geo.group_channels, static_cast<int>(input.element_size()),
                               pack_aligned({input.const_data_ptr(), output.const_data_ptr()}));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcnv3_cuda_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    constexpr int kWide = kMaxPackBytes / sizeof(scalar_t);
    const int64_t total = forward_threads(geo, pack);
    const auto launch = [&](auto kernel) {
      kernel<<<blocks_for(total), kThreads, 0, stream>>>(geo, input.const_data_ptr<scalar_t>(),
                                                         offset.const_data_ptr<scalar_t>(),
                                                         mask.const_data_ptr<scalar_t>(),
                                                         output.mutable_data_ptr<scalar_t>(), total);
    };
    if (pack == kWide) {
      launch(forward_kernel<kWide, scalar_t, acc_t>);
    } else {
      launch(forward_kernel<1, scalar_t, acc_t>);
    }
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
  if (mask.numel() > 0 && input.numel() > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    const int pack = choose_pack(geo.group_channels, static_cast<int>(input.element_size()),
                                 pack_aligned({input.const_data_ptr(), grad_output.const_data_ptr()}));
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcnv3_cuda_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      constexpr int kWide = kMaxPackBytes / sizeof(scalar_t);
      const int64_t input_threads = backward_input_threads(geo);
      backward_input_kernel<scalar_t, acc_t><<<blocks_for(input_threads), kThreads, 0, stream>>>(
          geo, offset.const_data_ptr<scalar_t>(), mask.const_data_ptr<scalar_t>(),
          grad_output.const_data_ptr<scalar_t>(), grad_input_acc.mutable_data_ptr<acc_t>(), input_threads);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      const int64_t point_threads = backward_offset_mask_threads(geo);
      const auto launch = [&](auto kernel) {
        kernel<<<blocks_for(point_threads), kThreads, 0, stream>>>(
            geo, input.const_data_ptr<scalar_t>(), offset.const_data_ptr<scalar_t>(), mask.const_data_ptr<scalar_t>(),
            grad_output.const_data_ptr<scalar_t>(), grad_offset.mutable_data_ptr<scalar_t>(),
            grad_mask.mutable_data_ptr<scalar_t>(), point_threads);
      };
      if (pack == kWide) {
        launch(backward_offset_mask_kernel<kWide, scalar_t, acc_t>);
      } else {
        launch(backward_offset_mask_kernel<1, scalar_t, acc_t>);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (geo.mask_softmax) {
        const int64_t softmax_threads = backward_softmax_threads(geo);
        backward_softmax_kernel<scalar_t, acc_t><<<blocks_for(softmax_threads), kThreads, 0, stream>>>(
            geo, mask.const_data_ptr<scalar_t>(), grad_mask.mutable_data_ptr<scalar_t>(), softmax_threads);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    });
  }
  auto grad_input = grad_input_acc.scalar_type() == input.scalar_type() ? grad_input_acc
                                                                         : grad_input_acc.to(input.scalar_type());
  return {grad_input, grad_offset, grad_mask};
}

}  // namespace dcnv3
