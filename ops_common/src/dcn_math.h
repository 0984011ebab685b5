// The DCN operators' per-sample math (DCNv3 and DCNv4 sample alike), written once for the CPU and the CUDA kernels
// (host-and-device inline functions). Torch-free: nvcc, the host compiler and the sanitized host check include it.
//
// Semantics (docs/dcnv3_operator.md): for output (h_out, w_out), group g and kernel point k = i * kernel_h + j
// (i: column/x index, outer; j: row/y index, inner), with offset pair (dx, dy):
//   loc_x = half_w - pad_w + w_out * stride_w + (i * dilation_w - half_w + dx) * offset_scale
//   loc_y = half_h - pad_h + h_out * stride_h + (j * dilation_h - half_h + dy) * offset_scale
// where half_w = dilation_w * (kernel_w - 1) / 2 (integer division). The sample is the bilinear interpolation of
// the group's channels at (loc_y, loc_x), neighbours outside the image count as zero, and the sample is zero unless
// -1 < loc_y < H and -1 < loc_x < W. output = sum_k mask_k * sample_k.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define DCN_HOST_DEVICE __host__ __device__ __forceinline__
#define DCN_UNROLL _Pragma("unroll")
#else
#define DCN_HOST_DEVICE inline
#define DCN_UNROLL
#endif

namespace dcn {

// Everything the kernels need to know about one call, fixed for all samples.
struct Geometry {
  int64_t batch;
  int height_in, width_in, height_out, width_out;
  int kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int group, group_channels;
  double offset_scale;
  // The mask holds logits: each (pixel, group)'s points are weighted by the softmax of their logits, computed in
  // the kernels (the softmax DCNv3 applies in front of the core, fused; docs/dcnv3_operator.md).
  bool mask_softmax = false;

