// .npy reader: the header is a Python dict literal, e.g.
//   {'descr': '<f4', 'fortran_order': False, 'shape': (6, 16, 16, 16), }
#include "npy.h"

#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "common/half.h"

namespace cpr {
namespace runtime {
namespace {

std::runtime_error npy_error(const std::string& path, const std::string& what) {
  return std::runtime_error(path + ": " + what);
}

// The quoted value after 'key': in the header dict, or the raw text up to the next ',' / ')'.
std::string header_value(const std::string& header, const std::string& key, const std::string& path) {
  const size_t at = header.find("'" + key + "'");
  const size_t colon = at == std::string::npos ? at : header.find(':', at);
  if (colon == std::string::npos) throw npy_error(path, "malformed .npy header (no '" + key + "'): " + header);
  size_t begin = header.find_first_not_of(' ', colon + 1);
  if (header[begin] == '\'') return header.substr(begin + 1, header.find('\'', begin + 1) - begin - 1);
  if (header[begin] == '(') return header.substr(begin + 1, header.find(')', begin) - begin - 1);
  return header.substr(begin, header.find_first_of(",}", begin) - begin);
}

std::vector<int64_t> parse_shape(const std::string& text) {
  std::vector<int64_t> shape;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.find_first_not_of(' ') != std::string::npos) shape.push_back(std::stoll(item));
  }
  return shape;
}

}  // namespace

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<float> NpyArray::to_float() const {
  std::vector<float> out(static_cast<size_t>(numel()));
  if (dtype == DType::kFloat32) {
    std::memcpy(out.data(), bytes.data(), bytes.size());
  } else {
    detail::half_to_float_n(reinterpret_cast<const uint16_t*>(bytes.data()), out.data(), numel());
  }
  return out;
}

NpyArray read_npy(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw npy_error(path, "cannot open file");
  char magic[8];
  if (!file.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw npy_error(path, "not a .npy file");
  uint32_t header_len = 0;
  unsigned char len_bytes[4] = {0, 0, 0, 0};
  const int len_size = magic[6] == 1 ? 2 : 4;
  if (!file.read(reinterpret_cast<char*>(len_bytes), len_size)) throw npy_error(path, "truncated .npy header");
  for (int i = len_size - 1; i >= 0; --i) header_len = header_len * 256 + len_bytes[i];
  std::string header(header_len, '\0');
  if (!file.read(&header[0], header_len)) throw npy_error(path, "truncated .npy header");

  NpyArray array;
  const std::string descr = header_value(header, "descr", path);
  if (descr == "<f4") {
    array.dtype = DType::kFloat32;
  } else if (descr == "<f2") {
    array.dtype = DType::kFloat16;
  } else {
    throw npy_error(path, "dtype '" + descr + "' is not supported (expected '<f4' or '<f2')");
  }
  if (header_value(header, "fortran_order", path) != "False") throw npy_error(path, "Fortran-order arrays are not supported");
  array.shape = parse_shape(header_value(header, "shape", path));
  const size_t element = array.dtype == DType::kFloat32 ? 4 : 2;
  array.bytes.resize(static_cast<size_t>(array.numel()) * element);
  file.read(reinterpret_cast<char*>(array.bytes.data()), static_cast<std::streamsize>(array.bytes.size()));
  if (static_cast<size_t>(file.gcount()) != array.bytes.size() || file.peek() != std::char_traits<char>::eof()) {
    throw npy_error(path, "data size does not match the header shape " + shape_string(array.shape));
  }
  return array;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << '(';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << (shape.size() == 1 ? ",)" : ")");
  return out.str();
}

}  // namespace runtime
}  // namespace cpr
