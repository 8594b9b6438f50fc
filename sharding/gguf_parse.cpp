// GGUF parsing: a bounds-checked cursor over the mmap'd file; every length and count is checked
// against the bytes left before it is used, so a crafted file fails with one line, never a crash.
#include "sharding/gguf_parse.h"

#include <cstring>

#include "core/error.h"
#include "sharding/gguf_dequant.h"

namespace gf {
namespace {

constexpr uint64_t kMaxLen = uint64_t(1) << 30;  // strings and arrays: 1 GiB, as llama.cpp
constexpr uint32_t kMaxDims = 4;

const char* type_name(GgufType t) {
  static const char* names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                "bool", "string", "array", "u64", "i64", "f64"};
  return uint32_t(t) < 13 ? names[uint32_t(t)] : "unknown";
}

uint64_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::u8:
    case GgufType::i8:
    case GgufType::boolean:
      return 1;
    case GgufType::u16:
    case GgufType::i16:
      return 2;
    case GgufType::u32:
    case GgufType::i32:
    case GgufType::f32:
      return 4;
    case GgufType::u64:
    case GgufType::i64:
    case GgufType::f64:
      return 8;
    default:
      return 0;
  }
}

// Reads little-endian fields; `what` names the field in the error when the file ends early.
class Cursor {
 public:
  Cursor(const std::string& path, const uint8_t* p, uint64_t size)
      : path_(path), p_(p), size_(size) {}
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }
  const uint8_t* take(uint64_t n, const std::string& what) {
    GF_CHECK(n <= left(), path_, ": GGUF ", what, " needs ", n, " bytes at offset ", pos_,
             ", only ", left(), " left in the file");
    const uint8_t* q = p_ + pos_;
    pos_ += n;
    return q;
  }
  template <typename T>
  T read(const std::string& what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what), sizeof(T));
    return v;
  }
  std::string_view string(const std::string& what) {
    uint64_t n = read<uint64_t>(what + " length");
    GF_CHECK(n <= kMaxLen && n <= left(), path_, ": GGUF ", what, " length ", n, " exceeds ",
             n > kMaxLen ? "the 1 GiB limit"
                         : "the bytes left in the file (" + std::to_string(left()) + ")");
    return {reinterpret_cast<const char*>(take(n, what)), size_t(n)};
  }

 private:
  const std::string& path_;
  const uint8_t* p_;
  uint64_t size_, pos_ = 0;
};

// Keys and tensor names end up in one-line messages: refuse control characters in them.
std::string_view printable(const std::string& path, std::string_view s, const std::string& what) {
  for (char ch : s)
    GF_CHECK(uint8_t(ch) >= 0x20 && ch != 0x7f, path, ": GGUF ", what,
             " contains a control character");
  return s;
}

bool checked_mul(int64_t a, int64_t b, int64_t* out) { return !__builtin_mul_overflow(a, b, out); }

}  // namespace

GgufFile::GgufFile(const std::string& path)
    : map_(path), path_(map_.path()), base_(map_.data()), size_(map_.size()) {
  parse();
}

