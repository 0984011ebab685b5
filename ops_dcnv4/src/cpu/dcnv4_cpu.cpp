// DCNv4 CPU kernel: ops_common's CPU kernels (dcn_cpu.h) over DCNv4's packed layout: one offset_mask
// (N, H_out, W_out, Cpad) where group g owns 3K channels from g * 3K (2K interleaved offsets, then K mask values,
// taken raw), the channels past G * 3K padding.
#include "dcn_cpu.h"

#include "../dcnv4.h"

namespace dcnv4 {
namespace {

// DCNv4's offsets and mask of output pixel `index`, group g (dcn_cpu_kernels.h's Layout).
template <typename scalar_t>
struct Layout {
  const dcn::Geometry& geo;
  int points;
  bool remove_center;
  int64_t pixel_stride, group_stride;  // offset_mask channels of a pixel (Cpad) and of a group (3K)
  const scalar_t* offset_mask;
  scalar_t* grad_offset_mask;

  int64_t first(int64_t index, int g) const { return index * pixel_stride + g * group_stride; }
  const scalar_t* offsets(int64_t index, int g) const { return offset_mask + first(index, g); }
  const scalar_t* mask(int64_t index, int g) const { return offset_mask + first(index, g) + 2 * points; }
  scalar_t* grad_offsets(int64_t index, int g) const { return grad_offset_mask + first(index, g); }
  scalar_t* grad_mask(int64_t index, int g) const { return grad_offset_mask + first(index, g) + 2 * points; }
};

template <typename scalar_t>
Layout<scalar_t> make_layout(const Geometry& geo, const at::Tensor& offset_mask, scalar_t* grad_offset_mask) {
  return Layout<scalar_t>{geo, geo.kernel_points(), geo.remove_center != 0, geo.offset_mask_channels,
                          geo.group_stride(), offset_mask.const_data_ptr<scalar_t>(), grad_offset_mask};
}

// DCNV4_CPU_ISA=baseline forces the portable loops.
bool use_avx2() { return dcn::use_avx2("DCNV4_CPU_ISA"); }

}  // namespace

std::string cpu_isa() { return use_avx2() ? "avx2" : "baseline"; }

at::Tensor cpu_forward(const at::Tensor& input, const at::Tensor& offset_mask, const Geometry& geo) {
  return dcn::cpu_forward(input, geo, geo.kernel_points(), use_avx2(), [&](auto* tag) {
    return make_layout(geo, offset_mask, static_cast<decltype(tag)>(nullptr));
  });
}

std::vector<at::Tensor> cpu_backward(const at::Tensor& input, const at::Tensor& offset_mask,
                                     const at::Tensor& grad_output, const Geometry& geo) {
  // Every non-padding entry is written by the kernel: only the padding tail needs zeros.
  auto grad_offset_mask = at::empty_like(offset_mask);
  const int64_t used = static_cast<int64_t>(geo.group) * geo.group_stride();
  grad_offset_mask.narrow(3, used, geo.offset_mask_channels - used).zero_();
  auto grad_input = dcn::cpu_backward(input, grad_output, geo, geo.kernel_points(), use_avx2(), [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    return make_layout(geo, offset_mask, grad_offset_mask.mutable_data_ptr<scalar_t>());
  });
  return {grad_input, grad_offset_mask};
}

}  // namespace dcnv4
