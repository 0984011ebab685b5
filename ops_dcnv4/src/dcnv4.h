// Device-specific DCNv4 implementations behind the checked entry points in vision.cpp.
#pragma once

// ATen only (not torch/extension.h): the CUDA translation unit includes this too.
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "dcnv4_geometry.h"

namespace dcnv4 {

// Inputs are contiguous, checked, on the CPU. Returns the output (N, H_out, W_out, G * D).
at::Tensor cpu_forward(const at::Tensor& input, const at::Tensor& offset_mask, const Geometry& geo);
// Returns {grad_input, grad_offset_mask}; the padding channels of grad_offset_mask are zero.
std::vector<at::Tensor> cpu_backward(const at::Tensor& input, const at::Tensor& offset_mask,
                                     const at::Tensor& grad_output, const Geometry& geo);
// Name of the CPU code path in use ("avx2" or "baseline").
std::string cpu_isa();

// The CUDA kernels' per-thread bodies (common/dcnv4_cuda_bodies.h) run on the CPU over every thread index, with a
// host atomic add standing in for atomicAdd: tests check the CUDA code paths on machines without a GPU.
at::Tensor cuda_bodies_forward_host(const at::Tensor& input, const at::Tensor& offset_mask, const Geometry& geo);
std::vector<at::Tensor> cuda_bodies_backward_host(const at::Tensor& input, const at::Tensor& offset_mask,
                                                    const at::Tensor& grad_output, const Geometry& geo);

// Defined where the extension is built with CUDA (WITH_CUDA); only called there (dcn::on_device).
at::Tensor cuda_forward(const at::Tensor& input, const at::Tensor& offset_mask, const Geometry& geo);
std::vector<at::Tensor> cuda_backward(const at::Tensor& input, const at::Tensor& offset_mask,
                                      const at::Tensor& grad_output, const Geometry& geo);

}  // namespace dcnv4
