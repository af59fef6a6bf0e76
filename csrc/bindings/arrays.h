// NumPy arrays and device-buffer descriptors -> checked views for the bindings (private header).
//
// Host path: a numpy.ndarray, never converted: wrong dtype, byte order, layout or rank is rejected
// (a float64 bank would otherwise be copied silently). Device path (CUDA): a tuple
// (data_ptr: int, shape: tuple[int, ...], dtype: str, contiguous: bool) built by cpr_engine.ops from
// a torch tensor, so the module needs no torch headers or ABI.
// Messages: "<op>: <arg> must be <form> <dtypes>, C-contiguous; got <shape> <dtype>".
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace cpr {
namespace binding {

namespace py = pybind11;

// One expected dimension: a fixed size, or any size (value < 0) shown by its name.
struct Dim {
  const char* name;
  int64_t value = -1;
};

struct ArrayRef {
  void* data = nullptr;
  std::vector<int64_t> shape;
  std::string dtype;  // numpy / torch name without prefix: "float32", "float16", "int64", ...
  bool contiguous = false;
  bool writable = true;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

inline std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << '(';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  if (shape.size() == 1) out << ',';
  out << ')';
  return out.str();
}

inline std::string form_str(const std::vector<Dim>& dims) {
  std::ostringstream out;
  out << '(';
  for (size_t i = 0; i < dims.size(); ++i) {
    out << (i ? ", " : "");
    if (dims[i].value >= 0)
      out << dims[i].value;
    else
      out << dims[i].name;
  }
  if (dims.size() == 1) out << ',';
  out << ')';
  return out.str();
}

inline std::string join(const std::vector<const char*>& names) {
  std::string s;
  for (size_t i = 0; i < names.size(); ++i) s += (i ? "|" : "") + std::string(names[i]);
  return s;
}

// What an argument must be: its form, dtypes and an optional note (" to match query (...)").
struct Spec {
  const char* op;
  const char* arg;
  std::vector<Dim> dims;
  std::vector<const char*> dtypes;
  std::string note = "";

  std::string expected() const {
    return std::string(op) + ": " + arg + " must be " + form_str(dims) + " " + join(dtypes) +
           ", C-contiguous" + note;
  }
};

// numpy.ndarray -> ArrayRef (TypeError for anything else; nothing is converted)
inline ArrayRef from_numpy(py::handle obj, const Spec& spec) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(spec.expected() + " (a numpy.ndarray); got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  }
  auto arr = py::reinterpret_borrow<py::array>(obj);
  ArrayRef a;
  a.data = const_cast<void*>(arr.data());
  for (py::ssize_t i = 0; i < arr.ndim(); ++i) a.shape.push_back(static_cast<int64_t>(arr.shape(i)));
  a.dtype = py::str(arr.dtype());
  const int flags = arr.flags();
  a.contiguous = (flags & py::array::c_style) &&
                 (flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_);
  a.writable = arr.writeable();
  return a;
}

// (data_ptr, shape, dtype, contiguous) -> ArrayRef
inline ArrayRef from_device(py::handle obj, const Spec& spec) {
  if (!py::isinstance<py::tuple>(obj) || py::len(obj) != 4) {
    throw py::type_error(spec.expected() +
                         " (a (data_ptr, shape, dtype, contiguous) tuple); got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  }
  auto t = py::reinterpret_borrow<py::tuple>(obj);
  ArrayRef a;
  a.data = reinterpret_cast<void*>(t[0].cast<uintptr_t>());
  for (auto d : t[1]) a.shape.push_back(d.cast<int64_t>());
  a.dtype = t[2].cast<std::string>();
  a.contiguous = t[3].cast<bool>();
  return a;
}

inline bool is_none(py::handle obj) { return obj.is_none(); }

// Check rank, fixed sizes, dtype and layout; throws std::invalid_argument (-> ValueError).
inline void require(const ArrayRef& a, const Spec& spec) {
  bool ok = a.shape.size() == spec.dims.size() && a.contiguous;
  for (size_t i = 0; ok && i < spec.dims.size(); ++i)
    ok = spec.dims[i].value < 0 || spec.dims[i].value == a.shape[i];
  bool dtype_ok = false;
  for (const char* d : spec.dtypes) dtype_ok |= a.dtype == d;
  if (!ok || !dtype_ok) {
    throw std::invalid_argument(spec.expected() + "; got " + shape_str(a.shape) + " " + a.dtype +
                                (a.contiguous ? "" : ", not C-contiguous"));
  }
}

inline ArrayRef host_input(py::handle obj, const Spec& spec) {
  ArrayRef a = from_numpy(obj, spec);
  require(a, spec);
  return a;
}

inline ArrayRef device_array(py::handle obj, const Spec& spec) {
  ArrayRef a = from_device(obj, spec);
  require(a, spec);
  return a;
}

}  // namespace binding
}  // namespace cpr
