// RAII over the HDF5 C API (see hdf5.h): read-only opens, contiguous datasets, one-line errors.
#include "io/hdf5.h"

#include <utility>

#include "core/error.h"

namespace gf::h5 {

Handle::Handle(hid_t id, Closer close, const std::string& what) : id_(id), close_(close) {
  GF_CHECK(id >= 0, what);
}
Handle::Handle(Handle&& o) noexcept
    : id_(std::exchange(o.id_, H5I_INVALID_HID)), close_(std::exchange(o.close_, nullptr)) {}
Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    if (id_ >= 0 && close_) close_(id_);
    id_ = std::exchange(o.id_, H5I_INVALID_HID);
    close_ = std::exchange(o.close_, nullptr);
  }
  return *this;
}
Handle::~Handle() {
  if (id_ >= 0 && close_) close_(id_);
}

namespace {

// File-side type (fixed little-endian, so files are the same on every host) and memory-side type.
hid_t file_type(DType t) {
  switch (t) {
    case DType::F32: return H5T_IEEE_F32LE;
    case DType::I8: return H5T_STD_I8LE;
    case DType::U8: return H5T_STD_U8LE;
    case DType::U16: case DType::BF16: return H5T_STD_U16LE;
    case DType::I32: return H5T_STD_I32LE;
    case DType::I64: return H5T_STD_I64LE;
  }
  return H5T_STD_U8LE;
}
hid_t mem_type(DType t) {
  switch (t) {
    case DType::F32: return H5T_NATIVE_FLOAT;
    case DType::I8: return H5T_NATIVE_INT8;
    case DType::U8: return H5T_NATIVE_UINT8;
    case DType::U16: case DType::BF16: return H5T_NATIVE_UINT16;
    case DType::I32: return H5T_NATIVE_INT32;
    case DType::I64: return H5T_NATIVE_INT64;
  }
  return H5T_NATIVE_UINT8;
}
const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::I8: return "int8";
    case DType::U8: return "uint8";
    case DType::U16: return "uint16";
    case DType::I32: return "int32";
    case DType::I64: return "int64";
    case DType::BF16: return "bf16";
  }
  return "?";
}
// Describes a stored type the way dtype_name does, for expected-vs-actual messages.
std::string describe_type(hid_t type) {
  H5T_class_t c = H5Tget_class(type);
  size_t size = H5Tget_size(type);
  if (c == H5T_FLOAT) return "float" + std::to_string(8 * size);
  if (c == H5T_INTEGER)
    return std::string(H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int") + std::to_string(8 * size);
  if (c == H5T_STRING) return "string";
  return "HDF5 class " + std::to_string(int(c));
}
bool type_matches(hid_t type, DType t) {
  H5T_class_t c = H5Tget_class(type);
  size_t size = H5Tget_size(type);
  bool is_signed = H5Tget_sign(type) != H5T_SGN_NONE;
  switch (t) {
    case DType::F32: return c == H5T_FLOAT && size == 4;
    case DType::I8: return c == H5T_INTEGER && size == 1 && is_signed;
    case DType::U8: return c == H5T_INTEGER && size == 1 && !is_signed;
    case DType::U16: case DType::BF16: return c == H5T_INTEGER && size == 2 && !is_signed;
    case DType::I32: return c == H5T_INTEGER && size == 4 && is_signed;
    case DType::I64: return c == H5T_INTEGER && size == 8 && is_signed;
  }
  return false;
}
std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}
std::string join(const std::string& path, const std::string& name) {
  return path == "/" ? "/" + name : path + "/" + name;
}
// Property list that keeps files byte-identical across runs (no object timestamps).
Handle no_times_plist(hid_t cls, const std::string& what) {
  Handle p(H5Pcreate(cls), H5Pclose, what + ": H5Pcreate failed");
  H5Pset_obj_track_times(p.get(), false);
  return p;
}
std::vector<int64_t> space_dims(hid_t space) {
  int n = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> d(n > 0 ? n : 0);
  if (n > 0) H5Sget_simple_extent_dims(space, d.data(), nullptr);
  return std::vector<int64_t>(d.begin(), d.end());
}

// An attribute opened and checked for its class, with its element count.
struct AttrInfo {
  Handle attr, type;
  int64_t count;
};
AttrInfo open_attr(hid_t obj, const std::string& file, const std::string& path, const std::string& name,
                   H5T_class_t want, const char* want_name) {
  std::string where = file + ": attribute " + path + "@" + name;
  GF_CHECK(H5Aexists(obj, name.c_str()) > 0, where, " is missing");
  Handle a(H5Aopen(obj, name.c_str(), H5P_DEFAULT), H5Aclose, where + ": cannot open");
  Handle t(H5Aget_type(a.get()), H5Tclose, where + ": no type");
  GF_CHECK(H5Tget_class(t.get()) == want, where, ": expected ", want_name, ", got ", describe_type(t.get()));
  Handle s(H5Aget_space(a.get()), H5Sclose, where + ": no dataspace");
  int64_t count = H5Sget_simple_extent_type(s.get()) == H5S_NULL ? 0 : H5Sget_simple_extent_npoints(s.get());
  return {std::move(a), std::move(t), count};
}

