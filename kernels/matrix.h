// Matrix<T>: a row-major view of memory owned by a compute backend (host or device).
//
// A matrix is rows × cols with a leading dimension ld ≥ cols (the distance in elements
// between the starts of two rows), so a block of columns of a wider matrix is itself a
// Matrix. Copying a Matrix copies the view, not the data; the storage lives as long as
// any view of it. The engine never dereferences data(): only backends do.
#pragma once

#include <cstdint>
#include <memory>

#include "common/error.h"

namespace lethe::kernels {

enum class DeviceKind { kCpu, kCuda };

template <typename T>
class Matrix {
 public:
  Matrix() = default;
  Matrix(std::shared_ptr<void> storage, T* data, int64_t rows, int64_t cols, int64_t ld,
         DeviceKind device)
      : storage_(std::move(storage)), data_(data), rows_(rows), cols_(cols), ld_(ld),
        device_(device) {}

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t ld() const { return ld_; }
  int64_t size() const { return rows_ * cols_; }
  bool empty() const { return size() == 0; }
  bool contiguous() const { return ld_ == cols_ || rows_ <= 1; }
  T* data() const { return data_; }
  DeviceKind device() const { return device_; }

  // Rows [begin, begin + count).
  Matrix Rows(int64_t begin, int64_t count) const {
    LETHE_CHECK(begin >= 0 && count >= 0 && begin + count <= rows_);
    return Matrix(storage_, data_ + begin * ld_, count, cols_, ld_, device_);
  }
  Matrix Row(int64_t i) const { return Rows(i, 1); }
  // Columns [begin, begin + count): a strided view.
  Matrix Cols(int64_t begin, int64_t count) const {
    LETHE_CHECK(begin >= 0 && count >= 0 && begin + count <= cols_);
    return Matrix(storage_, data_ + begin, rows_, count, ld_, device_);
  }
  // rows × cols reinterpretation of the `rows*cols` elements starting at flat `offset` of a
  // contiguous matrix: how a layer's weight [out, in] is seen inside the flat θ.
  Matrix Block(int64_t offset, int64_t rows, int64_t cols) const {
    LETHE_CHECK(contiguous() && offset >= 0 && rows >= 0 && cols >= 0 &&
                offset + rows * cols <= size());
    return Matrix(storage_, data_ + offset, rows, cols, cols, device_);
  }
  // The diagonal, min(rows, cols) × 1: a strided view (ld + 1), e.g. to add λ·I.
  Matrix Diagonal() const {
    return Matrix(storage_, data_, rows_ < cols_ ? rows_ : cols_, 1, ld_ + 1, device_);
  }
  Matrix Reshaped(int64_t rows, int64_t cols) const {
    LETHE_CHECK(rows * cols == size());
    return Block(0, rows, cols);
  }

 private:
  std::shared_ptr<void> storage_;
  T* data_ = nullptr;
  int64_t rows_ = 0, cols_ = 0, ld_ = 0;
  DeviceKind device_ = DeviceKind::kCpu;
};

}  // namespace lethe::kernels
