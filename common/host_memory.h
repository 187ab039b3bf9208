// Host memory for big buffers: the data as read from a file, as converted, and the CPU
// backend's matrices.
//
// Why: the kernel hands out anonymous memory in 4 KiB pages, zeroed on first touch, and on
// this class of machine each such fault costs ~4 µs: reading a 63 MB training file cost
// 67 ms of faults for the file's bytes and as much again for their conversion to doubles,
// more than the read itself. Buffers of at least kLargeBuffer bytes are therefore 2 MiB
// aligned and advised MADV_HUGEPAGE (transparent huge pages in "madvise" mode, Debian's
// default): 32 faults instead of 16,000, and fewer TLB misses on every later pass. Where
// the kernel declines, the advice is harmless and the buffer is an ordinary one.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

namespace lethe {

constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kLargeBuffer = 4 * kHugePage;

// `bytes` (> 0) of memory that std::free releases, 64-byte aligned; large buffers are
// 2 MiB aligned and advised onto huge pages (see above). nullptr when out of memory.
inline void* AllocateHost(size_t bytes) {
  const size_t align = bytes >= kLargeBuffer ? kHugePage : 64;
  const size_t padded = (bytes + align - 1) / align * align;  // aligned_alloc's requirement
  void* p = std::aligned_alloc(align, padded);
#ifdef MADV_HUGEPAGE
  if (p && align == kHugePage) madvise(p, padded, MADV_HUGEPAGE);  // advice only
#endif
  return p;
}

// A std::allocator that takes its memory from AllocateHost, for vectors that can be large.
template <typename T>
struct HostAllocator {
  using value_type = T;
  HostAllocator() = default;
  template <typename U>
  HostAllocator(const HostAllocator<U>&) {}
  T* allocate(size_t n) {
    if (n > size_t(-1) / sizeof(T)) throw std::bad_array_new_length();
    void* p = AllocateHost(n * sizeof(T) > 0 ? n * sizeof(T) : 1);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  template <typename U>
  bool operator==(const HostAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const HostAllocator<U>&) const { return false; }
};

template <typename T>
using HostVector = std::vector<T, HostAllocator<T>>;

}  // namespace lethe
