// Runs every per-thread body of the DCNv3 and DCNv4 CUDA kernels over every thread index of a launch, on the host,
// with nothing from torch: built with -std=c++17 (the standard torch < 2.14 compiles extensions with) and, by
// tools/kernel_check/build.sh, under AddressSanitizer and UndefinedBehaviorSanitizer (signed overflow included), so
// an out-of-bounds read or write, a misaligned pack access or a 32-bit index overflow stops it with a report.
// tests/ops_dcnv3/test_cuda_bodies_sanitized.py writes the inputs, runs it and compares what it writes with the
// PyTorch reference.
//
// usage: cuda_bodies_check dcnv3|dcnv4 float|double PACK DIR [--last-image]
//   DIR/geometry.txt  "name value" lines: the fields of dcnv3::Geometry (and dcnv4::Geometry's)
//   DIR/{input,offset,mask,grad_output}.bin (dcnv3) or DIR/{input,offset_mask,grad_output}.bin (dcnv4): raw arrays
//   writes DIR/{output,grad_input,grad_offset,grad_mask}.bin (dcnv3) or DIR/{output,grad_input,grad_offset_mask}.bin
//   PACK: DCNv3's channels per thread, 1 or the widest (16 bytes); ignored by DCNv4 (one channel per thread).
//   --last-image: the arrays hold the last image of the batch only. Every buffer is mapped for the whole batch,
//   lazily (MAP_NORESERVE: untouched pages cost nothing), the last image is written at its place, only the threads
//   of the last image run, and only its outputs are written back: a batch past 2^31 elements runs on a small machine.
#include <sys/mman.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/dcnv3_cuda_bodies.h"
#include "common/dcnv4_cuda_bodies.h"

namespace {

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "cuda_bodies_check: %s\n", message.c_str());
  std::exit(2);
}

std::map<std::string, double> read_geometry(const std::string& path) {
  std::ifstream file(path);
  if (!file) fail("cannot read " + path);
  std::map<std::string, double> fields;
  std::string name;
  double value;
  while (file >> name >> value) fields[name] = value;
  return fields;
}

double field(const std::map<std::string, double>& fields, const char* name) {
  const auto it = fields.find(name);
  if (it == fields.end()) fail(std::string("geometry.txt has no ") + name);
  return it->second;
}

void fill_dcnv3_geometry(const std::map<std::string, double>& f, dcnv3::Geometry& geo) {
  geo.batch = static_cast<int64_t>(field(f, "batch"));
  geo.height_in = static_cast<int>(field(f, "height_in"));
  geo.width_in = static_cast<int>(field(f, "width_in"));
  geo.height_out = static_cast<int>(field(f, "height_out"));
  geo.width_out = static_cast<int>(field(f, "width_out"));
  geo.kernel_h = static_cast<int>(field(f, "kernel_h"));
  geo.kernel_w = static_cast<int>(field(f, "kernel_w"));
  geo.stride_h = static_cast<int>(field(f, "stride_h"));
  geo.stride_w = static_cast<int>(field(f, "stride_w"));
  geo.pad_h = static_cast<int>(field(f, "pad_h"));
  geo.pad_w = static_cast<int>(field(f, "pad_w"));
  geo.dilation_h = static_cast<int>(field(f, "dilation_h"));
  geo.dilation_w = static_cast<int>(field(f, "dilation_w"));
  geo.group = static_cast<int>(field(f, "group"));
  geo.group_channels = static_cast<int>(field(f, "group_channels"));
  geo.offset_scale = field(f, "offset_scale");
  geo.mask_softmax = field(f, "mask_softmax") != 0;
}

// One tensor of the launch: `total` elements for the whole batch, of which the file holds all (normal mode) or the
// last image's `per_image` (last-image mode). Normal mode allocates exactly `total` elements (16-byte aligned, as
// the CUDA caching allocator's blocks are), so the sanitizer sees one element past the end as out of bounds.
template <typename T>
struct Buffer {
  T* data = nullptr;
  int64_t total = 0, per_image = 0;
  bool mapped = false;

