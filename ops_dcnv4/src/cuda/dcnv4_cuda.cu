// DCNv4 CUDA kernel: thin __global__ grid-stride loops over the per-thread bodies in common/dcnv4_cuda_bodies.h (the same
// bodies the CPU harness runs in the test suite); the sampling math is ops_common/src/dcn_math.h, as for the CPU kernel.
//
// forward:  one thread per output element (pixel, group, channel).
// backward: one thread per (pixel, group, point): it owns that point's offset and mask gradients and scatters the
//           input gradient with atomicAdd into an opmath (float for half/bfloat16) buffer, cast back at the end.
// Only c10/cuda headers: ATen/cuda/CUDAContext.h would also need the cuBLAS/cuSPARSE headers, which minimal
// toolkits do not ship.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "../dcnv4.h"
#include "../common/dcnv4_cuda_bodies.h"

namespace dcnv4 {
namespace {

constexpr int kThreads = 256;

// Grid-stride loops: the grid size is capped, every thread handles as many items as needed.
int64_t blocks_for(int64_t work) {
  return std::max<int64_t>(1, std::min<int64_t>((work + kThreads - 1) / kThreads, int64_t(1) << 22));
}

// Host-and-device like the bodies that call it; only ever run on the device.
struct DeviceAtomicAdd {
  template <typename T>
  __host__ __device__ __forceinline__ void operator()(T* address, T value) const {
#ifdef __CUDA_ARCH__
    atomicAdd(address, value);
#endif
  }
};

template <typename scalar_t, typename acc_t>
__global__ void forward_kernel(const Geometry geo, const scalar_t* __restrict__ input,
                               const scalar_t* __restrict__ offset_mask, scalar_t* __restrict__ output,
                               int64_t total) {
  for (int64_t element = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; element < total;
       element += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    cuda_bodies::forward_element<scalar_t, acc_t>(geo, input, offset_mask, output, element);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void backward_kernel(const Geometry geo, const scalar_t* __restrict__ input,
                                const scalar_t* __restrict__ offset_mask, const scalar_t* __restrict__ grad_output,
                                acc_t* __restrict__ grad_input, scalar_t* __restrict__ grad_offset_mask,
                                int64_t total) {
  for (int64_t point = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; point < total;
       point += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    cuda_bodies::backward_point<scalar_t, acc_t>(geo, input, offset_mask, grad_output, grad_input,
                                                 grad_offset_mask, point, DeviceAtomicAdd());
  }
}

}  // namespace

at::Tensor cuda_forward(const at::Tensor& input, const at::Tensor& offset_mask, const Geometry& geo) {
  const c10::cuda::CUDAGuard device_guard(input.device());
  auto output = at::empty({geo.batch, geo.height_out, geo.width_out, geo.channels()}, input.options());
  const int64_t total = output.numel();
  if (total == 0) return output;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcnv4_cuda_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    forward_kernel<scalar_t, acc_t><<<blocks_for(total), kThreads, 0, stream>>>(
        geo, input.const_data_ptr<scalar_t>(), offset_mask.const_data_ptr<scalar_t>(),
        output.mutable_data_ptr<scalar_t>(), total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return output;
}

std::vector<at::Tensor> cuda_backward(const at::Tensor& input, const at::Tensor& offset_mask,
                                      const at::Tensor& grad_output, const Geometry& geo) {
  const c10::cuda::CUDAGuard device_guard(input.device());
  // Every non-padding entry is written by one thread: only the padding tail needs zeros.
  auto grad_offset_mask = at::empty_like(offset_mask);
  const int64_t used = static_cast<int64_t>(geo.group) * geo.group_stride();
  grad_offset_mask.narrow(3, used, geo.offset_mask_channels - used).zero_();
  auto grad_input_acc = at::zeros(input.sizes(), input.options().dtype(at::toOpMathType(input.scalar_type())));
  const int64_t total = geo.batch * geo.height_out * geo.width_out * geo.group * geo.kernel_points();
  if (total > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcnv4_cuda_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      backward_kernel<scalar_t, acc_t><<<blocks_for(total), kThreads, 0, stream>>>(
          geo, input.const_data_ptr<scalar_t>(), offset_mask.const_data_ptr<scalar_t>(),
          grad_output.const_data_ptr<scalar_t>(), grad_input_acc.mutable_data_ptr<acc_t>(),
          grad_offset_mask.mutable_data_ptr<scalar_t>(), total);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  auto grad_input = grad_input_acc.scalar_type() == input.scalar_type() ? grad_input_acc
                                                                         : grad_input_acc.to(input.scalar_type());
  return {grad_input, grad_offset_mask};
}

}  // namespace dcnv4
