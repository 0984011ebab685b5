// Python bindings of ops_dcnv4._C: invariant checks, then the CPU or CUDA implementation.
//
// Argument validation has one source of truth: ops_dcnv4.functions.check_dcnv4_args (Python), which every caller
// (DCNv4Function, the PyTorch core, the tests) runs first and whose messages users see. The checks here only guard
// the invariants the kernels rely on for memory safety; a failure means the extension was called directly with
// arguments check_dcnv4_args would have refused, and the message says which invariant failed and where to look.
#include <torch/extension.h>

#include <string>
#include <vector>

#include "dcn_binding.h"
#include "dcnv4.h"

#define DCNV4_CHECK_INVARIANT(condition)                                                                     \
  TORCH_CHECK(condition, "dcnv4: invariant `" #condition "` does not hold: ops_dcnv4._C expects arguments " \
              "validated by ops_dcnv4.functions.check_dcnv4_args (call DCNv4Function, which runs it)")

namespace dcnv4 {
namespace {

Geometry make_geometry(const at::Tensor& input, const at::Tensor& offset_mask, int kernel_h, int kernel_w,
                       int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h, int dilation_w, int group,
                       int group_channels, double offset_scale, int im2col_step, int remove_center) {
  DCNV4_CHECK_INVARIANT(input.defined() && offset_mask.defined() && input.dim() == 4 && offset_mask.dim() == 4);
  DCNV4_CHECK_INVARIANT(offset_mask.scalar_type() == input.scalar_type());
  DCNV4_CHECK_INVARIANT(offset_mask.device() == input.device());
  DCN_CHECK_GEOMETRY_INVARIANTS(DCNV4_CHECK_INVARIANT);
  DCNV4_CHECK_INVARIANT((remove_center == 0 || remove_center == 1) && (!remove_center || kernel_h * kernel_w > 1));
  Geometry geo{};
  dcn::fill_geometry(geo, input, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, group,
                     group_channels, offset_scale);
  geo.remove_center = remove_center;
  DCNV4_CHECK_INVARIANT(geo.height_out >= 1 && geo.width_out >= 1);
  const int64_t height_out = geo.height_out, width_out = geo.width_out;
  const int64_t points = static_cast<int64_t>(kernel_h) * kernel_w - remove_center;
  const int64_t channels = (group * points * 3 + 7) / 8 * 8;
  DCNV4_CHECK_INVARIANT(offset_mask.sizes() == at::IntArrayRef({geo.batch, height_out, width_out, channels}));
  geo.offset_mask_channels = static_cast<int>(channels);
  return geo;
}

void check_grad_output(const at::Tensor& grad_output, const at::Tensor& input, const Geometry& geo) {
  DCNV4_CHECK_INVARIANT(grad_output.defined() && grad_output.scalar_type() == input.scalar_type() &&
                        grad_output.device() == input.device());
  DCNV4_CHECK_INVARIANT(grad_output.sizes() ==
                        at::IntArrayRef({geo.batch, geo.height_out, geo.width_out, geo.channels()}));
}

#define DCNV4_GEOMETRY_PARAMS                                                                                   \
  int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h, int dilation_w, \
      int group, int group_channels, double offset_scale, int im2col_step, int remove_center
#define DCNV4_GEOMETRY_ARGS                                                                                      \
  kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, group, group_channels,           \
      offset_scale, im2col_step, remove_center

}  // namespace

// im2col_step is accepted for API compatibility with the original; these kernels need no im2col buffer and process
// the whole batch at once, so it changes nothing (nor does the batch need to be divisible by it).
at::Tensor forward(const at::Tensor& input_, const at::Tensor& offset_mask_, DCNV4_GEOMETRY_PARAMS) {
  const Geometry geo = make_geometry(input_, offset_mask_, DCNV4_GEOMETRY_ARGS);
  const auto input = input_.contiguous(), offset_mask = offset_mask_.contiguous();
  return dcn::on_device(
      input, "dcnv4", [&] { return cuda_forward(input, offset_mask, geo); },
      [&] { return cpu_forward(input, offset_mask, geo); });
}

std::vector<at::Tensor> backward(const at::Tensor& input_, const at::Tensor& offset_mask_,
                                 const at::Tensor& grad_output_, DCNV4_GEOMETRY_PARAMS) {
  const Geometry geo = make_geometry(input_, offset_mask_, DCNV4_GEOMETRY_ARGS);
  check_grad_output(grad_output_, input_, geo);
  const auto input = input_.contiguous(), offset_mask = offset_mask_.contiguous();
  const auto grad_output = grad_output_.contiguous();
  return dcn::on_device(
      input, "dcnv4", [&] { return cuda_backward(input, offset_mask, grad_output, geo); },
      [&] { return cpu_backward(input, offset_mask, grad_output, geo); });
}

at::Tensor bodies_forward_host(const at::Tensor& input_, const at::Tensor& offset_mask_, DCNV4_GEOMETRY_PARAMS) {
  const Geometry geo = make_geometry(input_, offset_mask_, DCNV4_GEOMETRY_ARGS);
  TORCH_CHECK(input_.is_cpu(), "dcnv4: the CUDA-bodies harness runs on CPU tensors, got device ", input_.device());
  return cuda_bodies_forward_host(input_.contiguous(), offset_mask_.contiguous(), geo);
}

std::vector<at::Tensor> bodies_backward_host(const at::Tensor& input_, const at::Tensor& offset_mask_,
                                        const at::Tensor& grad_output_, DCNV4_GEOMETRY_PARAMS) {
  const Geometry geo = make_geometry(input_, offset_mask_, DCNV4_GEOMETRY_ARGS);
  check_grad_output(grad_output_, input_, geo);
  TORCH_CHECK(input_.is_cpu(), "dcnv4: the CUDA-bodies harness runs on CPU tensors, got device ", input_.device());
  return cuda_bodies_backward_host(input_.contiguous(), offset_mask_.contiguous(), grad_output_.contiguous(), geo);
}

}  // namespace dcnv4

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "DCNv4 deformable convolution core (CPU kernel, and CUDA kernel when built with CUDA)";
  m.def("dcnv4_forward", &dcnv4::forward,
        "DCNv4 forward (input, offset_mask, 10 geometry arguments, offset_scale, im2col_step, remove_center)");
  m.def("dcnv4_backward", &dcnv4::backward,
        "DCNv4 backward (input, offset_mask, grad_output, the forward's 13 arguments) -> "
        "[grad_input, grad_offset_mask]");
  m.def("cuda_bodies_forward_host", &dcnv4::bodies_forward_host,
        "The CUDA forward kernel's per-thread body run on the CPU over every thread index (dcnv4_forward's arguments)");
  m.def("cuda_bodies_backward_host", &dcnv4::bodies_backward_host,
        "The CUDA backward kernel's per-thread body run on the CPU, host atomics (dcnv4_backward's arguments)");
  m.def("cpu_isa", &dcnv4::cpu_isa, "CPU code path in use: 'avx2' or 'baseline'");
#ifdef WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}