  Buffer(int64_t total_, int64_t per_image_, bool last_image) : total(total_), per_image(per_image_),
                                                                mapped(last_image) {
    const size_t bytes = static_cast<size_t>(total) * sizeof(T);
    if (mapped) {
      void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) fail("mmap of " + std::to_string(bytes) + " bytes failed");
      data = static_cast<T*>(p);
    } else {
      void* p = nullptr;
      if (posix_memalign(&p, 16, bytes == 0 ? 16 : bytes) != 0) fail("allocation failed");
      data = static_cast<T*>(p);
      std::memset(data, 0, bytes);
    }
  }
  ~Buffer() {
    if (mapped) munmap(data, static_cast<size_t>(total) * sizeof(T));
    else std::free(data);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  int64_t file_elements() const { return mapped ? per_image : total; }
  T* file_start() const { return mapped ? data + (total - per_image) : data; }

  void read(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    if (!file) fail("cannot read " + path);
    file.read(reinterpret_cast<char*>(file_start()), file_elements() * static_cast<std::streamsize>(sizeof(T)));
    if (file.gcount() != file_elements() * static_cast<std::streamsize>(sizeof(T))) fail(path + " is too short");
  }
  void write(const std::string& path) const {
    std::ofstream file(path, std::ios::binary);
    file.write(reinterpret_cast<const char*>(file_start()), file_elements() * static_cast<std::streamsize>(sizeof(T)));
    if (!file) fail("cannot write " + path);
  }
  void fill(T value) {
    for (int64_t i = 0; i < file_elements(); ++i) file_start()[i] = value;
  }
};

// The threads of a launch of `total` threads that run: all, or those of the last image.
template <typename Body>
void for_threads(int64_t total, int64_t batch, bool last_image, const Body& body) {
  for (int64_t thread = last_image ? total - total / batch : 0; thread < total; ++thread) body(thread);
}

template <typename T, int PACK>
void run_dcnv3(const dcnv3::Geometry& geo, const std::string& dir, bool last_image) {
  using namespace dcnv3;
  const int64_t in_pixels = static_cast<int64_t>(geo.height_in) * geo.width_in;
  const int64_t out_pixels = static_cast<int64_t>(geo.height_out) * geo.width_out;
  const int64_t channels = geo.channels(), points = static_cast<int64_t>(geo.group) * geo.points();
  Buffer<T> input(geo.batch * in_pixels * channels, in_pixels * channels, last_image);
  Buffer<T> offset(geo.batch * out_pixels * points * 2, out_pixels * points * 2, last_image);
  Buffer<T> mask(geo.batch * out_pixels * points, out_pixels * points, last_image);
  Buffer<T> grad_output(geo.batch * out_pixels * channels, out_pixels * channels, last_image);
  Buffer<T> output(grad_output.total, grad_output.per_image, last_image);
  Buffer<T> grad_input(input.total, input.per_image, last_image);
  Buffer<T> grad_offset(offset.total, offset.per_image, last_image);
  Buffer<T> grad_mask(mask.total, mask.per_image, last_image);
  input.read(dir + "/input.bin");
  offset.read(dir + "/offset.bin");
  mask.read(dir + "/mask.bin");
  grad_output.read(dir + "/grad_output.bin");
  // Outputs the bodies must write start as NaN, so an element they skip shows up in the comparison.
  output.fill(T(NAN));
  grad_offset.fill(T(NAN));
  grad_mask.fill(T(NAN));
  for_threads(forward_threads(geo, PACK), geo.batch, last_image, [&](int64_t thread) {
    forward_thread<PACK, T, T>(geo, thread, input.data, offset.data, mask.data, output.data);
  });
  for_threads(backward_input_threads(geo), geo.batch, last_image, [&](int64_t thread) {
    backward_input_thread<T, T>(geo, thread, offset.data, mask.data, grad_output.data, grad_input.data);
  });
  for_threads(backward_offset_mask_threads(geo), geo.batch, last_image, [&](int64_t thread) {
    backward_offset_mask_thread<PACK, T, T>(geo, thread, input.data, offset.data, mask.data, grad_output.data,
                                            grad_offset.data, grad_mask.data);
  });
  if (geo.mask_softmax) {
    for_threads(backward_softmax_threads(geo), geo.batch, last_image, [&](int64_t thread) {
      backward_softmax_thread<T, T>(geo, thread, mask.data, grad_mask.data);
    });
  }
  output.write(dir + "/output.bin");
  grad_input.write(dir + "/grad_input.bin");
  grad_offset.write(dir + "/grad_offset.bin");
  grad_mask.write(dir + "/grad_mask.bin");
}

