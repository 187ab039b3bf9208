#include <algorithm>

#include "kernels/cuda/reductions.h"

namespace lethe::kernels::cuda {
namespace {

constexpr int kWarp = 32;

// The terms of the sums: segment s, element e (0 ≤ e < rows_per_segment · cols).
template <typename T>
struct Terms {
  const T* a;
  const T* b;  // null: plain sum of a
  int64_t lda, ldb;
  int64_t rows_per_segment;  // 1 for a row-wise reduction (or a flattened contiguous one)
  int64_t cols;

  __device__ T operator()(int64_t s, int64_t e) const {
    int64_t r = s * rows_per_segment, c = e;
    if (rows_per_segment != 1) {  // a strided matrix reduced whole: walk it row by row
      r += e / cols;
      c = e % cols;
    }
    const T x = a[r * lda + c];
    return b ? x * b[r * ldb + c] : x;
  }
};

// Where a segment's sum goes: out[s · stride] = alpha · sum + beta · out[s · stride].
template <typename T>
struct Output {
  T* out;
  int64_t stride;
  T alpha, beta;
  __device__ void Write(int64_t s, T sum) const {
    T v = alpha * sum;
    if (beta != T(0)) v += beta * out[s * stride];  // beta = 0: out is not read (NaN-safe)
    out[s * stride] = v;
  }
};

// Lane 0 ends with the sum of the warp's 32 values, always combined in the same order.
template <typename T>
__device__ T WarpSum(T v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Thread 0 ends with the block's sum: warps first, then the warp sums by warp 0.
template <typename T>
__device__ T BlockSum(T v) {
  __shared__ T warp_sums[kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  v = WarpSum(v);
  if (blockDim.x == kWarp) return v;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x / kWarp) ? warp_sums[lane] : T(0);
    v = WarpSum(v);
  }
  return v;
}

// grid (segments, chunks). Block (s, c) sums the elements e ≡ c·blockDim + t (mod
// chunks·blockDim) of segment s, each thread in increasing e. With one chunk the block
// writes the segment's result; otherwise partial[s · chunks + c].
template <typename T>
__global__ void ChunkSums(Terms<T> terms, int64_t count, T* partial, Output<T> output) {
  const int64_t s = blockIdx.x;
  const int64_t chunks = gridDim.y;
  T acc = T(0);
  for (int64_t e = blockIdx.y * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < count;
       e += chunks * blockDim.x)
    acc += terms(s, e);
  acc = BlockSum(acc);
  if (threadIdx.x != 0) return;
  if (chunks == 1)
    output.Write(s, acc);
  else
    partial[s * chunks + blockIdx.y] = acc;
}

// One warp per segment sums its chunk results in a fixed order.
template <typename T>
__global__ void SegmentSums(const T* partial, int64_t segments, int chunks, Output<T> output) {
  const int64_t s = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (s >= segments) return;  // whole warps leave together: s is the same across a warp
  T acc = T(0);
  for (int c = lane; c < chunks; c += kWarp) acc += partial[s * chunks + c];
  acc = WarpSum(acc);
  if (lane == 0) output.Write(s, acc);
}

// The launch shape depends only on (segments, count), never on the GPU, so results are
// the same bits on any GPU that runs the same machine code.
struct Plan {
  int threads;
  int chunks;
};
Plan MakePlan(int64_t segments, int64_t count) {
  // Narrow rows (a loss column, 10 logits): one warp per row and no second pass.
  // Wide ones (a 1 × p parameter vector in CG): up to 1024 chunks of 256 threads, at least
  // ~16 elements per thread, and about 2048 blocks in total across the segments.
  const int threads = count <= 2048 ? kWarp : 256;
  const int64_t wanted = (count + threads * 16 - 1) / (threads * 16);
  const int64_t cap = std::max<int64_t>(1, std::min<int64_t>(1024, 2048 / segments));
  return {threads, static_cast<int>(std::clamp<int64_t>(wanted, 1, cap))};
}

// `partial` holds segments · plan.chunks values (unused with one chunk).
template <typename T>
void Reduce(CudaContext& context, const Terms<T>& terms, int64_t segments, const Plan& plan,
            T* partial, const Output<T>& output) {
  const int64_t count = terms.rows_per_segment * terms.cols;
  LETHE_CHECK(segments <= 0x7fffffff, "reduction over ", segments, " rows");
  ChunkSums<T>
      <<<dim3(static_cast<unsigned>(segments), plan.chunks), plan.threads, 0, context.stream()>>>(
          terms, count, partial, output);
  LETHE_CUDA_CHECK(cudaGetLastError());
  if (plan.chunks == 1) return;
  const int64_t blocks = (segments * kWarp + 255) / 256;
  SegmentSums<T><<<static_cast<unsigned>(blocks), 256, 0, context.stream()>>>(partial, segments,
                                                                              plan.chunks, output);
  LETHE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

template <typename T>
void RowReduce(CudaContext& context, const Matrix<T>& A, const Matrix<T>* B, T alpha, T beta,
               T* out, int64_t out_stride) {
  if (A.rows() == 0) return;
  // With no columns every sum is empty: ChunkSums runs no terms and writes beta · out.
  const Terms<T> terms{A.data(), B ? B->data() : nullptr, A.ld(), B ? B->ld() : 0, 1, A.cols()};
  const Plan plan = MakePlan(A.rows(), A.cols());
  T* partial = nullptr;
  if (plan.chunks > 1)
    partial = static_cast<T*>(context.Workspace(sizeof(T) * A.rows() * plan.chunks));
  Reduce(context, terms, A.rows(), plan, partial, Output<T>{out, out_stride, alpha, beta});
}

template <typename T>
T FullReduce(CudaContext& context, const Matrix<T>& A, const Matrix<T>* B) {
  if (A.empty()) return T(0);
  // A contiguous matrix (with a contiguous partner) is one long row: no index division.
  const bool flat = A.contiguous() && (!B || B->contiguous());
  const Terms<T> terms{A.data(),        B ? B->data() : nullptr, A.ld(),
                       B ? B->ld() : 0, flat ? 1 : A.rows(),     flat ? A.size() : A.cols()};
  const Plan plan = MakePlan(1, A.size());
  // Workspace layout: the result in the first 256 bytes, the chunk partials after it.
  char* workspace = static_cast<char*>(context.Workspace(256 + sizeof(T) * plan.chunks));
  T* result = reinterpret_cast<T*>(workspace);
  Reduce(context, terms, 1, plan, reinterpret_cast<T*>(workspace + 256),
         Output<T>{result, 0, T(1), T(0)});
  LETHE_CUDA_CHECK(cudaMemcpyAsync(context.HostScratch(), result, sizeof(T), cudaMemcpyDeviceToHost,
                                   context.stream()));
  context.Synchronize();
  return *static_cast<const T*>(context.HostScratch());
}

template void RowReduce<float>(CudaContext&, const Matrix<float>&, const Matrix<float>*, float,
                               float, float*, int64_t);
template void RowReduce<double>(CudaContext&, const Matrix<double>&, const Matrix<double>*, double,
                                double, double*, int64_t);
template float FullReduce<float>(CudaContext&, const Matrix<float>&, const Matrix<float>*);
template double FullReduce<double>(CudaContext&, const Matrix<double>&, const Matrix<double>*);

}  // namespace lethe::kernels::cuda
