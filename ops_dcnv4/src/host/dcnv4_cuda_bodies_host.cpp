// Host harness of the CUDA kernels' per-thread bodies (common/dcnv4_cuda_bodies.h): every thread index of the CUDA
// launch is run here, in parallel, with dcn::host_atomic_add standing in for atomicAdd. The outputs must
// equal the reference's (tests/ops_dcnv4, tests named *cuda*): what the CUDA kernel computes, short of its launch.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <limits>
#include <vector>

#include "../common/dcnv4_cuda_bodies.h"
#include "../dcnv4.h"

namespace dcnv4 {
namespace {

struct HostAtomicAdd {
  template <typename T>
  void operator()(T* address, T value) const {
    dcn::host_atomic_add(address, value);
  }
};

}  // namespace

at::Tensor cuda_bodies_forward_host(const at::Tensor& input, const at::Tensor& offset_mask, const Geometry& geo) {
  auto output = at::empty({geo.batch, geo.height_out, geo.width_out, geo.channels()}, input.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcnv4_cuda_bodies_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* input_ptr = input.const_data_ptr<scalar_t>();
    const scalar_t* offset_mask_ptr = offset_mask.const_data_ptr<scalar_t>();
    scalar_t* output_ptr = output.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, output.numel(), 1024, [&](int64_t begin, int64_t end) {
      for (int64_t element = begin; element < end; ++element) {
        cuda_bodies::forward_element<scalar_t, acc_t>(geo, input_ptr, offset_mask_ptr, output_ptr, element);
      }
    });
  });
  return output;
}

std::vector<at::Tensor> cuda_bodies_backward_host(const at::Tensor& input, const at::Tensor& offset_mask,
                                                    const at::Tensor& grad_output, const Geometry& geo) {
  // NaN in every entry first, so an entry the bodies fail to write shows up; the padding tail is zeroed as the CUDA
  // launcher does.
  auto grad_offset_mask = at::full_like(offset_mask, std::numeric_limits<double>::quiet_NaN());
  const int64_t used = static_cast<int64_t>(geo.group) * geo.group_stride();
  grad_offset_mask.narrow(3, used, geo.offset_mask_channels - used).zero_();
  auto grad_input_acc = at::zeros(input.sizes(), input.options().dtype(at::toOpMathType(input.scalar_type())));
  const int64_t total = geo.batch * geo.height_out * geo.width_out * geo.group * geo.kernel_points();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dcnv4_cuda_bodies_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* input_ptr = input.const_data_ptr<scalar_t>();
    const scalar_t* offset_mask_ptr = offset_mask.const_data_ptr<scalar_t>();
    const scalar_t* grad_output_ptr = grad_output.const_data_ptr<scalar_t>();
    acc_t* grad_input_ptr = grad_input_acc.mutable_data_ptr<acc_t>();
    scalar_t* grad_offset_mask_ptr = grad_offset_mask.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, total, 256, [&](int64_t begin, int64_t end) {
      for (int64_t point = begin; point < end; ++point) {
        cuda_bodies::backward_point<scalar_t, acc_t>(geo, input_ptr, offset_mask_ptr, grad_output_ptr,
                                                     grad_input_ptr, grad_offset_mask_ptr, point, HostAtomicAdd());
      }
    });
  });
  return {grad_input_acc.to(input.scalar_type()), grad_offset_mask};
}

}  // namespace dcnv4