// Fixed-length, null-padded strings; HDF5 forbids size 0, so "" is stored as one NUL.
void write_string_attr(hid_t obj, const std::string& file, const std::string& path, const std::string& name,
                       const std::string& v) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose, file + ": H5Tcopy failed");
  H5Tset_size(type.get(), v.empty() ? 1 : v.size());
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose, file + ": H5Screate failed");
  Handle a(H5Acreate2(obj, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
           file + ": cannot create attribute " + path + "@" + name);
  std::string buf = v.empty() ? std::string(1, '\0') : v;
  GF_CHECK(H5Awrite(a.get(), type.get(), buf.data()) >= 0, file, ": writing attribute ", path, "@", name, " failed");
}

std::string read_string_attr(hid_t obj, const std::string& file, const std::string& path, const std::string& name) {
  auto a = open_attr(obj, file, path, name, H5T_STRING, "a string");
  GF_CHECK(a.count == 1 && H5Tis_variable_str(a.type.get()) == 0, file, ": attribute ", path, "@", name,
           ": expected one fixed-length string");
  std::string v(H5Tget_size(a.type.get()), '\0');
  GF_CHECK(H5Aread(a.attr.get(), a.type.get(), v.data()) >= 0, file, ": reading attribute ", path, "@", name,
           " failed");
  v.resize(v.find('\0') == std::string::npos ? v.size() : v.find('\0'));
  return v;
}

}  // namespace

Group Group::create_group(const std::string& name) {
  std::string p = join(path_, name);
  auto gcpl = no_times_plist(H5P_GROUP_CREATE, file_);
  Handle g(H5Gcreate2(id(), name.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT), H5Gclose,
           file_ + ": cannot create group " + p);
  return Group(std::move(g), file_, p);
}

Group Group::open_group(const std::string& name) const {
  std::string p = join(path_, name);
  GF_CHECK(has(name), file_, ": group ", p, " is missing");
  Handle g(H5Gopen2(id(), name.c_str(), H5P_DEFAULT), H5Gclose, file_ + ": " + p + " is not a group");
  return Group(std::move(g), file_, p);
}

bool Group::has(const std::string& name) const { return H5Lexists(id(), name.c_str(), H5P_DEFAULT) > 0; }

void Group::write(const std::string& name, DType t, const std::vector<int64_t>& shape, const void* data) {
  std::string p = join(path_, name);
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Handle space(H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose,
               file_ + ": " + p + ": bad shape " + shape_str(shape));
  auto dcpl = no_times_plist(H5P_DATASET_CREATE, file_);
  H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS);
  Handle ds(H5Dcreate2(id(), name.c_str(), file_type(t), space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
            H5Dclose, file_ + ": cannot create dataset " + p);
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  static const uint8_t dummy = 0;  // HDF5 rejects a null buffer even for zero elements
  GF_CHECK(H5Dwrite(ds.get(), mem_type(t), H5S_ALL, H5S_ALL, H5P_DEFAULT, n ? data : &dummy) >= 0, file_,
           ": writing ", p, " failed (disk full or file size limit?)");
  if (t == DType::BF16) write_string_attr(ds.get(), file_, p, "dtype", "bf16");
}

std::vector<int64_t> Group::shape(const std::string& name) const {
  std::string p = join(path_, name);
  GF_CHECK(has(name), file_, ": dataset ", p, " is missing");
  Handle ds(H5Dopen2(id(), name.c_str(), H5P_DEFAULT), H5Dclose, file_ + ": " + p + " is not a dataset");
  Handle space(H5Dget_space(ds.get()), H5Sclose, file_ + ": " + p + ": no dataspace");
  return space_dims(space.get());
}

