// Python bindings of ops_dcnv3._C: invariant checks, then the CPU or CUDA implementation.
//
// Argument validation has one source of truth: ops_dcnv3.functions.check_dcnv3_args (Python), which every caller
// (DCNv3Function, the PyTorch core, the tests) runs first and whose messages users see. The checks here only guard
// the invariants the kernels rely on for memory safety; a failure means the extension was called directly with
// arguments check_dcnv3_args would have refused, and the message says which invariant failed and where to look.
#include <torch/extension.h>

#include <string>
#include <vector>

#include "dcn_binding.h"
#include "dcnv3.h"

#define DCNV3_CHECK_INVARIANT(condition)                                                                     \
  TORCH_CHECK(condition, "dcnv3: invariant `" #condition "` does not hold: ops_dcnv3._C expects arguments " \
              "validated by ops_dcnv3.functions.check_dcnv3_args (call DCNv3Function, which runs it)")

namespace dcnv3 {
namespace {

Geometry make_geometry(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask, int kernel_h,
                       int kernel_w, int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h,
                       int dilation_w, int group, int group_channels, double offset_scale, int im2col_step,
                       bool mask_softmax) {
  DCNV3_CHECK_INVARIANT(input.dim() == 4 && offset.dim() == 4 && mask.dim() == 4);
  DCNV3_CHECK_INVARIANT(offset.scalar_type() == input.scalar_type() && mask.scalar_type() == input.scalar_type());
  DCNV3_CHECK_INVARIANT(offset.device() == input.device() && mask.device() == input.device());
  DCN_CHECK_GEOMETRY_INVARIANTS(DCNV3_CHECK_INVARIANT);
  Geometry geo;
  dcn::fill_geometry(geo, input, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, group,
                     group_channels, offset_scale);
  geo.mask_softmax = mask_softmax;
  DCNV3_CHECK_INVARIANT(geo.height_out >= 1 && geo.width_out >= 1);
  const int64_t height_out = geo.height_out, width_out = geo.width_out;
  const int64_t points = static_cast<int64_t>(group) * kernel_h * kernel_w;
  DCNV3_CHECK_INVARIANT(offset.sizes() == at::IntArrayRef({geo.batch, height_out, width_out, points * 2}));
  DCNV3_CHECK_INVARIANT(mask.sizes() == at::IntArrayRef({geo.batch, height_out, width_out, points}));
  return geo;
}

void check_grad_output(const at::Tensor& grad_output, const at::Tensor& input, const Geometry& geo) {
  DCNV3_CHECK_INVARIANT(grad_output.scalar_type() == input.scalar_type() && grad_output.device() == input.device());
  DCNV3_CHECK_INVARIANT(grad_output.sizes() ==
                        at::IntArrayRef({geo.batch, geo.height_out, geo.width_out, geo.channels()}));
}

}  // namespace

// im2col_step is accepted for API compatibility with upstream; these kernels need no im2col buffer and process the
// whole batch at once, so it does not change anything (nor does the batch need to be divisible by it).
at::Tensor forward(const at::Tensor& input_, const at::Tensor& offset_, const at::Tensor& mask_, int kernel_h,
                   int kernel_w, int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h, int dilation_w,
                   int group, int group_channels, double offset_scale, int im2col_step, bool mask_softmax) {
  const Geometry geo = make_geometry(input_, offset_, mask_, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                                     dilation_h, dilation_w, group, group_channels, offset_scale, im2col_step,
                                     mask_softmax);
  const auto input = input_.contiguous(), offset = offset_.contiguous(), mask = mask_.contiguous();
  return dcn::on_device(
      input, "dcnv3", [&] { return cuda_forward(input, offset, mask, geo); },
      [&] { return cpu_forward(input, offset, mask, geo); });
}

std::vector<at::Tensor> backward(const at::Tensor& input_, const at::Tensor& offset_, const at::Tensor& mask_,
                                 int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_h, int pad_w,
                                 int dilation_h, int dilation_w, int group, int group_channels, double offset_scale,
                                 const at::Tensor& grad_output_, int im2col_step, bool mask_softmax) {
  const Geometry geo = make_geometry(input_, offset_, mask_, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                                     dilation_h, dilation_w, group, group_channels, offset_scale, im2col_step,
                                     mask_softmax);
  check_grad_output(grad_output_, input_, geo);
  const auto input = input_.contiguous(), offset = offset_.contiguous(), mask = mask_.contiguous();
  const auto grad_output = grad_output_.contiguous();
  return dcn::on_device(
      input, "dcnv3", [&] { return cuda_backward(input, offset, mask, grad_output, geo); },
      [&] { return cpu_backward(input, offset, mask, grad_output, geo); });
}

// The host harness of the CUDA kernel bodies, for the tests: same arguments as forward/backward plus `pack`.
at::Tensor bodies_forward_host(const at::Tensor& input_, const at::Tensor& offset_, const at::Tensor& mask_,
                               int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_h, int pad_w,
                               int dilation_h, int dilation_w, int group, int group_channels, double offset_scale,
                               int im2col_step, int pack, bool mask_softmax) {
  const Geometry geo = make_geometry(input_, offset_, mask_, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                                     dilation_h, dilation_w, group, group_channels, offset_scale, im2col_step,
                                     mask_softmax);
  DCNV3_CHECK_INVARIANT(input_.is_cpu());
  return cuda_bodies_forward_host(input_.contiguous(), offset_.contiguous(), mask_.contiguous(), geo, pack);
}

std::vector<at::Tensor> bodies_backward_host(const at::Tensor& input_, const at::Tensor& offset_,
                                             const at::Tensor& mask_, int kernel_h, int kernel_w, int stride_h,
                                             int stride_w, int pad_h, int pad_w, int dilation_h, int dilation_w,
                                             int group, int group_channels, double offset_scale,
                                             const at::Tensor& grad_output_, int im2col_step, int pack,
                                             bool mask_softmax) {
  const Geometry geo = make_geometry(input_, offset_, mask_, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                                     dilation_h, dilation_w, group, group_channels, offset_scale, im2col_step,
                                     mask_softmax);
  check_grad_output(grad_output_, input_, geo);
  DCNV3_CHECK_INVARIANT(input_.is_cpu());
  return cuda_bodies_backward_host(input_.contiguous(), offset_.contiguous(), mask_.contiguous(),
                                   grad_output_.contiguous(), geo, pack);
}

}  // namespace dcnv3

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace py = pybind11;
  m.doc() = "DCNv3 deformable convolution core (CPU kernel, and CUDA kernel when built with CUDA)";
  // Upstream's 15 arguments: 3 tensors, 10 integer geometry arguments, offset_scale, im2col_step (backward: 16,
  // grad_output between offset_scale and im2col_step), then this project's optional mask_softmax (the mask holds
  // logits and the kernels apply the softmax over each group's points). py::arg names make them part of the
  // docstring.
