// The DCN operators' CPU kernel bodies, written once over the offset/mask layout (DCNv3's separate offset and mask
// tensors, DCNv4's packed offset_mask: see Layout below). Included more than once by dcn_cpu.h, each time with
// another DCN_CPU_NS and DCN_CPU_TARGET (an instruction-set target attribute), so one binary carries a baseline and
// an AVX2 build of the same loops and picks one at run time. No include guard on purpose.
//
// A Layout (ops_dcnv3/src/cpu/dcnv3_cpu.cpp, ops_dcnv4/src/cpu/dcnv4_cpu.cpp) has: `geo` (a dcn::Geometry),
// `points` (kernel points per group), `remove_center`, and pointers of output pixel `index`, group g:
// offsets(index, g) (2 * points values, x then y of each point), mask(index, g), grad_offsets(index, g) and
// grad_mask(index, g). With geo.mask_softmax a pixel's groups' mask values must be contiguous (mask(index, 0)).
//
// Data: channels-last; a group's group_channels (gc) channels are contiguous, so the inner loops run over gc
// with unit stride: for float/double with gc = 8/16/32 as whole SIMD registers held in variables (GCC/Clang vector
// extensions), otherwise as `omp simd` loops. Each kernel point's location and corner weights are computed once
// per (output pixel, group) by the shared math in dcn_math.h. Corners outside the image read a row of zeros (and, in
// the backward, write to a discarded row) instead of branching: a NaN or infinite mask value of a point outside the
// image then gives NaN, as in the PyTorch reference (0 * mask), and the tap count stays 4K.

namespace DCN_CPU_NS {

// Per-call scratch of one task.
template <typename scalar_t, typename acc_t>
struct Scratch {
  std::vector<acc_t> disp_y, disp_x;     // regular displacement of each kernel point
  std::vector<const scalar_t*> tap_src;  // forward: 4 corners per kernel point of the current (pixel, group)
  std::vector<acc_t> tap_weight;         // forward: mask * bilinear weight of each corner
  std::vector<scalar_t> zero_row;        // read by corners outside the image
  std::vector<acc_t> sink_row;           // backward: written by corners outside the image, never read
  std::vector<acc_t> acc;                // gc accumulators when gc is not a compile-time constant
  std::vector<acc_t> point_grad;         // backward: the mask gradient of each kernel point of a (pixel, group)
  std::vector<acc_t> weight;             // mask_softmax: the softmaxed weights of a pixel's (all groups') points

