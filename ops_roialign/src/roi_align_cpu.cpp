// Multi-threaded CPU RoIAlign with mmcv's semantics (mmcv/ops/csrc/pytorch/cpu/roi_align.cpp): same sampling
// grid, same bilinear weights and border rules, same argmax bookkeeping for max pooling, so the results equal
// mmcv's up to float summation order. mmcv's CPU kernels run on one thread; these split the work with
// at::parallel_for: the forward over RoIs (each RoI's sampling weights are computed once and shared by all its
// channels), the backward over channels (each thread owns whole gradient planes, so no two threads ever add into
// the same element and the result is deterministic).
//
// Arguments and in-place outputs are those of mmcv's ext_module.roi_align_forward / roi_align_backward, so the
// Python side can route mmcv's RoIAlignFunction here unchanged.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

// One bilinear sample: the four neighbour offsets inside a (H, W) plane and their weights; valid = false for a
// sample outside [-1, H] x [-1, W] (it contributes nothing).
template <typename T>
struct Sample {
  int pos1, pos2, pos3, pos4;
  T w1, w2, w3, w4;
  bool valid;
};

template <typename T>
inline Sample<T> bilinear_sample(int height, int width, T y, T x) {
  Sample<T> s{0, 0, 0, 0, 0, 0, 0, 0, false};
  if (y < -1.0 || y > height || x < -1.0 || x > width) return s;
  if (y <= 0) y = 0;
  if (x <= 0) x = 0;
  int y_low = static_cast<int>(y), x_low = static_cast<int>(x), y_high, x_high;
  if (y_low >= height - 1) {
    y_high = y_low = height - 1;
    y = static_cast<T>(y_low);
  } else {
    y_high = y_low + 1;
  }
  if (x_low >= width - 1) {
    x_high = x_low = width - 1;
    x = static_cast<T>(x_low);
  } else {
    x_high = x_low + 1;
  }
  const T ly = y - y_low, lx = x - x_low;
  const T hy = 1. - ly, hx = 1. - lx;
  s.pos1 = y_low * width + x_low;
  s.pos2 = y_low * width + x_high;
  s.pos3 = y_high * width + x_low;
  s.pos4 = y_high * width + x_high;
  s.w1 = hy * hx;
  s.w2 = hy * lx;
  s.w3 = ly * hx;
  s.w4 = ly * lx;
  s.valid = true;
  return s;
}

// Geometry of one RoI in feature-map coordinates.
template <typename T>
struct RoiGeometry {
  int batch_index;
  T start_h, start_w, bin_h, bin_w;
  int grid_h, grid_w;  // samples per bin
};

template <typename T>
inline RoiGeometry<T> roi_geometry(const T* roi, int pooled_height, int pooled_width, T spatial_scale,
                                   int sampling_ratio, bool aligned) {
  RoiGeometry<T> g;
  g.batch_index = static_cast<int>(roi[0]);
  const T offset = aligned ? static_cast<T>(0.5) : static_cast<T>(0.0);
  g.start_w = roi[1] * spatial_scale - offset;
  g.start_h = roi[2] * spatial_scale - offset;
  T roi_width = roi[3] * spatial_scale - offset - g.start_w;
  T roi_height = roi[4] * spatial_scale - offset - g.start_h;
  if (aligned) {
    TORCH_CHECK(roi_width >= 0 && roi_height >= 0, "ROIs in ROIAlign cannot have non-negative size!");
  } else {  // mmcv's backward-compatible mode: at least one pixel
    roi_width = std::max(roi_width, static_cast<T>(1.));
    roi_height = std::max(roi_height, static_cast<T>(1.));
  }
  g.bin_h = roi_height / static_cast<T>(pooled_height);
  g.bin_w = roi_width / static_cast<T>(pooled_width);
  g.grid_h = sampling_ratio > 0 ? sampling_ratio : static_cast<int>(ceilf(roi_height / pooled_height));
  g.grid_w = sampling_ratio > 0 ? sampling_ratio : static_cast<int>(ceilf(roi_width / pooled_width));
  return g;
}

template <typename T>
inline T sample_y(const RoiGeometry<T>& g, int ph, int iy) {
  return g.start_h + ph * g.bin_h + static_cast<T>(iy + .5f) * g.bin_h / static_cast<T>(g.grid_h);
}

template <typename T>
inline T sample_x(const RoiGeometry<T>& g, int pw, int ix) {
  return g.start_w + pw * g.bin_w + static_cast<T>(ix + .5f) * g.bin_w / static_cast<T>(g.grid_w);
}

