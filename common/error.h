// Errors and invariants shared by every part of lethe.
//
// Two kinds of failure, as in faiss and tiny-cuda-nn:
//  - the caller or the environment is at fault (a bad file, a bad option, a shape
//    mismatch, out of memory): throw lethe::Error with a message that names the
//    file or option and what is wrong. Only tools/ catches it, printing one line.
//  - an internal invariant is broken (a bug in lethe): LETHE_CHECK aborts with
//    file:line, because continuing would produce numbers nobody should trust.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>

namespace lethe {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
// Concatenates any streamable arguments into one message.
template <typename... Args>
std::string Concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
[[noreturn]] inline void CheckFailed(const char* file, int line, const char* expr,
                                     const std::string& message) {
  std::fprintf(stderr, "lethe: internal error at %s:%d: check failed: %s %s\n", file, line,
               expr, message.c_str());
  std::abort();
}
}  // namespace detail

// Throws lethe::Error built from the streamed arguments.
template <typename... Args>
[[noreturn]] void Fail(const Args&... args) {
  throw Error(detail::Concat(args...));
}

}  // namespace lethe

#define LETHE_CHECK(cond, ...)                                                          \
  do {                                                                                  \
    if (!(cond))                                                                        \
      ::lethe::detail::CheckFailed(__FILE__, __LINE__, #cond,                           \
                                   ::lethe::detail::Concat("" __VA_OPT__(, ) __VA_ARGS__)); \
  } while (0)