  Scratch(const Geometry& geo, int points, bool remove_center, int gc)
      : disp_y(points), disp_x(points), tap_src(4 * points), tap_weight(4 * points), zero_row(gc, scalar_t(0)),
        sink_row(gc), acc(2 * gc), point_grad(points), weight(static_cast<size_t>(geo.group) * points) {
    for (int k = 0; k < points; ++k) point_displacement(geo, k, remove_center, disp_y[k], disp_x[k]);
  }
};

// A native SIMD register of T (GCC/Clang vector extension): DCN_CPU_VECTOR_BYTES wide.
template <typename T>
struct Simd {
  typedef T type __attribute__((vector_size(DCN_CPU_VECTOR_BYTES)));
  static constexpr int lanes = DCN_CPU_VECTOR_BYTES / sizeof(T);
};

// Whether group_channels GC is handled by whole registers kept in variables (float/double, GC a lane multiple).
template <typename scalar_t, typename acc_t, int GC>
constexpr bool registers_path() {
  return GC > 0 && std::is_same_v<scalar_t, acc_t> && GC % Simd<acc_t>::lanes == 0;
}

// Sum of one (pixel, group)'s taps: out[c] = sum_t weight[t] * src[t][c], taps even. Two accumulators, fed
// alternately, halve the dependency chain of the multiply-adds.
template <typename scalar_t, typename acc_t, int GC>
DCN_CPU_TARGET inline void accumulate_taps(const scalar_t* const* src, const acc_t* weight, int taps, int gc,
                                             acc_t* acc0, acc_t* acc1, scalar_t* out) {
  if constexpr (registers_path<scalar_t, acc_t, GC>()) {
    using V = typename Simd<acc_t>::type;
    constexpr int regs = GC / Simd<acc_t>::lanes;
    V sum0[regs], sum1[regs];
    for (int r = 0; r < regs; ++r) sum0[r] = sum1[r] = V{};
    for (int t = 0; t < taps; t += 2) {
      const V w0 = V{} + weight[t], w1 = V{} + weight[t + 1];
      for (int r = 0; r < regs; ++r) {
        V value0, value1;
        std::memcpy(&value0, src[t] + r * Simd<acc_t>::lanes, sizeof(V));
        std::memcpy(&value1, src[t + 1] + r * Simd<acc_t>::lanes, sizeof(V));
        sum0[r] += w0 * value0;
        sum1[r] += w1 * value1;
      }
    }
    for (int r = 0; r < regs; ++r) {
      const V total = sum0[r] + sum1[r];
      std::memcpy(out + r * Simd<acc_t>::lanes, &total, sizeof(V));
    }
  } else {
    for (int c = 0; c < gc; ++c) acc0[c] = acc1[c] = acc_t(0);
    for (int t = 0; t < taps; t += 2) {
      const scalar_t* src0 = src[t];
      const scalar_t* src1 = src[t + 1];
      const acc_t w0 = weight[t], w1 = weight[t + 1];
#pragma omp simd
      for (int c = 0; c < gc; ++c) {
        acc0[c] += w0 * static_cast<acc_t>(src0[c]);
        acc1[c] += w1 * static_cast<acc_t>(src1[c]);
      }
    }
#pragma omp simd
    for (int c = 0; c < gc; ++c) out[c] = static_cast<scalar_t>(acc0[c] + acc1[c]);
  }
}

// Backward of one corner: returns grad_out . src and adds w * grad_out to dst.
template <typename scalar_t, typename acc_t, int GC>
DCN_CPU_TARGET inline acc_t corner_backward(const acc_t* grad_out, const scalar_t* src, acc_t* dst, acc_t w,
                                              int gc) {
  if constexpr (registers_path<scalar_t, acc_t, GC>()) {
    using V = typename Simd<acc_t>::type;
    constexpr int lanes = Simd<acc_t>::lanes, regs = GC / lanes;
    const V wv = V{} + w;
    V product = V{};
    for (int r = 0; r < regs; ++r) {
      V go, value, grad;
      std::memcpy(&go, grad_out + r * lanes, sizeof(V));
      std::memcpy(&value, src + r * lanes, sizeof(V));
      std::memcpy(&grad, dst + r * lanes, sizeof(V));
      grad += wv * go;
      std::memcpy(dst + r * lanes, &grad, sizeof(V));
      product += go * value;
    }
    acc_t sum = acc_t(0);
    for (int c = 0; c < lanes; ++c) sum += product[c];
    return sum;
  } else {
    acc_t sum = acc_t(0);
#pragma omp simd reduction(+ : sum)
    for (int c = 0; c < gc; ++c) {
      sum += grad_out[c] * static_cast<acc_t>(src[c]);
      dst[c] += w * grad_out[c];
    }
    return sum;
  }
}

// exp(x) for x <= 0 (a softmax's max-subtracted logits), written so that a loop over an array vectorises, which
// libm's expf does not: Cephes' expf (2^n times a degree-7 polynomial of the remainder, |remainder| <= ln2 / 2,
// relative error about 1e-7), with n rounded by truncation (x <= 0) and 2^n built in the exponent bits. |x| is
// clamped to 87 on its bit pattern (an integer min: float compares would stop the vectoriser, as they may trap), so
// far-below-max logits, -inf and NaN get about 1.6e-38 instead of going subnormal: nothing next to the softmax's
// max term of 1. double keeps std::exp (float64 is the accuracy reference of the tests).
template <typename T>
DCN_CPU_TARGET inline __attribute__((always_inline)) T exp_nonpositive(T x) {
  if constexpr (std::is_same_v<T, float>) {
    constexpr int32_t kBitsOf87 = 0x42ae0000;  // 87.0f
    int32_t magnitude = __builtin_bit_cast(int32_t, x) & 0x7fffffff;
    magnitude = magnitude < kBitsOf87 ? magnitude : kBitsOf87;
    x = -__builtin_bit_cast(float, magnitude);
    const int32_t n = static_cast<int32_t>(x * 1.44269504088896341f - 0.5f);  // round(x / ln2), x <= 0
    const float nf = static_cast<float>(n);
    const float r = x - nf * 0.693359375f + nf * 2.12194440e-4f;  // x - n ln2, ln2 split in two for accuracy
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    return p * __builtin_bit_cast(float, (n + 127) << 23);
  } else {
    return std::exp(x);
  }
}

// The max-subtracted logits of a group into shifted; returns their sum, which is NaN exactly when torch.softmax's
// output for the group would be (a NaN logit, or all logits -inf).
template <typename scalar_t, typename acc_t>
DCN_CPU_TARGET inline acc_t shift_by_max(const scalar_t* logits, int points, acc_t* shifted) {
  acc_t max_logit = static_cast<acc_t>(logits[0]);
  for (int k = 1; k < points; ++k) max_logit = std::max(max_logit, static_cast<acc_t>(logits[k]));
  acc_t sum = acc_t(0);
  for (int k = 0; k < points; ++k) {
    shifted[k] = static_cast<acc_t>(logits[k]) - max_logit;
    sum += shifted[k];
  }
  return sum;
}

// The fused mask softmax on the CPU: weight[g * points + k] = softmax over k of logits[g * points + k], for `groups`
// runs of `points` logits (all groups of one pixel at once, so the exponentials run as one vector loop).
template <typename scalar_t, typename acc_t>
DCN_CPU_TARGET inline void softmax_points(const scalar_t* logits, int groups, int points, acc_t* weight) {
  bool any_nan = false;
  for (int g = 0; g < groups; ++g) {
    const acc_t shifted_sum = shift_by_max(logits + g * points, points, weight + g * points);
    any_nan |= shifted_sum != shifted_sum;
  }
  const int total = groups * points;
#pragma omp simd
  for (int i = 0; i < total; ++i) weight[i] = exp_nonpositive(weight[i]);
  for (int g = 0; g < groups; ++g) {
    acc_t* weight_g = weight + g * points;
    acc_t sum = acc_t(0);
    for (int k = 0; k < points; ++k) sum += weight_g[k];
    const acc_t inv_sum = acc_t(1) / sum;
    for (int k = 0; k < points; ++k) weight_g[k] *= inv_sum;
  }
  if (any_nan) {  // exp_nonpositive maps NaN to ~0: such groups get NaN weights instead, so a NaN is not hidden
    for (int g = 0; g < groups; ++g) {
      acc_t* weight_g = weight + g * points;
      const acc_t shifted_sum = shift_by_max(logits + g * points, points, weight_g);
      if (shifted_sum != shifted_sum) {
        for (int k = 0; k < points; ++k) weight_g[k] = std::numeric_limits<acc_t>::quiet_NaN();
      } else {
        softmax_points(logits + g * points, 1, points, weight_g);  // recomputed: shift_by_max overwrote it
      }
    }
  }
}

// Output columns per strip: the kernel windows of a strip's rows stay in L1 (about 32 KiB of input per strip row).
inline int strip_width(const Geometry& geo, int64_t bytes_per_pixel) {
  const int64_t width = 32768 / std::max<int64_t>(bytes_per_pixel, 1);
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>(width, 8), geo.width_out));
}