  DCN_HOST_DEVICE int channels() const { return group * group_channels; }
  DCN_HOST_DEVICE int points() const { return kernel_h * kernel_w; }
  DCN_HOST_DEVICE int half_h() const { return dilation_h * (kernel_h - 1) / 2; }
  DCN_HOST_DEVICE int half_w() const { return dilation_w * (kernel_w - 1) / 2; }
};

// Where the regular grid of output (h_out, w_out) is centred, in input pixels: the first term of loc_y / loc_x.
template <typename T>
DCN_HOST_DEVICE void grid_centre(const Geometry& geo, int h_out, int w_out, T& centre_y, T& centre_x) {
  centre_y = static_cast<T>(geo.half_h() - geo.pad_h + h_out * geo.stride_h);
  centre_x = static_cast<T>(geo.half_w() - geo.pad_w + w_out * geo.stride_w);
}

// Regular-grid displacement of kernel point k from the grid centre, in input pixels (before offset_scale).
template <typename T>
DCN_HOST_DEVICE void point_displacement(const Geometry& geo, int k, T& disp_y, T& disp_x) {
  const int i = k / geo.kernel_h;  // column (x) index: the outer loop of the point order
  const int j = k % geo.kernel_h;  // row (y) index
  disp_x = static_cast<T>(i * geo.dilation_w - geo.half_w());
  disp_y = static_cast<T>(j * geo.dilation_h - geo.half_h());
}

// Displacement of kernel point k when the kernel's centre point (column kernel_w / 2, row kernel_h / 2) is skipped
// (remove_center: DCNv4's option): points after the centre move up one place in the order above.
template <typename T>
DCN_HOST_DEVICE void point_displacement(const Geometry& geo, int k, bool remove_center, T& disp_y, T& disp_x) {
  const int centre = (geo.kernel_w / 2) * geo.kernel_h + geo.kernel_h / 2;
  point_displacement(geo, remove_center && k >= centre ? k + 1 : k, disp_y, disp_x);
}

// Sampling location of a kernel point with regular displacement (disp_y, disp_x) and learned offset (dy, dx).
// offset_scale scales both the displacement and the offset.
template <typename T>
DCN_HOST_DEVICE void sampling_location(T centre_y, T centre_x, T disp_y, T disp_x, T dy, T dx, T offset_scale,
                                         T& loc_y, T& loc_x) {
  loc_x = centre_x + (disp_x + dx) * offset_scale;
  loc_y = centre_y + (disp_y + dy) * offset_scale;
}

// The four neighbours of a sampling location, in the order (y0, x0), (y0, x1), (y1, x0), (y1, x1).
template <typename T>
struct Corners {
  bool inside;     // -1 < loc_y < H and -1 < loc_x < W; when false the sample and all its gradients are zero
  bool valid[4];   // neighbour lies in the image (otherwise it contributes zero)
  int64_t pixel[4];  // y * W + x of each valid neighbour (0 for invalid ones, never read)
  T weight[4];     // bilinear weight of each neighbour (0 for invalid ones)
  T frac_y, frac_x;  // loc - floor(loc)
};

template <typename T>
DCN_HOST_DEVICE Corners<T> bilinear_corners(T loc_y, T loc_x, int height, int width) {
  Corners<T> c;
  c.inside = loc_y > T(-1) && loc_x > T(-1) && loc_y < T(height) && loc_x < T(width);
  // Inside, floor(loc) lies in [-1, size - 1]: the low neighbour is in the image unless floor is -1, the high one
  // unless floor is size - 1. Outside, everything is zero.
  const T floor_y = c.inside ? floor(loc_y) : T(-1);
  const T floor_x = c.inside ? floor(loc_x) : T(-1);
  const int y0 = static_cast<int>(floor_y), x0 = static_cast<int>(floor_x);
  c.frac_y = c.inside ? loc_y - floor_y : T(0);
  c.frac_x = c.inside ? loc_x - floor_x : T(0);
  const bool valid_y[2] = {c.inside && y0 >= 0, c.inside && y0 < height - 1};
  const bool valid_x[2] = {c.inside && x0 >= 0, c.inside && x0 < width - 1};
  const T weight_y[2] = {valid_y[0] ? T(1) - c.frac_y : T(0), valid_y[1] ? c.frac_y : T(0)};
  const T weight_x[2] = {valid_x[0] ? T(1) - c.frac_x : T(0), valid_x[1] ? c.frac_x : T(0)};
  const int64_t pixel00 = static_cast<int64_t>(y0) * width + x0;
  const int64_t pixel_step[4] = {0, 1, width, static_cast<int64_t>(width) + 1};
DCN_UNROLL
  for (int q = 0; q < 4; ++q) {
    c.valid[q] = valid_y[q >> 1] && valid_x[q & 1];
    c.pixel[q] = c.valid[q] ? pixel00 + pixel_step[q] : 0;
    c.weight[q] = weight_y[q >> 1] * weight_x[q & 1];
  }
  return c;
}

// Sample of one channel: data points at channel 0 of the group in pixel 0, pixel_stride = channels per pixel.
template <typename T, typename scalar_t>
DCN_HOST_DEVICE T sample_channel(const scalar_t* data, int64_t pixel_stride, const Corners<T>& c) {
  T value = T(0);
DCN_UNROLL
  for (int q = 0; q < 4; ++q) {
    if (c.valid[q]) value += c.weight[q] * static_cast<T>(data[c.pixel[q] * pixel_stride]);
  }
  return value;
}

#if !defined(__CUDA_ARCH__)
// Relaxed atomic x += value on a plain float or double on the host: the stand-in for CUDA's atomicAdd when the
// CUDA bodies run in the host harness. A compare-exchange loop on the GCC/Clang __atomic builtins, because
// std::atomic_ref is C++20 and torch < 2.14 builds extensions as C++17 (where nvcc before 12 has no C++20 at all).
// The exchange compares bit patterns, so a NaN already in *address cannot make it spin.
template <typename T>
inline void host_atomic_add(T* address, T value) {
  T expected;
  __atomic_load(address, &expected, __ATOMIC_RELAXED);
  T desired = expected + value;
  while (!__atomic_compare_exchange(address, &expected, &desired, /*weak=*/true, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED)) {
    desired = expected + value;
  }
}
#endif

// exp and max in T's own precision (a plain exp(float) may resolve to the double function on the host).
DCN_HOST_DEVICE float exp_of(float x) { return expf(x); }
DCN_HOST_DEVICE double exp_of(double x) { return exp(x); }
DCN_HOST_DEVICE float max_of(float a, float b) { return fmaxf(a, b); }
DCN_HOST_DEVICE double max_of(double a, double b) { return fmax(a, b); }

// The weights of one (pixel, group)'s kernel points: the mask values themselves, or with mask_softmax their softmax
// over the points (max-subtracted, in T), recomputed from the logits at each call instead of stored: the CUDA
// bodies' form (a thread holds no per-point array; the CPU kernel computes a pixel's weights once, vectorised, in
// dcn_cpu_kernels.h). mask_pg points at the (pixel, group)'s point 0.
template <typename T>
struct MaskWeights {
  T max_logit = T(0), inv_sum = T(1);
  bool softmax = false;