// All samples of one RoI, bin-major (ph, pw, iy, ix): shared by every channel.
template <typename T>
void roi_samples(const RoiGeometry<T>& g, int pooled_height, int pooled_width, int height, int width,
                 std::vector<Sample<T>>& samples) {
  samples.resize(static_cast<size_t>(pooled_height) * pooled_width * g.grid_h * g.grid_w);
  size_t index = 0;
  for (int ph = 0; ph < pooled_height; ph++)
    for (int pw = 0; pw < pooled_width; pw++)
      for (int iy = 0; iy < g.grid_h; iy++) {
        const T y = sample_y(g, ph, iy);
        for (int ix = 0; ix < g.grid_w; ix++) samples[index++] = bilinear_sample(height, width, y, sample_x(g, pw, ix));
      }
}

// Average pooling over a channels-last copy of the input: every sample reads four contiguous rows of C values,
// which the compiler vectorises; per channel the arithmetic (and its order) is that of forward_kernel.
template <typename T>
void forward_avg_channels_last(const T* input_nhwc, const T* rois, T* output, int num_rois, int channels,
                               int height, int width, int pooled_height, int pooled_width, T spatial_scale,
                               int sampling_ratio, bool aligned) {
  const int bins = pooled_height * pooled_width;
  at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
    std::vector<Sample<T>> samples;
    std::vector<T> sums(channels);
    for (int64_t n = begin; n < end; n++) {
      const RoiGeometry<T> g = roi_geometry(rois + n * 5, pooled_height, pooled_width, spatial_scale,
                                            sampling_ratio, aligned);
      roi_samples(g, pooled_height, pooled_width, height, width, samples);
      const int per_bin = g.grid_h * g.grid_w;
      const T count = static_cast<T>(std::max(per_bin, 1));
      const T* image = input_nhwc + static_cast<int64_t>(g.batch_index) * height * width * channels;
      T* acc = sums.data();
      for (int bin = 0; bin < bins; bin++) {
        std::fill(sums.begin(), sums.end(), static_cast<T>(0));
        for (int k = 0; k < per_bin; k++) {
          const Sample<T>& s = samples[static_cast<size_t>(bin) * per_bin + k];
          const T *row1 = image + static_cast<int64_t>(s.pos1) * channels,
                  *row2 = image + static_cast<int64_t>(s.pos2) * channels,
                  *row3 = image + static_cast<int64_t>(s.pos3) * channels,
                  *row4 = image + static_cast<int64_t>(s.pos4) * channels;
          const T w1 = s.w1, w2 = s.w2, w3 = s.w3, w4 = s.w4;
#pragma omp simd
          for (int c = 0; c < channels; c++) acc[c] += w1 * row1[c] + w2 * row2[c] + w3 * row3[c] + w4 * row4[c];
        }
        T* out = output + n * channels * bins + bin;
        for (int c = 0; c < channels; c++) out[static_cast<int64_t>(c) * bins] = acc[c] / count;
      }
    }
  });
}

// Bilinear reads the average-pooling forward will make (4 per sample), to choose between the two layouts.
template <typename T>
int64_t sample_reads(const T* rois, int num_rois, int pooled_height, int pooled_width, T spatial_scale,
                     int sampling_ratio, bool aligned) {
  int64_t reads = 0;
  for (int n = 0; n < num_rois; n++) {
    const RoiGeometry<T> g = roi_geometry(rois + static_cast<int64_t>(n) * 5, pooled_height, pooled_width,
                                          spatial_scale, sampling_ratio, aligned);
    reads += 4 * static_cast<int64_t>(g.grid_h) * g.grid_w * pooled_height * pooled_width;
  }
  return reads;
}