template <typename T>
void run_dcnv4(const dcnv4::Geometry& geo, const std::string& dir, bool last_image) {
  const int64_t in_pixels = static_cast<int64_t>(geo.height_in) * geo.width_in;
  const int64_t out_pixels = static_cast<int64_t>(geo.height_out) * geo.width_out;
  const int64_t channels = geo.channels();
  Buffer<T> input(geo.batch * in_pixels * channels, in_pixels * channels, last_image);
  Buffer<T> offset_mask(geo.batch * out_pixels * geo.offset_mask_channels, out_pixels * geo.offset_mask_channels,
                        last_image);
  Buffer<T> grad_output(geo.batch * out_pixels * channels, out_pixels * channels, last_image);
  Buffer<T> output(grad_output.total, grad_output.per_image, last_image);
  Buffer<T> grad_input(input.total, input.per_image, last_image);
  Buffer<T> grad_offset_mask(offset_mask.total, offset_mask.per_image, last_image);
  input.read(dir + "/input.bin");
  offset_mask.read(dir + "/offset_mask.bin");
  grad_output.read(dir + "/grad_output.bin");
  output.fill(T(NAN));
  grad_offset_mask.fill(T(NAN));  // the padding channels are left NaN here; the test compares the used ones
  const auto atomic_add = [](T* address, T value) { dcn::host_atomic_add(address, value); };
  for_threads(output.total, geo.batch, last_image, [&](int64_t element) {
    dcnv4::cuda_bodies::forward_element<T, T>(geo, input.data, offset_mask.data, output.data, element);
  });
  const int64_t point_threads = geo.batch * out_pixels * geo.group * geo.kernel_points();
  for_threads(point_threads, geo.batch, last_image, [&](int64_t point) {
    dcnv4::cuda_bodies::backward_point<T, T>(geo, input.data, offset_mask.data, grad_output.data, grad_input.data,
                                              grad_offset_mask.data, point, atomic_add);
  });
  output.write(dir + "/output.bin");
  grad_input.write(dir + "/grad_input.bin");
  grad_offset_mask.write(dir + "/grad_offset_mask.bin");
}

template <typename T>
void run(const std::string& op, int pack, const std::string& dir, bool last_image) {
  const auto fields = read_geometry(dir + "/geometry.txt");
  if (op == "dcnv3") {
    dcnv3::Geometry geo;
    fill_dcnv3_geometry(fields, geo);
    constexpr int kWide = dcnv3::kMaxPackBytes / static_cast<int>(sizeof(T));
    if (pack == kWide && geo.group_channels % kWide == 0) {
      run_dcnv3<T, kWide>(geo, dir, last_image);
    } else if (pack == 1) {
      run_dcnv3<T, 1>(geo, dir, last_image);
    } else {
      fail("PACK must be 1, or " + std::to_string(kWide) + " when it divides group_channels");
    }
  } else if (op == "dcnv4") {
    dcnv4::Geometry geo;
    fill_dcnv3_geometry(fields, geo);
    geo.remove_center = static_cast<int>(field(fields, "remove_center"));
    geo.offset_mask_channels = static_cast<int>(field(fields, "offset_mask_channels"));
    run_dcnv4<T>(geo, dir, last_image);
  } else {
    fail("OP must be dcnv3 or dcnv4, got " + op);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5 || argc > 6) fail("usage: cuda_bodies_check dcnv3|dcnv4 float|double PACK DIR [--last-image]");
  const std::string op = argv[1], dtype = argv[2], dir = argv[4];
  const int pack = std::atoi(argv[3]);
  const bool last_image = argc == 6 && std::string(argv[5]) == "--last-image";
  if (argc == 6 && !last_image) fail(std::string("unknown option ") + argv[5]);
  if (dtype == "float") {
    run<float>(op, pack, dir, last_image);
  } else if (dtype == "double") {
    run<double>(op, pack, dir, last_image);
  } else {
    fail("DTYPE must be float or double, got " + dtype);
  }
  return 0;
}