  template <typename scalar_t>
  DCN_HOST_DEVICE MaskWeights(const scalar_t* mask_pg, int points, bool mask_softmax) : softmax(mask_softmax) {
    if (!softmax) return;
    max_logit = static_cast<T>(mask_pg[0]);
    for (int k = 1; k < points; ++k) max_logit = max_of(max_logit, static_cast<T>(mask_pg[k]));
    T sum = T(0);
    for (int k = 0; k < points; ++k) sum += exp_of(static_cast<T>(mask_pg[k]) - max_logit);
    inv_sum = T(1) / sum;
  }

  template <typename scalar_t>
  DCN_HOST_DEVICE T operator()(const scalar_t* mask_pg, int k) const {
    const T value = static_cast<T>(mask_pg[k]);
    return softmax ? exp_of(value - max_logit) * inv_sum : value;
  }
};

// Softmax backward of one (pixel, group), in place: grad[k] holds d loss / d weight_k on entry and
// d loss / d logit_k = weight_k * (grad[k] - sum_j weight_j * grad[j]) on return; weight(k) gives weight_k (the CPU
// kernel reads stored weights, the CUDA bodies recompute them from the logits).
template <typename T, typename WeightOf, typename grad_t>
DCN_HOST_DEVICE void softmax_backward_in_place(const WeightOf& weight, int points, grad_t* grad) {
  T dot = T(0);
  for (int k = 0; k < points; ++k) dot += weight(k) * static_cast<T>(grad[k]);
  for (int k = 0; k < points; ++k) grad[k] = static_cast<grad_t>(weight(k) * (static_cast<T>(grad[k]) - dot));
}

// weight(k) of stored weights.
template <typename T>
struct StoredWeights {
  const T* weight;
  DCN_HOST_DEVICE T operator()(int k) const { return weight[k]; }
};

// weight(k) recomputed from the logits of a (pixel, group).
template <typename T, typename scalar_t>
struct LogitWeights {
  const MaskWeights<T>& weights;
  const scalar_t* mask_pg;
  DCN_HOST_DEVICE T operator()(int k) const { return weights(mask_pg, k); }
};

template <typename T, typename scalar_t, typename grad_t>
DCN_HOST_DEVICE void softmax_backward(const MaskWeights<T>& weights, const scalar_t* mask_pg, int points,
                                      grad_t* grad) {
  softmax_backward_in_place<T>(LogitWeights<T, scalar_t>{weights, mask_pg}, points, grad);
}

// Gradients of one sample's contribution mask * sample, given dot[q] = sum_c grad_out[c] * value_q[c] (the upstream
// gradient dotted with neighbour q's channels; 0 for invalid neighbours):
//   grad_mask           = sum_q weight_q * dot_q                         (= grad_out . sample)
//   grad_offset_{x, y}  = mask * offset_scale * d(grad_out . sample)/d(loc_{x, y})
// The input gradient is mask * weight_q * grad_out, scattered to neighbour q (done by the callers).
template <typename T>
DCN_HOST_DEVICE void sample_gradients(const Corners<T>& c, const T dot[4], T mask, T offset_scale, T& grad_mask,
                                        T& grad_dx, T& grad_dy) {
  grad_mask = c.weight[0] * dot[0] + c.weight[1] * dot[1] + c.weight[2] * dot[2] + c.weight[3] * dot[3];
  // d weight / d loc_y: -(1 - fx), -fx, (1 - fx), fx;  d weight / d loc_x: -(1 - fy), (1 - fy), -fy, fy.
  const T d_loc_y = (T(1) - c.frac_x) * (dot[2] - dot[0]) + c.frac_x * (dot[3] - dot[1]);
  const T d_loc_x = (T(1) - c.frac_y) * (dot[1] - dot[0]) + c.frac_y * (dot[3] - dot[2]);
  grad_dx = mask * offset_scale * d_loc_x;
  grad_dy = mask * offset_scale * d_loc_y;
}

}  // namespace dcn