// Forward of sample n, output rows [row_begin, row_end), all groups. Pixels are visited in strips of columns
// (cache reuse between neighbouring windows), all groups of a pixel together (its channels are contiguous).
template <typename Layout, typename scalar_t, typename acc_t, int GC>
DCN_CPU_TARGET void forward_rows(const Layout& layout, const scalar_t* input, scalar_t* output, int64_t n,
                                 int row_begin, int row_end) {
  const Geometry& geo = layout.geo;
  const int gc = GC > 0 ? GC : geo.group_channels;
  const int groups = geo.group, points = layout.points, channels = geo.channels(), taps = 4 * points;
  const int64_t pixels_in = static_cast<int64_t>(geo.height_in) * geo.width_in;
  const acc_t scale = static_cast<acc_t>(geo.offset_scale);
  Scratch<scalar_t, acc_t> scratch(geo, points, layout.remove_center, gc);
  const scalar_t** tap_src = scratch.tap_src.data();
  acc_t* tap_weight = scratch.tap_weight.data();
  acc_t* acc0 = scratch.acc.data();
  acc_t* acc1 = scratch.acc.data() + gc;
  const acc_t* disp_y = scratch.disp_y.data();
  const acc_t* disp_x = scratch.disp_x.data();
  const scalar_t* zero_row = scratch.zero_row.data();
  acc_t* softmax_weight = scratch.weight.data();
  const scalar_t* input_n = input + n * pixels_in * channels;
  const int strip = strip_width(geo, static_cast<int64_t>(channels) * sizeof(scalar_t));

  for (int col_begin = 0; col_begin < geo.width_out; col_begin += strip) {
    const int col_end = std::min(col_begin + strip, geo.width_out);
    for (int h_out = row_begin; h_out < row_end; ++h_out) {
      for (int w_out = col_begin; w_out < col_end; ++w_out) {
        const int64_t index = (n * geo.height_out + h_out) * geo.width_out + w_out;
        acc_t centre_y, centre_x;
        grid_centre(geo, h_out, w_out, centre_y, centre_x);
        if (geo.mask_softmax) softmax_points(layout.mask(index, 0), groups, points, softmax_weight);
        for (int g = 0; g < groups; ++g) {
          const scalar_t* offset_g = layout.offsets(index, g);
          const scalar_t* mask_g = layout.mask(index, g);
          const scalar_t* input_g = input_n + g * gc;
          const acc_t* softmax_g = softmax_weight + g * points;
          for (int k = 0; k < points; ++k) {
            acc_t loc_y, loc_x;
            sampling_location(centre_y, centre_x, disp_y[k], disp_x[k], static_cast<acc_t>(offset_g[2 * k + 1]),
                              static_cast<acc_t>(offset_g[2 * k]), scale, loc_y, loc_x);
            const Corners<acc_t> corners = bilinear_corners(loc_y, loc_x, geo.height_in, geo.width_in);
            const acc_t m = geo.mask_softmax ? softmax_g[k] : static_cast<acc_t>(mask_g[k]);
            for (int q = 0; q < 4; ++q) {
              tap_src[4 * k + q] = corners.valid[q] ? input_g + corners.pixel[q] * channels : zero_row;
              tap_weight[4 * k + q] = m * corners.weight[q];
            }
          }
          accumulate_taps<scalar_t, acc_t, GC>(tap_src, tap_weight, taps, gc, acc0, acc1,
                                               output + index * channels + g * gc);
        }
      }
    }
  }
}