void GgufFile::parse() {
  static const uint8_t empty = 0;
  Cursor c(path_, base_ ? base_ : &empty, size_);
  const uint8_t* magic = c.take(4, "magic");
  GF_CHECK(std::memcmp(magic, "GGUF", 4) == 0, path_,
           ": GGUF magic: expected 'GGUF', not a GGUF file");
  version_ = c.read<uint32_t>("version");
  GF_CHECK(version_ == 2 || version_ == 3, path_, ": GGUF version ", version_,
           version_ > 0xffff ? " (a big-endian file?)" : "", " is not supported (expected 2 or 3)");
  uint64_t n_tensors = c.read<uint64_t>("tensor_count");
  uint64_t n_kv = c.read<uint64_t>("kv_count");
  // Smallest encodings: a kv is key length + type + 1 byte; a tensor info is 8 + 4 + 8 + 4 + 8.
  GF_CHECK(n_kv <= c.left() / 13, path_, ": GGUF kv_count ", n_kv, " cannot fit in the ", c.left(),
           " bytes left in the file");
  GF_CHECK(n_tensors <= c.left() / 32, path_, ": GGUF tensor_count ", n_tensors,
           " cannot fit in the ", c.left(), " bytes left in the file");

  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string what_key = "key of kv " + std::to_string(i);
    std::string key(printable(path_, c.string(what_key), what_key));
    std::string what = "value of '" + key + "'";
    GgufValue v;
    v.type = GgufType(c.read<uint32_t>("type of '" + key + "'"));
    GgufType scalar = v.type;
    if (v.type == GgufType::array) {
      v.elem_type = GgufType(c.read<uint32_t>("element type of '" + key + "'"));
      v.count = c.read<uint64_t>("length of '" + key + "'");
      scalar = v.elem_type;
      GF_CHECK(scalar != GgufType::array, path_, ": GGUF '", key,
               "': nested arrays are not supported");
    }
    GF_CHECK(scalar == GgufType::string || scalar_size(scalar) > 0, path_, ": GGUF '", key,
             "' has value type ", uint32_t(scalar), ", expected 0..12");
    uint64_t min_elem = scalar == GgufType::string ? 8 : scalar_size(scalar);
    GF_CHECK(v.count <= kMaxLen && v.count <= c.left() / min_elem, path_, ": GGUF '", key,
             "' array length ", v.count, " exceeds ",
             v.count > kMaxLen ? "the 1 GiB limit" : "the bytes left in the file");
    if (scalar == GgufType::string) {
      v.strings.reserve(v.count);
      for (uint64_t j = 0; j < v.count; ++j) v.strings.push_back(c.string(what));
    } else {
      v.data = c.take(v.count * scalar_size(scalar), what);
    }
    GF_CHECK(kv_.emplace(key, std::move(v)).second, path_, ": GGUF key '", key, "' appears twice");
  }

  if (const GgufValue* a = find("general.alignment")) {
    GF_CHECK(a->type == GgufType::u32, path_, ": GGUF 'general.alignment' must be u32, got ",
             type_name(a->type));
    uint32_t al;
    std::memcpy(&al, a->data, 4);
    GF_CHECK(al != 0 && (al & (al - 1)) == 0, path_, ": GGUF 'general.alignment' is ", al,
             ", expected a power of two");
    alignment_ = al;
  }

  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    const std::string what_name = "name of tensor " + std::to_string(i);
    t.name = std::string(printable(path_, c.string(what_name), what_name));
    const std::string where = path_ + ": GGUF tensor '" + t.name + "'";
    uint32_t n_dims = c.read<uint32_t>("n_dims of tensor '" + t.name + "'");
    GF_CHECK(n_dims >= 1 && n_dims <= kMaxDims, where, ": n_dims ", n_dims, ", expected 1..",
             kMaxDims);
    t.n_elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      int64_t ne = c.read<int64_t>("ne of tensor '" + t.name + "'");
      GF_CHECK(ne >= 0, where, ": ne[", d, "] = ", ne, " is negative");
      GF_CHECK(checked_mul(t.n_elements, ne, &t.n_elements), where,
               ": element count overflows int64");
      t.ne.push_back(ne);
    }
    t.ggml_type = c.read<uint32_t>("type of tensor '" + t.name + "'");
    GgmlTypeInfo info = ggml_type_info(t.ggml_type);
    GF_CHECK(info.name, where, ": type ", t.ggml_type, " is not a ggml type");
    GF_CHECK(t.ne[0] % info.block_size == 0, where, ": ne[0] = ", t.ne[0],
             " is not a multiple of the ", info.name, " block size ", info.block_size);
    int64_t bytes;
    GF_CHECK(checked_mul(t.n_elements / info.block_size, info.type_size, &bytes), where,
             ": byte count overflows int64");
    t.n_bytes = uint64_t(bytes);
    t.offset = c.read<uint64_t>("offset of tensor '" + t.name + "'");
    GF_CHECK(tensor_index_.emplace(t.name, tensors_.size()).second, path_, ": GGUF tensor name '",
             t.name, "' appears twice");
    tensors_.push_back(std::move(t));
  }

  // Data section: aligned after the infos; tensors laid out in order, each padded to the alignment.
  uint64_t pad = (alignment_ - c.pos() % alignment_) % alignment_;
  data_start_ = c.pos() + pad;
  GF_CHECK(n_tensors == 0 || data_start_ <= size_, path_, ": GGUF data section starts at ",
           data_start_, ", past the end of the file (", size_, " bytes)");
  uint64_t expected = 0;
  for (const GgufTensorInfo& t : tensors_) {
    GF_CHECK(t.offset == expected, path_, ": GGUF tensor '", t.name, "' offset ", t.offset,
             ", expected ", expected, " (tensors must be contiguous, in order, each padded to ",
             alignment_, " bytes)");
    GF_CHECK(t.n_bytes <= size_ - data_start_ && t.offset <= size_ - data_start_ - t.n_bytes, path_,
             ": GGUF tensor '", t.name, "' (", t.n_bytes, " bytes at data offset ", t.offset,
             ") runs past the end of the file (", size_, " bytes)");
    expected = t.offset + t.n_bytes + (alignment_ - t.n_bytes % alignment_) % alignment_;
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

// An integer element of type t at p, as int64 (u64 above INT64_MAX is refused).
bool int_at(GgufType t, const uint8_t* p, int64_t* out) {
  switch (t) {
    case GgufType::u8:
      *out = *p;
      return true;
    case GgufType::i8:
      *out = int8_t(*p);
      return true;
    case GgufType::u16: {
      uint16_t v;
      std::memcpy(&v, p, 2);
      *out = v;
      return true;
    }
    case GgufType::i16: {
      int16_t v;
      std::memcpy(&v, p, 2);
      *out = v;
      return true;
    }
    case GgufType::u32: {
      uint32_t v;
      std::memcpy(&v, p, 4);
      *out = v;
      return true;
    }
    case GgufType::i32: {
      int32_t v;
      std::memcpy(&v, p, 4);
      *out = v;
      return true;
    }
    case GgufType::i64:
      std::memcpy(out, p, 8);
      return true;
    case GgufType::u64: {
      uint64_t v;
      std::memcpy(&v, p, 8);
      *out = int64_t(v);
      return v <= uint64_t(INT64_MAX);
    }
    default:
      return false;
  }
}

}  // namespace