#define DCNV3_GEOMETRY_ARGS                                                                                     \
  py::arg("kernel_h"), py::arg("kernel_w"), py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_h"),         \
      py::arg("pad_w"), py::arg("dilation_h"), py::arg("dilation_w"), py::arg("group"), py::arg("group_channels"), \
      py::arg("offset_scale")
  m.def("dcnv3_forward", &dcnv3::forward,
        "DCNv3 forward (16 arguments: upstream's 15, then mask_softmax) -> output (N, H_out, W_out, "
        "group * group_channels)",
        py::arg("input"), py::arg("offset"), py::arg("mask"), DCNV3_GEOMETRY_ARGS, py::arg("im2col_step"),
        py::arg("mask_softmax") = false);
  m.def("dcnv3_backward", &dcnv3::backward,
        "DCNv3 backward (17 arguments: upstream's 16, then mask_softmax) -> [grad_input, grad_offset, grad_mask] "
        "(with mask_softmax, grad_mask is the gradient of the logits)",
        py::arg("input"), py::arg("offset"), py::arg("mask"), DCNV3_GEOMETRY_ARGS, py::arg("grad_output"),
        py::arg("im2col_step"), py::arg("mask_softmax") = false);
  m.def("cuda_bodies_forward_host", &dcnv3::bodies_forward_host,
        "Test-only: the CUDA forward kernel's per-thread body run on the host for every thread index (17 "
        "arguments: dcnv3_forward's first 15, then pack = channels per thread, 0 = the launcher's choice, then "
        "mask_softmax)",
        py::arg("input"), py::arg("offset"), py::arg("mask"), DCNV3_GEOMETRY_ARGS, py::arg("im2col_step"),
        py::arg("pack") = 0, py::arg("mask_softmax") = false);
  m.def("cuda_bodies_backward_host", &dcnv3::bodies_backward_host,
        "Test-only: the CUDA backward kernels' per-thread bodies run on the host for every thread index (18 "
        "arguments: dcnv3_backward's first 16, then pack, then mask_softmax) -> [grad_input, grad_offset, grad_mask]",
        py::arg("input"), py::arg("offset"), py::arg("mask"), DCNV3_GEOMETRY_ARGS, py::arg("grad_output"),
        py::arg("im2col_step"), py::arg("pack") = 0, py::arg("mask_softmax") = false);
#undef DCNV3_GEOMETRY_ARGS
  m.def("cpu_isa", &dcnv3::cpu_isa, "CPU code path in use: 'avx2' or 'baseline'");
#ifdef WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}
