// DCNv3 CPU kernel: ops_common's CPU kernels (dcn_cpu.h) over DCNv3's layout, separate offset (N, H_out, W_out,
// G * K * 2) and mask (N, H_out, W_out, G * K) tensors, the mask softmax optionally fused.
#include "dcn_cpu.h"

#include "../dcnv3.h"

namespace dcnv3 {
namespace {

// DCNv3's offsets and mask of output pixel `index`, group g (dcn_cpu_kernels.h's Layout).
template <typename scalar_t>
struct Layout {
  const Geometry& geo;
  int points;
  bool remove_center;
  const scalar_t* offset_data;
  const scalar_t* mask_data;
  scalar_t* grad_offset_data;
  scalar_t* grad_mask_data;

  int64_t first_point(int64_t index, int g) const { return (index * geo.group + g) * points; }
  const scalar_t* offsets(int64_t index, int g) const { return offset_data + 2 * first_point(index, g); }
  const scalar_t* mask(int64_t index, int g) const { return mask_data + first_point(index, g); }
  scalar_t* grad_offsets(int64_t index, int g) const { return grad_offset_data + 2 * first_point(index, g); }
  scalar_t* grad_mask(int64_t index, int g) const { return grad_mask_data + first_point(index, g); }
};

// DCNV3_CPU_ISA=baseline forces the portable loops.
bool use_avx2() { return dcn::use_avx2("DCNV3_CPU_ISA"); }

}  // namespace

std::string cpu_isa() { return use_avx2() ? "avx2" : "baseline"; }

at::Tensor cpu_forward(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                       const Geometry& geo) {
  return dcn::cpu_forward(input, geo, geo.points(), use_avx2(), [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    return Layout<scalar_t>{geo, geo.points(), false, offset.const_data_ptr<scalar_t>(),
                            mask.const_data_ptr<scalar_t>(), nullptr, nullptr};
  });
}

std::vector<at::Tensor> cpu_backward(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                                     const at::Tensor& grad_output, const Geometry& geo) {
  auto grad_offset = at::zeros_like(offset);
  auto grad_mask = at::zeros_like(mask);
  auto grad_input = dcn::cpu_backward(input, grad_output, geo, geo.points(), use_avx2(), [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    return Layout<scalar_t>{geo, geo.points(), false, offset.const_data_ptr<scalar_t>(),
                            mask.const_data_ptr<scalar_t>(), grad_offset.mutable_data_ptr<scalar_t>(),
                            grad_mask.mutable_data_ptr<scalar_t>()};
  });
  return {grad_input, grad_offset, grad_mask};
}

}  // namespace dcnv3