void Group::read(const std::string& name, DType t, const std::vector<int64_t>& expect, void* out) const {
  std::string p = join(path_, name);
  GF_CHECK(has(name), file_, ": dataset ", p, " is missing");
  Handle ds(H5Dopen2(id(), name.c_str(), H5P_DEFAULT), H5Dclose, file_ + ": " + p + " is not a dataset");
  Handle type(H5Dget_type(ds.get()), H5Tclose, file_ + ": " + p + ": no datatype");
  GF_CHECK(type_matches(type.get(), t), file_, ": ", p, ": dtype expected ", dtype_name(t), ", got ",
           describe_type(type.get()));
  bool tagged_bf16 = H5Aexists(ds.get(), "dtype") > 0 && read_string_attr(ds.get(), file_, p, "dtype") == "bf16";
  GF_CHECK(tagged_bf16 == (t == DType::BF16), file_, ": ", p, ": dtype expected ", dtype_name(t), ", got ",
           tagged_bf16 ? "bf16" : describe_type(type.get()));
  Handle space(H5Dget_space(ds.get()), H5Sclose, file_ + ": " + p + ": no dataspace");
  auto dims = space_dims(space.get());
  GF_CHECK(dims == expect, file_, ": ", p, ": shape expected ", shape_str(expect), ", got ", shape_str(dims));
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  if (n == 0) return;
  GF_CHECK(H5Dread(ds.get(), mem_type(t), H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0, file_, ": reading ", p,
           " failed (file damaged?)");
}

std::vector<uint8_t> Group::read_bytes(const std::string& name) const {
  auto dims = shape(name);
  GF_CHECK(dims.size() == 1, file_, ": ", join(path_, name), ": expected a 1-D byte array, got rank ",
           dims.size());
  std::vector<uint8_t> v(dims[0]);
  read(name, DType::U8, dims, v.data());
  return v;
}

void Group::set_attr(const std::string& name, int64_t v) {
  Handle space(H5Screate(H5S_SCALAR), H5Sclose, file_ + ": H5Screate failed");
  Handle a(H5Acreate2(id(), name.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
           file_ + ": cannot create attribute " + path_ + "@" + name);
  GF_CHECK(H5Awrite(a.get(), H5T_NATIVE_INT64, &v) >= 0, file_, ": writing attribute ", path_, "@", name, " failed");
}

void Group::set_attr(const std::string& name, double v) {
  Handle space(H5Screate(H5S_SCALAR), H5Sclose, file_ + ": H5Screate failed");
  Handle a(H5Acreate2(id(), name.c_str(), H5T_IEEE_F64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
           file_ + ": cannot create attribute " + path_ + "@" + name);
  GF_CHECK(H5Awrite(a.get(), H5T_NATIVE_DOUBLE, &v) >= 0, file_, ": writing attribute ", path_, "@", name, " failed");
}

void Group::set_attr(const std::string& name, const std::string& v) { write_string_attr(id(), file_, path_, name, v); }

void Group::set_attr(const std::string& name, const std::vector<int64_t>& v) {
  hsize_t n = v.size();
  Handle space(n ? H5Screate_simple(1, &n, nullptr) : H5Screate(H5S_NULL), H5Sclose, file_ + ": H5Screate failed");
  Handle a(H5Acreate2(id(), name.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
           file_ + ": cannot create attribute " + path_ + "@" + name);
  if (n)
    GF_CHECK(H5Awrite(a.get(), H5T_NATIVE_INT64, v.data()) >= 0, file_, ": writing attribute ", path_, "@", name,
             " failed");
}

bool Group::has_attr(const std::string& name) const { return H5Aexists(id(), name.c_str()) > 0; }


int64_t Group::attr_int(const std::string& name) const {
  auto a = open_attr(id(), file_, path_, name, H5T_INTEGER, "an integer");
  GF_CHECK(a.count == 1, file_, ": attribute ", path_, "@", name, ": expected one value, got ", a.count);
  int64_t v = 0;
  GF_CHECK(H5Aread(a.attr.get(), H5T_NATIVE_INT64, &v) >= 0, file_, ": reading attribute ", path_, "@", name,
           " failed");
  return v;
}

double Group::attr_double(const std::string& name) const {
  auto a = open_attr(id(), file_, path_, name, H5T_FLOAT, "a float");
  GF_CHECK(a.count == 1, file_, ": attribute ", path_, "@", name, ": expected one value, got ", a.count);
  double v = 0;
  GF_CHECK(H5Aread(a.attr.get(), H5T_NATIVE_DOUBLE, &v) >= 0, file_, ": reading attribute ", path_, "@", name,
           " failed");
  return v;
}

std::string Group::attr_string(const std::string& name) const { return read_string_attr(id(), file_, path_, name); }

std::vector<int64_t> Group::attr_ints(const std::string& name) const {
  auto a = open_attr(id(), file_, path_, name, H5T_INTEGER, "integers");
  std::vector<int64_t> v(a.count);
  if (a.count)
    GF_CHECK(H5Aread(a.attr.get(), H5T_NATIVE_INT64, v.data()) >= 0, file_, ": reading attribute ", path_, "@",
             name, " failed");
  return v;
}

Group create_file(const std::string& path) {
  quiet_errors();
  Handle f(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose,
           path + ": cannot create HDF5 file (directory missing or not writable?)");
  return Group(std::move(f), path, "/");
}

Group open_file_readonly(const std::string& path) {
  quiet_errors();
  htri_t is = H5Fis_hdf5(path.c_str());
  GF_CHECK(is >= 0, path, ": cannot open (missing or unreadable)");
  GF_CHECK(is > 0, path, ": not an HDF5 file");
  Handle f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, path + ": HDF5 open failed (damaged?)");
  return Group(std::move(f), path, "/");
}

void quiet_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

}  // namespace gf::h5