template <typename T>
void forward_kernel(const T* input, const T* rois, T* output, T* argmax_y, T* argmax_x, int num_rois, int channels,
                    int height, int width, int pooled_height, int pooled_width, T spatial_scale, int sampling_ratio,
                    int pool_mode, bool aligned) {
  const int bins = pooled_height * pooled_width;
  at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
    std::vector<Sample<T>> samples;
    for (int64_t n = begin; n < end; n++) {
      const RoiGeometry<T> g = roi_geometry(rois + n * 5, pooled_height, pooled_width, spatial_scale,
                                            sampling_ratio, aligned);
      roi_samples(g, pooled_height, pooled_width, height, width, samples);
      const int per_bin = g.grid_h * g.grid_w;
      const T count = static_cast<T>(std::max(per_bin, 1));  // an empty grid gives 0, not NaN
      for (int c = 0; c < channels; c++) {
        const T* plane = input + (static_cast<int64_t>(g.batch_index) * channels + c) * height * width;
        const int64_t out_base = (n * channels + c) * bins;
        const Sample<T>* s = samples.data();
        for (int ph = 0; ph < pooled_height; ph++) {
          for (int pw = 0; pw < pooled_width; pw++) {
            T sum = 0., max_value = -10000;  // mmcv's initial maximum
            T max_y = -1.f, max_x = -1.f;
            for (int iy = 0; iy < g.grid_h; iy++) {
              for (int ix = 0; ix < g.grid_w; ix++, s++) {
                // An invalid sample has zero weights at position 0, as in mmcv's forward.
                const T value = s->w1 * plane[s->pos1] + s->w2 * plane[s->pos2] + s->w3 * plane[s->pos3] +
                                s->w4 * plane[s->pos4];
                if (value > max_value) {
                  max_value = value;
                  max_y = sample_y(g, ph, iy);
                  max_x = sample_x(g, pw, ix);
                }
                sum += value;
              }
            }
            const int64_t index = out_base + ph * pooled_width + pw;
            if (pool_mode == 0) {
              output[index] = max_value;
              argmax_y[index] = max_y;
              argmax_x[index] = max_x;
            } else {
              output[index] = sum / count;
            }
          }
        }
      }
    }
  });
}

// Same operation order as mmcv (grad * w / count), so float results agree bit for bit per addition.
template <typename T>
inline void scatter(T* plane, const Sample<T>& s, T grad, T count) {
  plane[s.pos1] += grad * s.w1 / count;
  plane[s.pos2] += grad * s.w2 / count;
  plane[s.pos3] += grad * s.w3 / count;
  plane[s.pos4] += grad * s.w4 / count;
}

template <typename T>
void backward_kernel(const T* grad_output, const T* rois, const T* argmax_y, const T* argmax_x, T* grad_input,
                     int num_rois, int channels, int height, int width, int pooled_height, int pooled_width,
                     T spatial_scale, int sampling_ratio, int pool_mode, bool aligned) {
  const int bins = pooled_height * pooled_width;
  // Split the channels into one contiguous range per thread (each thread then visits every RoI once).
  const int64_t grain = std::max<int64_t>(1, channels / std::max(1, at::get_num_threads()));
  at::parallel_for(0, channels, grain, [&](int64_t c_begin, int64_t c_end) {
    std::vector<Sample<T>> samples;
    for (int n = 0; n < num_rois; n++) {
      const RoiGeometry<T> g = roi_geometry(rois + static_cast<int64_t>(n) * 5, pooled_height, pooled_width,
                                            spatial_scale, sampling_ratio, aligned);
      const int per_bin = g.grid_h * g.grid_w;
      if (pool_mode == 1) roi_samples(g, pooled_height, pooled_width, height, width, samples);
      for (int64_t c = c_begin; c < c_end; c++) {
        T* plane = grad_input + (static_cast<int64_t>(g.batch_index) * channels + c) * height * width;
        const int64_t out_base = (static_cast<int64_t>(n) * channels + c) * bins;
        for (int bin = 0; bin < bins; bin++) {
          const T grad = grad_output[out_base + bin];
          if (pool_mode == 0) {
            const T y = argmax_y[out_base + bin], x = argmax_x[out_base + bin];
            if (y == -1.f) continue;
            const Sample<T> s = bilinear_sample(height, width, y, x);
            if (s.valid) scatter(plane, s, grad, static_cast<T>(1));
          } else {
            const T count = static_cast<T>(per_bin);
            const Sample<T>* s = samples.data() + static_cast<int64_t>(bin) * per_bin;
            for (int k = 0; k < per_bin; k++)
              if (s[k].valid) scatter(plane, s[k], grad, count);
          }
        }
      }
    }
  });
}

void check_args(const at::Tensor& features, const at::Tensor& rois, const char* features_name) {
  TORCH_CHECK(!features.is_cuda() && !rois.is_cuda(), "ops_roialign: CPU tensors only");
  TORCH_CHECK(features.dim() == 4, "ops_roialign: ", features_name, " must be (N, C, H, W), got ",
              features.sizes());
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, "ops_roialign: rois must be (K, 5), got ", rois.sizes());
  TORCH_CHECK(features.scalar_type() == rois.scalar_type(), "ops_roialign: rois dtype ", rois.scalar_type(),
              " differs from ", features_name, " dtype ", features.scalar_type());
  TORCH_CHECK(features.is_contiguous() && rois.is_contiguous(), "ops_roialign: tensors must be contiguous");
}

}  // namespace

