// Device-specific DCNv3 implementations behind the checked entry points in vision.cpp.
#pragma once

// ATen only (not torch/extension.h): the CUDA translation unit includes this, and nvcc parses every header once
// per target architecture.
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "dcn_math.h"

namespace dcnv3 {

using namespace dcn;  // the sampling math (ops_common/src/dcn_math.h)

// Inputs are contiguous, checked, on the CPU. Returns the output (N, H_out, W_out, G * Gc).
at::Tensor cpu_forward(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                       const Geometry& geo);
// Returns {grad_input, grad_offset, grad_mask}.
std::vector<at::Tensor> cpu_backward(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                                     const at::Tensor& grad_output, const Geometry& geo);
// Name of the CPU code path in use ("avx2" or "baseline").
std::string cpu_isa();

// Test-only host harness of the CUDA kernel bodies (host/dcnv3_cuda_bodies_host.cpp): same arguments and results as
// cuda_forward / cuda_backward, on CPU tensors. pack: channels per forward thread, 0 = the launcher's choice.
at::Tensor cuda_bodies_forward_host(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                                    const Geometry& geo, int pack);
std::vector<at::Tensor> cuda_bodies_backward_host(const at::Tensor& input, const at::Tensor& offset,
                                                  const at::Tensor& mask, const at::Tensor& grad_output,
                                                  const Geometry& geo, int pack);

// Defined where the extension is built with CUDA (WITH_CUDA); only called there (dcn::on_device).
at::Tensor cuda_forward(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                        const Geometry& geo);
std::vector<at::Tensor> cuda_backward(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                                      const at::Tensor& grad_output, const Geometry& geo);

}  // namespace dcnv3