// Backward of one (sample n, group g) slice over output rows [row_begin, row_end). input_g and grad_input_g are the
// slice in group-major layout ((H, W, gc) contiguous, pixel stride gc): dense, so the gathered windows share cache
// lines (in the channels-last layout a group's pixels sit a whole pixel of channels apart, which spreads them over
// a fraction of the cache sets). grad_input_g is accumulated into; the slice's offset and mask gradients of these
// rows are written. Callers make sure no two concurrent calls touch the same grad_input_g elements.
template <typename Layout, typename scalar_t, typename acc_t, int GC>
DCN_CPU_TARGET void backward_slice(const Layout& layout, const scalar_t* input_g, const scalar_t* grad_output,
                                   acc_t* grad_input_g, int64_t n, int g, int row_begin, int row_end) {
  const Geometry& geo = layout.geo;
  const int gc = GC > 0 ? GC : geo.group_channels;
  const int points = layout.points, channels = geo.channels();
  const acc_t scale = static_cast<acc_t>(geo.offset_scale);
  Scratch<scalar_t, acc_t> scratch(geo, points, layout.remove_center, gc);
  acc_t fixed_grad_out[GC > 0 ? GC : 1];
  acc_t* grad_out = GC > 0 ? fixed_grad_out : scratch.acc.data();
  const acc_t* disp_y = scratch.disp_y.data();
  const acc_t* disp_x = scratch.disp_x.data();
  const scalar_t* zero_row = scratch.zero_row.data();
  acc_t* sink_row = scratch.sink_row.data();
  acc_t* point_grad = scratch.point_grad.data();
  acc_t* softmax_weight = scratch.weight.data();
  const int strip = strip_width(geo, static_cast<int64_t>(gc) * (sizeof(scalar_t) + sizeof(acc_t)));

  for (int col_begin = 0; col_begin < geo.width_out; col_begin += strip) {
    const int col_end = std::min(col_begin + strip, geo.width_out);
    for (int h_out = row_begin; h_out < row_end; ++h_out) {
      for (int w_out = col_begin; w_out < col_end; ++w_out) {
        const int64_t index = (n * geo.height_out + h_out) * geo.width_out + w_out;
        acc_t centre_y, centre_x;
        grid_centre(geo, h_out, w_out, centre_y, centre_x);
        const scalar_t* grad_out_src = grad_output + index * channels + g * gc;
#pragma omp simd
        for (int c = 0; c < gc; ++c) grad_out[c] = static_cast<acc_t>(grad_out_src[c]);
        const scalar_t* offset_pg = layout.offsets(index, g);
        const scalar_t* mask_pg = layout.mask(index, g);
        scalar_t* grad_offset_pg = layout.grad_offsets(index, g);
        scalar_t* grad_mask_pg = layout.grad_mask(index, g);
        if (geo.mask_softmax) softmax_points(mask_pg, 1, points, softmax_weight);

        for (int k = 0; k < points; ++k) {
          acc_t loc_y, loc_x;
          sampling_location(centre_y, centre_x, disp_y[k], disp_x[k], static_cast<acc_t>(offset_pg[2 * k + 1]),
                            static_cast<acc_t>(offset_pg[2 * k]), scale, loc_y, loc_x);
          const Corners<acc_t> corners = bilinear_corners(loc_y, loc_x, geo.height_in, geo.width_in);
          const acc_t m = geo.mask_softmax ? softmax_weight[k] : static_cast<acc_t>(mask_pg[k]);
          acc_t dot[4];
          for (int q = 0; q < 4; ++q) {
            const bool valid = corners.valid[q];
            const scalar_t* src = valid ? input_g + corners.pixel[q] * gc : zero_row;
            acc_t* dst = valid ? grad_input_g + corners.pixel[q] * gc : sink_row;
            dot[q] = corner_backward<scalar_t, acc_t, GC>(grad_out, src, dst, m * corners.weight[q], gc);
          }
          acc_t g_dx, g_dy;
          sample_gradients(corners, dot, m, scale, point_grad[k], g_dx, g_dy);
          grad_offset_pg[2 * k] = static_cast<scalar_t>(g_dx);
          grad_offset_pg[2 * k + 1] = static_cast<scalar_t>(g_dy);
        }
        if (geo.mask_softmax) {  // weight gradients to logit gradients (dcn_math.h)
          softmax_backward_in_place<acc_t>(StoredWeights<acc_t>{softmax_weight}, points, point_grad);
        }
        for (int k = 0; k < points; ++k) grad_mask_pg[k] = static_cast<scalar_t>(point_grad[k]);
      }
    }
  }
}

}  // namespace DCN_CPU_NS
