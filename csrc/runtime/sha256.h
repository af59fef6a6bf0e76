// SHA-256 of a file (private header).
#pragma once

#include <string>

namespace cpr {
namespace runtime {

// Lower-case hex SHA-256 of the file at `path` (OpenSSL EVP, read in 1 MiB chunks). Throws
// std::runtime_error naming the file when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace runtime
}  // namespace cpr