void roi_align_forward(at::Tensor input, at::Tensor rois, at::Tensor output, at::Tensor argmax_y,
                       at::Tensor argmax_x, int64_t aligned_height, int64_t aligned_width, double spatial_scale,
                       int64_t sampling_ratio, int64_t pool_mode, bool aligned) {
  check_args(input, rois, "input");
  TORCH_CHECK(output.is_contiguous() && output.numel() == rois.size(0) * input.size(1) * aligned_height *
                                                                 aligned_width,
              "ops_roialign: output has the wrong size");
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "ops_roialign_forward", [&] {
    const scalar_t scale = static_cast<scalar_t>(static_cast<float>(spatial_scale));
    // The channels-last copy costs one pass over the feature map; it pays when the RoIs read it more than that.
    if (pool_mode == 1 && sample_reads(rois.data_ptr<scalar_t>(), rois.size(0), aligned_height, aligned_width, scale,
                                       sampling_ratio, aligned) > input.numel() / input.size(1)) {
      const at::Tensor input_nhwc = input.permute({0, 2, 3, 1}).contiguous();
      forward_avg_channels_last<scalar_t>(input_nhwc.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(),
                                          output.data_ptr<scalar_t>(), rois.size(0), input.size(1), input.size(2),
                                          input.size(3), aligned_height, aligned_width, scale, sampling_ratio,
                                          aligned);
      return;
    }
    forward_kernel<scalar_t>(input.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(),
                             pool_mode == 0 ? argmax_y.data_ptr<scalar_t>() : nullptr,
                             pool_mode == 0 ? argmax_x.data_ptr<scalar_t>() : nullptr, rois.size(0), input.size(1),
                             input.size(2), input.size(3), aligned_height, aligned_width,
                             static_cast<scalar_t>(static_cast<float>(spatial_scale)), sampling_ratio, pool_mode,
                             aligned);
  });
}

void roi_align_backward(at::Tensor grad_output, at::Tensor rois, at::Tensor argmax_y, at::Tensor argmax_x,
                        at::Tensor grad_input, int64_t aligned_height, int64_t aligned_width, double spatial_scale,
                        int64_t sampling_ratio, int64_t pool_mode, bool aligned) {
  check_args(grad_input, rois, "grad_input");
  TORCH_CHECK(grad_output.is_contiguous() && grad_output.numel() == rois.size(0) * grad_input.size(1) *
                                                                       aligned_height * aligned_width,
              "ops_roialign: grad_output has the wrong size or is not contiguous");
  AT_DISPATCH_FLOATING_TYPES(grad_input.scalar_type(), "ops_roialign_backward", [&] {
    backward_kernel<scalar_t>(grad_output.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(),
                              pool_mode == 0 ? argmax_y.data_ptr<scalar_t>() : nullptr,
                              pool_mode == 0 ? argmax_x.data_ptr<scalar_t>() : nullptr,
                              grad_input.data_ptr<scalar_t>(), rois.size(0), grad_input.size(1),
                              grad_input.size(2), grad_input.size(3), aligned_height, aligned_width,
                              static_cast<scalar_t>(static_cast<float>(spatial_scale)), sampling_ratio, pool_mode,
                              aligned);
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("roi_align_forward", &roi_align_forward, "RoIAlign forward (CPU, multi-threaded; mmcv's arguments)",
        py::arg("input"), py::arg("rois"), py::arg("output"), py::arg("argmax_y"), py::arg("argmax_x"),
        py::arg("aligned_height"), py::arg("aligned_width"), py::arg("spatial_scale"), py::arg("sampling_ratio"),
        py::arg("pool_mode"), py::arg("aligned"));
  m.def("roi_align_backward", &roi_align_backward, "RoIAlign backward (CPU, multi-threaded; mmcv's arguments)",
        py::arg("grad_output"), py::arg("rois"), py::arg("argmax_y"), py::arg("argmax_x"), py::arg("grad_input"),
        py::arg("aligned_height"), py::arg("aligned_width"), py::arg("spatial_scale"), py::arg("sampling_ratio"),
        py::arg("pool_mode"), py::arg("aligned"));
}
