// The training rows a stream of deletion requests still keeps, held on the compute device
// from one request to the next.
//
// Each request's kept objective is the data without every row forgotten so far, in data
// order (the order a process of its own would sum them in). Uploading those rows afresh for
// each request converted and copied the whole data set and faulted in new pages for it
// (~14% of a warm request's time on digits784's softmax, docs/performance.md); here they are
// uploaded once, and a request's rows are taken out in place (Backend::EraseRows), so the
// rest keep their order and every objective built on View() is, bit for bit, the one built
// on a fresh upload of the same rows.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/objective.h"
#include "io/dataset.h"
#include "kernels/backend.h"

namespace lethe {

template <typename T>
class KeptData {
 public:
  // Uploads `rows` of `data` (dataset row indices, strictly increasing). Held data only:
  // data streamed from disk is re-read by each objective anyway.
  KeptData(kernels::Backend<T>& backend, const io::Dataset& data, std::vector<int64_t> rows);

  // Takes out `rows` (dataset row indices, each held now; any order): the rows left keep
  // their order. Views taken before are invalid afterwards.
  void Erase(std::vector<int64_t> rows);
  // The rows held, as DeviceData for an Objective: views of the held buffers.
  DeviceData<T> View() const;
  // Their dataset row indices, in order.
  const std::vector<int64_t>& rows() const { return rows_; }

 private:
  kernels::Backend<T>& backend_;
  DeviceData<T> held_;  // capacity: the rows first uploaded
  std::vector<int64_t> rows_;
};

}  // namespace lethe
