// Python bindings of ops_dcnv4._C: argument checks, then the CPU or CUDA implementation.
#include <torch/extension.h>

#include <sstream>
#include <string>
#include <vector>

#include "dcnv4.h"

namespace dcnv4 {
namespace {

std::string shape_str(at::IntArrayRef sizes) {
  std::ostringstream out;
  out << "(";
  for (size_t i = 0; i < sizes.size(); ++i) out << (i ? ", " : "") << sizes[i];
  out << ")";
  return out.str();
}

// Checks every argument (each failure is one line naming it) and returns the call's geometry.
Geometry make_geometry(const at::Tensor& input, const at::Tensor& offset_mask, int kernel_h, int kernel_w,
                       int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h, int dilation_w, int group,
                       int group_channels, double offset_scale, int im2col_step, int remove_center) {
  TORCH_CHECK(input.defined() && input.dim() == 4,
              "dcnv4: input must be a 4-D channels-last tensor (N, H, W, C), got shape ",
              input.defined() ? shape_str(input.sizes()) : std::string("undefined"));
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), "dcnv4: input must be floating point, got ",
              input.scalar_type());
  TORCH_CHECK(offset_mask.defined() && offset_mask.dim() == 4,
              "dcnv4: offset_mask must be a 4-D channels-last tensor, got shape ",
              offset_mask.defined() ? shape_str(offset_mask.sizes()) : std::string("undefined"));
  TORCH_CHECK(offset_mask.scalar_type() == input.scalar_type(), "dcnv4: offset_mask has dtype ",
              offset_mask.scalar_type(), " but input has dtype ", input.scalar_type());
  TORCH_CHECK(offset_mask.device() == input.device(), "dcnv4: offset_mask is on ", offset_mask.device(),
              " but input is on ", input.device());
  TORCH_CHECK(kernel_h >= 1 && kernel_w >= 1, "dcnv4: kernel_h and kernel_w must be >= 1, got ", kernel_h, ", ",
              kernel_w);
  TORCH_CHECK(stride_h >= 1 && stride_w >= 1, "dcnv4: stride_h and stride_w must be >= 1, got ", stride_h, ", ",
              stride_w);
  TORCH_CHECK(pad_h >= 0 && pad_w >= 0, "dcnv4: pad_h and pad_w must be >= 0, got ", pad_h, ", ", pad_w);
  TORCH_CHECK(dilation_h >= 1 && dilation_w >= 1, "dcnv4: dilation_h and dilation_w must be >= 1, got ",
              dilation_h, ", ", dilation_w);
  TORCH_CHECK(group >= 1 && group_channels >= 1, "dcnv4: group and group_channels must be >= 1, got ", group, ", ",
              group_channels);
  TORCH_CHECK(im2col_step >= 1, "dcnv4: im2col_step must be >= 1, got ", im2col_step);
  TORCH_CHECK(remove_center == 0 || remove_center == 1, "dcnv4: remove_center must be 0 or 1, got ",
              remove_center);
  TORCH_CHECK(!remove_center || kernel_h * kernel_w > 1,
              "dcnv4: remove_center needs a kernel with more than one point, got a 1 x 1 kernel");
  TORCH_CHECK(input.size(3) == static_cast<int64_t>(group) * group_channels,
              "dcnv4: input must be channels-last (N, H, W, C) with C = group * group_channels = ", group, " * ",
              group_channels, " = ", static_cast<int64_t>(group) * group_channels, ", got shape ",
              shape_str(input.sizes()));
  Geometry geo{};
  geo.batch = input.size(0);
  geo.height_in = static_cast<int>(input.size(1));
  geo.width_in = static_cast<int>(input.size(2));
  geo.kernel_h = kernel_h, geo.kernel_w = kernel_w, geo.stride_h = stride_h, geo.stride_w = stride_w;
  geo.pad_h = pad_h, geo.pad_w = pad_w, geo.dilation_h = dilation_h, geo.dilation_w = dilation_w;
  geo.group = group, geo.group_channels = group_channels, geo.offset_scale = offset_scale;
  geo.remove_center = remove_center;
  const int64_t height_out = (geo.height_in + 2 * pad_h - (dilation_h * (kernel_h - 1) + 1)) / stride_h + 1;
  const int64_t width_out = (geo.width_in + 2 * pad_w - (dilation_w * (kernel_w - 1) + 1)) / stride_w + 1;
  TORCH_CHECK(height_out >= 1 && width_out >= 1, "dcnv4: input of shape ", shape_str(input.sizes()),
              " is too small for the kernel geometry (output would be ", height_out, " x ", width_out, ")");
  geo.height_out = static_cast<int>(height_out);
  geo.width_out = static_cast<int>(width_out);
  const int64_t points = static_cast<int64_t>(kernel_h) * kernel_w - remove_center;
  const int64_t channels = (group * points * 3 + 7) / 8 * 8;
  const std::vector<int64_t> expected = {geo.batch, height_out, width_out, channels};
  TORCH_CHECK(offset_mask.sizes() == at::IntArrayRef(expected), "dcnv4: offset_mask must have shape ",
              shape_str(expected), " (N, H_out, W_out, group * 3K = ", group, " * 3 * ", points,
              " rounded up to a multiple of 8) for this input and kernel geometry, got ",
              shape_str(offset_mask.sizes()));
  geo.offset_mask_channels = static_cast<int>(channels);
  return geo;
}

void check_grad_output(const at::Tensor& grad_output, const at::Tensor& input, const Geometry& geo) {
  const std::vector<int64_t> expected = {geo.batch, geo.height_out, geo.width_out, geo.channels()};
  TORCH_CHECK(grad_output.defined() && grad_output.sizes() == at::IntArrayRef(expected),
              "dcnv4: grad_output must have shape ", shape_str(expected), ", got ",
              grad_output.defined() ? shape_str(grad_output.sizes()) : std::string("undefined"));
  TORCH_CHECK(grad_output.scalar_type() == input.scalar_type() && grad_output.device() == input.device(),
              "dcnv4: grad_output must have the input's dtype and device (", input.scalar_type(), ", ",
              input.device(), "), got ", grad_output.scalar_type(), ", ", grad_output.device());
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
  if (input.is_cuda()) {
#ifdef WITH_CUDA
    return cuda_forward(input, offset_mask, geo);
#else
    TORCH_CHECK(false, "dcnv4: input is a CUDA tensor but ops_dcnv4._C was built without CUDA");
#endif
  }
  TORCH_CHECK(input.is_cpu(), "dcnv4: input must be a CPU or CUDA tensor, got device ", input.device());
  return cpu_forward(input, offset_mask, geo);
}

std::vector<at::Tensor> backward(const at::Tensor& input_, const at::Tensor& offset_mask_,
                                 const at::Tensor& grad_output_, DCNV4_GEOMETRY_PARAMS) {
  const Geometry geo = make_geometry(input_, offset_mask_, DCNV4_GEOMETRY_ARGS);
  check_grad_output(grad_output_, input_, geo);
  const auto input = input_.contiguous(), offset_mask = offset_mask_.contiguous();
  const auto grad_output = grad_output_.contiguous();
  if (input.is_cuda()) {
#ifdef WITH_CUDA
    return cuda_backward(input, offset_mask, grad_output, geo);
#else
    TORCH_CHECK(false, "dcnv4: input is a CUDA tensor but ops_dcnv4._C was built without CUDA");
#endif
  }
  TORCH_CHECK(input.is_cpu(), "dcnv4: input must be a CPU or CUDA tensor, got device ", input.device());
  return cpu_backward(input, offset_mask, grad_output, geo);
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
