// Argument checks shared by csrc/ops/*.cpp (private header).
//
//   CPR_CHECK(cond, "nn_search: window must be odd and >= 1; got ", w);   -> std::invalid_argument
//   CPR_CHECK_RANGE(cond, "nn_search: index values must be in ...");     -> std::out_of_range
// The message pieces are streamed together only when the check fails.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <stdexcept>
#include <string>

namespace cpr {
namespace detail {

template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

// "(2, 3, 4)"
inline std::string shape_str(std::initializer_list<int64_t> dims) {
  std::ostringstream out;
  out << '(';
  bool first = true;
  for (int64_t d : dims) {
    out << (first ? "" : ", ") << d;
    first = false;
  }
  if (dims.size() == 1) out << ',';
  out << ')';
  return out.str();
}

}  // namespace detail
}  // namespace cpr

#define CPR_CHECK(cond, ...)                                                   \
  do {                                                                         \
    if (!(cond)) throw std::invalid_argument(::cpr::detail::concat(__VA_ARGS__)); \
  } while (0)

#define CPR_CHECK_RANGE(cond, ...)                                             \
  do {                                                                         \
    if (!(cond)) throw std::out_of_range(::cpr::detail::concat(__VA_ARGS__));  \
  } while (0)
