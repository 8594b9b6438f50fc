// RAII over the HDF5 C API: files, groups, datasets and attributes for the shard files.
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace gf::h5 {

// Owns one hid_t and closes it with the matching H5*close; move-only.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer close, const std::string& what);  // throws gf::Error when id < 0
  Handle(Handle&& o) noexcept;
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle();
  hid_t get() const { return id_; }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

// BF16 is stored as uint16 words with a dataset attribute dtype="bf16" (HDF5 1.10 has no bf16 type);
// reading BF16 checks that attribute, so bf16 bits are never mistaken for integers.
enum class DType { F32, I8, U8, U16, I32, I64, BF16 };

// A group or a file (files are groups at "/"). Every error names the file and the object path.
class Group {
 public:
  Group(Handle h, std::string file, std::string path) : h_(std::move(h)), file_(std::move(file)), path_(std::move(path)) {}
  hid_t id() const { return h_.get(); }
  const std::string& file() const { return file_; }
  const std::string& path() const { return path_; }

  Group create_group(const std::string& name);
  Group open_group(const std::string& name) const;
  bool has(const std::string& name) const;

  // Contiguous datasets (a rank reads its file at disk speed).
  void write(const std::string& name, DType t, const std::vector<int64_t>& shape, const void* data);
  // Shape of a dataset; throws naming file/path/name if absent.
  std::vector<int64_t> shape(const std::string& name) const;
  // Reads a whole dataset; checks dtype and shape against `expect_shape` (message: expected vs actual).
  void read(const std::string& name, DType t, const std::vector<int64_t>& expect_shape, void* out) const;
  std::vector<uint8_t> read_bytes(const std::string& name) const;  // 1-D uint8 dataset of any length

  void set_attr(const std::string& name, int64_t v);
  void set_attr(const std::string& name, double v);
  void set_attr(const std::string& name, const std::string& v);
  void set_attr(const std::string& name, const std::vector<int64_t>& v);
  bool has_attr(const std::string& name) const;
  int64_t attr_int(const std::string& name) const;     // throws naming file, path, attribute
  double attr_double(const std::string& name) const;
  std::string attr_string(const std::string& name) const;
  std::vector<int64_t> attr_ints(const std::string& name) const;

 private:
  Handle h_;
  std::string file_, path_;
};

// Creates (truncating) a file for writing.
Group create_file(const std::string& path);
// Opens read-only; a file that is not HDF5 is a one-line error naming it.
Group open_file_readonly(const std::string& path);
// Silences HDF5's own error-stack printing (we throw our own one-line errors instead).
void quiet_errors();

}  // namespace gf::h5
