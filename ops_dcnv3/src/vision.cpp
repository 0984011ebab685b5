// Python bindings of ops_dcnv3._C: argument checks, then the CPU or CUDA implementation.
#include <torch/extension.h>

#include <sstream>
#include <string>
#include <vector>

#include "dcnv3.h"

namespace dcnv3 {
namespace {

std::string shape_str(at::IntArrayRef sizes) {
  std::ostringstream out;
  out << "(";
  for (size_t i = 0; i < sizes.size(); ++i) out << (i ? ", " : "") << sizes[i];
  out << ")";
  return out.str();
}

void check_tensor(const at::Tensor& tensor, const char* name, const at::Tensor& input) {
  TORCH_CHECK(tensor.defined(), "dcnv3: ", name, " is undefined");
  TORCH_CHECK(tensor.dim() == 4, "dcnv3: ", name, " must be a 4-D channels-last tensor, got shape ",
              shape_str(tensor.sizes()));
  TORCH_CHECK(tensor.scalar_type() == input.scalar_type(), "dcnv3: ", name, " has dtype ", tensor.scalar_type(),
              " but input has dtype ", input.scalar_type());
  TORCH_CHECK(tensor.device() == input.device(), "dcnv3: ", name, " is on ", tensor.device(),
              " but input is on ", input.device());
}

void check_shape(const at::Tensor& tensor, const char* name, std::vector<int64_t> expected) {
  TORCH_CHECK(tensor.sizes() == at::IntArrayRef(expected), "dcnv3: ", name, " must have shape ",
              shape_str(expected), " (N, H_out, W_out, ...) for this input and kernel geometry, got ",
              shape_str(tensor.sizes()));
}

Geometry make_geometry(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask, int kernel_h,
                       int kernel_w, int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h,
                       int dilation_w, int group, int group_channels, double offset_scale, int im2col_step) {
  TORCH_CHECK(input.defined() && input.dim() == 4,
              "dcnv3: input must be a 4-D channels-last tensor (N, H, W, C), got shape ",
              input.defined() ? shape_str(input.sizes()) : std::string("undefined"));
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), "dcnv3: input must be floating point, got ",
              input.scalar_type());
  check_tensor(offset, "offset", input);
  check_tensor(mask, "mask", input);
  TORCH_CHECK(kernel_h >= 1 && kernel_w >= 1, "dcnv3: kernel_h and kernel_w must be >= 1, got ", kernel_h, ", ",
              kernel_w);
  TORCH_CHECK(stride_h >= 1 && stride_w >= 1, "dcnv3: stride_h and stride_w must be >= 1, got ", stride_h, ", ",
              stride_w);
  TORCH_CHECK(pad_h >= 0 && pad_w >= 0, "dcnv3: pad_h and pad_w must be >= 0, got ", pad_h, ", ", pad_w);
  TORCH_CHECK(dilation_h >= 1 && dilation_w >= 1, "dcnv3: dilation_h and dilation_w must be >= 1, got ",
              dilation_h, ", ", dilation_w);
  TORCH_CHECK(group >= 1 && group_channels >= 1, "dcnv3: group and group_channels must be >= 1, got ", group, ", ",
              group_channels);
  TORCH_CHECK(im2col_step >= 1, "dcnv3: im2col_step must be >= 1, got ", im2col_step);
  TORCH_CHECK(input.size(3) == static_cast<int64_t>(group) * group_channels,
              "dcnv3: input must be channels-last (N, H, W, C) with C = group * group_channels = ", group, " * ",
              group_channels, " = ", static_cast<int64_t>(group) * group_channels, ", got shape ",
              shape_str(input.sizes()));
  Geometry geo;
  geo.batch = input.size(0);
  geo.height_in = static_cast<int>(input.size(1));
  geo.width_in = static_cast<int>(input.size(2));
  geo.kernel_h = kernel_h, geo.kernel_w = kernel_w, geo.stride_h = stride_h, geo.stride_w = stride_w;
  geo.pad_h = pad_h, geo.pad_w = pad_w, geo.dilation_h = dilation_h, geo.dilation_w = dilation_w;
  geo.group = group, geo.group_channels = group_channels, geo.offset_scale = offset_scale;
  const int64_t height_out = (geo.height_in + 2 * pad_h - (dilation_h * (kernel_h - 1) + 1)) / stride_h + 1;
  const int64_t width_out = (geo.width_in + 2 * pad_w - (dilation_w * (kernel_w - 1) + 1)) / stride_w + 1;
  TORCH_CHECK(height_out >= 1 && width_out >= 1, "dcnv3: input of shape ", shape_str(input.sizes()),
              " is too small for the kernel geometry (output would be ", height_out, " x ", width_out, ")");
  geo.height_out = static_cast<int>(height_out);
  geo.width_out = static_cast<int>(width_out);
  const int64_t points = static_cast<int64_t>(group) * kernel_h * kernel_w;
  check_shape(offset, "offset", {geo.batch, height_out, width_out, points * 2});
  check_shape(mask, "mask", {geo.batch, height_out, width_out, points});
  return geo;
}

}  // namespace

