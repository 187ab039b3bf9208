// SHA-256 of files and strings (OpenSSL's libcrypto): the erasure record identifies every
// file it speaks of by its hash, as `sha256sum` prints it.
#pragma once

#include <cstddef>
#include <string>

namespace lethe::io {

std::string Sha256Hex(const std::string& bytes);
std::string Sha256Hex(const void* data, size_t size);
std::string Sha256File(const std::string& path);  // streams the file; throws lethe::Error

}  // namespace lethe::io