std::optional<int64_t> GgufFile::get_int_opt(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  int64_t out;
  GF_CHECK(int_at(v->type, v->data, &out), path_, ": GGUF '", key,
           "' must be an integer (in int64), got ", type_name(v->type));
  return out;
}

int64_t GgufFile::get_int(const std::string& key) const {
  auto v = get_int_opt(key);
  GF_CHECK(v, path_, ": GGUF key '", key, "' is missing");
  return *v;
}

std::optional<double> GgufFile::get_float_opt(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type == GgufType::f32) {
    float f;
    std::memcpy(&f, v->data, 4);
    return f;
  }
  if (v->type == GgufType::f64) {
    double f;
    std::memcpy(&f, v->data, 8);
    return f;
  }
  int64_t i;
  GF_CHECK(int_at(v->type, v->data, &i), path_, ": GGUF '", key, "' must be a number, got ",
           type_name(v->type));
  return double(i);
}

double GgufFile::get_float(const std::string& key) const {
  auto v = get_float_opt(key);
  GF_CHECK(v, path_, ": GGUF key '", key, "' is missing");
  return *v;
}

std::optional<bool> GgufFile::get_bool_opt(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  GF_CHECK(v->type == GgufType::boolean, path_, ": GGUF '", key, "' must be bool, got ",
           type_name(v->type));
  return *v->data != 0;
}

std::optional<std::string_view> GgufFile::get_string_opt(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  GF_CHECK(v->type == GgufType::string, path_, ": GGUF '", key, "' must be a string, got ",
           type_name(v->type));
  return v->strings[0];
}

std::string_view GgufFile::get_string(const std::string& key) const {
  auto v = get_string_opt(key);
  GF_CHECK(v, path_, ": GGUF key '", key, "' is missing");
  return *v;
}

const std::vector<std::string_view>& GgufFile::get_strings(const std::string& key) const {
  const GgufValue* v = find(key);
  GF_CHECK(v, path_, ": GGUF key '", key, "' is missing");
  GF_CHECK(v->type == GgufType::array && v->elem_type == GgufType::string, path_, ": GGUF '", key,
           "' must be an array of strings");
  return v->strings;
}

std::vector<int64_t> GgufFile::get_ints(const std::string& key) const {
  const GgufValue* v = find(key);
  GF_CHECK(v, path_, ": GGUF key '", key, "' is missing");
  GF_CHECK(v->type == GgufType::array && scalar_size(v->elem_type) > 0 &&
               v->elem_type != GgufType::f32 && v->elem_type != GgufType::f64 &&
               v->elem_type != GgufType::boolean,
           path_, ": GGUF '", key, "' must be an array of integers");
  std::vector<int64_t> out(v->count);
  uint64_t es = scalar_size(v->elem_type);
  for (uint64_t i = 0; i < v->count; ++i)
    GF_CHECK(int_at(v->elem_type, v->data + i * es, &out[i]), path_, ": GGUF '", key, "'[", i,
             "] does not fit in int64");
  return out;
}

std::vector<float> GgufFile::get_floats(const std::string& key) const {
  const GgufValue* v = find(key);
  GF_CHECK(v, path_, ": GGUF key '", key, "' is missing");
  GF_CHECK(v->type == GgufType::array && v->elem_type == GgufType::f32, path_, ": GGUF '", key,
           "' must be an array of f32");
  std::vector<float> out(v->count);
  if (v->count) std::memcpy(out.data(), v->data, v->count * 4);
  return out;
}

}  // namespace gf