// im2col_step is accepted for API compatibility with upstream; these kernels need no im2col buffer and process the
// whole batch at once, so it does not change anything (nor does the batch need to be divisible by it).
at::Tensor forward(const at::Tensor& input_, const at::Tensor& offset_, const at::Tensor& mask_, int kernel_h,
                   int kernel_w, int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h, int dilation_w,
                   int group, int group_channels, double offset_scale, int im2col_step) {
  const Geometry geo = make_geometry(input_, offset_, mask_, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                                     dilation_h, dilation_w, group, group_channels, offset_scale, im2col_step);
  const auto input = input_.contiguous(), offset = offset_.contiguous(), mask = mask_.contiguous();
  if (input.is_cuda()) {
#ifdef WITH_CUDA
    return cuda_forward(input, offset, mask, geo);
#else
    TORCH_CHECK(false, "dcnv3: input is a CUDA tensor but ops_dcnv3._C was built without CUDA");
#endif
  }
  TORCH_CHECK(input.is_cpu(), "dcnv3: input must be a CPU or CUDA tensor, got device ", input.device());
  return cpu_forward(input, offset, mask, geo);
}

std::vector<at::Tensor> backward(const at::Tensor& input_, const at::Tensor& offset_, const at::Tensor& mask_,
                                 int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_h, int pad_w,
                                 int dilation_h, int dilation_w, int group, int group_channels, double offset_scale,
                                 const at::Tensor& grad_output_, int im2col_step) {
  const Geometry geo = make_geometry(input_, offset_, mask_, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                                     dilation_h, dilation_w, group, group_channels, offset_scale, im2col_step);
  check_tensor(grad_output_, "grad_output", input_);
  check_shape(grad_output_, "grad_output", {geo.batch, geo.height_out, geo.width_out, geo.channels()});
  const auto input = input_.contiguous(), offset = offset_.contiguous(), mask = mask_.contiguous();
  const auto grad_output = grad_output_.contiguous();
  if (input.is_cuda()) {
#ifdef WITH_CUDA
    return cuda_backward(input, offset, mask, grad_output, geo);
#else
    TORCH_CHECK(false, "dcnv3: input is a CUDA tensor but ops_dcnv3._C was built without CUDA");
#endif
  }
  TORCH_CHECK(input.is_cpu(), "dcnv3: input must be a CPU or CUDA tensor, got device ", input.device());
  return cpu_backward(input, offset, mask, grad_output, geo);
}

}  // namespace dcnv3

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "DCNv3 deformable convolution core (CPU kernel, and CUDA kernel when built with CUDA)";
  m.def("dcnv3_forward", &dcnv3::forward, "DCNv3 forward (input, offset, mask, 12 geometry arguments, im2col_step)");
  m.def("dcnv3_backward", &dcnv3::backward,
        "DCNv3 backward (input, offset, mask, 11 geometry arguments, offset_scale, grad_output, im2col_step) -> "
        "[grad_input, grad_offset, grad_mask]");
  m.def("cpu_isa", &dcnv3::cpu_isa, "CPU code path in use: 'avx2' or 'baseline'");
#ifdef WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}
