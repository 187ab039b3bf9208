#include "io/sha256.h"

#include <openssl/evp.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "common/error.h"

namespace lethe::io {
namespace {

class Digest {
 public:
  Digest() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
    if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1)
      Fail("sha256: OpenSSL could not initialise a digest");
  }
  void Update(const void* data, size_t size) { EVP_DigestUpdate(ctx_.get(), data, size); }
  std::string Hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_.get(), md, &len);
    static const char* digits = "0123456789abcdef";
    std::string hex;
    for (unsigned int i = 0; i < len; ++i) hex += digits[md[i] >> 4], hex += digits[md[i] & 15];
    return hex;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx_;
};

}  // namespace

std::string Sha256Hex(const void* data, size_t size) {
  Digest d;
  d.Update(data, size);
  return d.Hex();
}

std::string Sha256Hex(const std::string& bytes) {
  Digest d;
  d.Update(bytes.data(), bytes.size());
  return d.Hex();
}

std::string Sha256File(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!f) Fail(path, ": cannot open: ", std::strerror(errno));
  Digest d;
  std::vector<char> buf(1 << 20);
  size_t got;
  while ((got = std::fread(buf.data(), 1, buf.size(), f.get())) > 0) d.Update(buf.data(), got);
  if (std::ferror(f.get())) Fail(path, ": read error");
  return d.Hex();
}

}  // namespace lethe::io
