// DCNv4 CPU kernel bodies. Included more than once by dcnv4_cpu.cpp, each time with another DCNV3_CPU_NS and
// DCNV3_CPU_TARGET, right after the DCNv3 kernel header of the same build, whose vector loops (accumulate_taps,
// corner_backward) and strip sizing these reuse: one binary carries a baseline and an AVX2 build. No include guard
// on purpose.
//
// Work the packed layout saves compared with the DCNv3 kernel: a group's offsets and mask are one contiguous run of
// 3K values (one stream, no second mask tensor), the mask is taken raw (no softmax anywhere, neither here nor in the
// module), samples outside the image and corners outside it are skipped instead of read from a zero row, and the
// backward writes one gradient tensor whose padding tail is the only part zero-filled.

namespace DCNV3_CPU_NS {

// Regular displacement of each of the K points (remove_center aware), computed once per task.
template <typename acc_t>
struct Displacements {
  std::vector<acc_t> y, x;
  explicit Displacements(const dcnv4::Geometry& geo) : y(geo.kernel_points()), x(geo.kernel_points()) {
    for (int p = 0; p < geo.kernel_points(); ++p) point_displacement(geo, p, geo.remove_center != 0, y[p], x[p]);
  }
};

// Forward of sample n, output rows [row_begin, row_end), all groups, in strips of columns (neighbouring windows
// share cache lines) with all groups of a pixel together (its channels are contiguous).
template <typename scalar_t, typename acc_t, int GC>
DCNV3_CPU_TARGET void dcnv4_forward_rows(const dcnv4::Geometry& geo, const scalar_t* input,
                                         const scalar_t* offset_mask, scalar_t* output, int64_t n, int row_begin,
                                         int row_end) {
  const int gc = GC > 0 ? GC : geo.group_channels;
  const int groups = geo.group, points = geo.kernel_points(), channels = geo.channels();
  const int64_t pixels_in = static_cast<int64_t>(geo.height_in) * geo.width_in;
  const acc_t scale = static_cast<acc_t>(geo.offset_scale);
  const Displacements<acc_t> disp(geo);
  std::vector<const scalar_t*> tap_src(4 * points + 1);  // valid corners of the current (pixel, group), + 1 pad
  std::vector<acc_t> tap_weight(4 * points + 1);         // mask * bilinear weight of each
  std::vector<acc_t> acc(2 * gc);                        // accumulators when gc is not a compile-time constant
  const std::vector<scalar_t> zero_row(gc, scalar_t(0));  // pads an odd tap count (accumulate_taps takes pairs)
  const scalar_t* input_n = input + n * pixels_in * channels;
  const int strip = strip_width(geo, static_cast<int64_t>(channels) * sizeof(scalar_t));

  for (int col_begin = 0; col_begin < geo.width_out; col_begin += strip) {
    const int col_end = std::min(col_begin + strip, geo.width_out);
    for (int h_out = row_begin; h_out < row_end; ++h_out) {
      for (int w_out = col_begin; w_out < col_end; ++w_out) {
        const int64_t index = (n * geo.height_out + h_out) * geo.width_out + w_out;
        acc_t centre_y, centre_x;
        grid_centre(geo, h_out, w_out, centre_y, centre_x);
        const scalar_t* offset_mask_px = offset_mask + index * geo.offset_mask_channels;
        for (int g = 0; g < groups; ++g) {
          const scalar_t* offsets = offset_mask_px + g * geo.group_stride();
          const scalar_t* mask = offsets + 2 * points;
          const scalar_t* input_g = input_n + g * gc;
          int taps = 0;
          for (int p = 0; p < points; ++p) {
            acc_t loc_y, loc_x;
            sampling_location(centre_y, centre_x, disp.y[p], disp.x[p], static_cast<acc_t>(offsets[2 * p + 1]),
                              static_cast<acc_t>(offsets[2 * p]), scale, loc_y, loc_x);
            const Corners<acc_t> corners = bilinear_corners(loc_y, loc_x, geo.height_in, geo.width_in);
            if (!corners.inside) continue;
            const acc_t m = static_cast<acc_t>(mask[p]);
            for (int q = 0; q < 4; ++q) {
              if (!corners.valid[q]) continue;
              tap_src[taps] = input_g + corners.pixel[q] * channels;
              tap_weight[taps++] = m * corners.weight[q];
            }
          }
          if (taps & 1) {
            tap_src[taps] = zero_row.data();
            tap_weight[taps++] = acc_t(0);
          }
          accumulate_taps<scalar_t, acc_t, GC>(tap_src.data(), tap_weight.data(), taps, gc, acc.data(),
                                               acc.data() + gc, output + index * channels + g * gc);
        }
      }
    }
  }
}

// Backward of one (sample n, group g) slice over output rows [row_begin, row_end). input_g and grad_input_g are the
// slice in group-major layout ((H, W, gc) contiguous, pixel stride gc) so the gathered windows are dense in memory.
// grad_input_g is accumulated into; the slice's grad_offset_mask entries of these rows are written (all 3K of each
// pixel). Callers make sure no two concurrent calls touch the same grad_input_g elements.
template <typename scalar_t, typename acc_t, int GC>
DCNV3_CPU_TARGET void dcnv4_backward_slice(const dcnv4::Geometry& geo, const scalar_t* input_g,
                                           const scalar_t* offset_mask, const scalar_t* grad_output,
                                           acc_t* grad_input_g, scalar_t* grad_offset_mask, int64_t n, int g,
                                           int row_begin, int row_end) {
  const int gc = GC > 0 ? GC : geo.group_channels;
  const int points = geo.kernel_points(), channels = geo.channels();
  const acc_t scale = static_cast<acc_t>(geo.offset_scale);
  const Displacements<acc_t> disp(geo);
  std::vector<acc_t> dynamic_grad_out(GC > 0 ? 0 : gc);
  acc_t fixed_grad_out[GC > 0 ? GC : 1];
  acc_t* grad_out = GC > 0 ? fixed_grad_out : dynamic_grad_out.data();
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
        const int64_t first = index * geo.offset_mask_channels + static_cast<int64_t>(g) * geo.group_stride();
        const scalar_t* offsets = offset_mask + first;
        const scalar_t* mask = offsets + 2 * points;
        scalar_t* grad_offsets = grad_offset_mask + first;
        scalar_t* grad_mask = grad_offsets + 2 * points;

        for (int p = 0; p < points; ++p) {
          acc_t loc_y, loc_x;
          sampling_location(centre_y, centre_x, disp.y[p], disp.x[p], static_cast<acc_t>(offsets[2 * p + 1]),
                            static_cast<acc_t>(offsets[2 * p]), scale, loc_y, loc_x);
          const Corners<acc_t> corners = bilinear_corners(loc_y, loc_x, geo.height_in, geo.width_in);
          const acc_t m = static_cast<acc_t>(mask[p]);
          acc_t dot[4] = {acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
          if (corners.inside) {
            for (int q = 0; q < 4; ++q) {
              if (!corners.valid[q]) continue;
              dot[q] = corner_backward<scalar_t, acc_t, GC>(grad_out, input_g + corners.pixel[q] * gc,
                                                            grad_input_g + corners.pixel[q] * gc,
                                                            m * corners.weight[q], gc);
            }
          }
          acc_t g_mask, g_dx, g_dy;
          sample_gradients(corners, dot, m, scale, g_mask, g_dx, g_dy);
          grad_offsets[2 * p] = static_cast<scalar_t>(g_dx);
          grad_offsets[2 * p + 1] = static_cast<scalar_t>(g_dy);
          grad_mask[p] = static_cast<scalar_t>(g_mask);
        }
      }
    }
  }
}

}  // namespace DCNV3_CPU_NS
