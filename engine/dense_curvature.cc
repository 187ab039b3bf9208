#include "engine/dense_curvature.h"

namespace lethe {

bool HasDenseCurvature(const Architecture& arch) {
  // One trainable linear layer: its Hessian blocks are weighted Gram matrices of the data.
  return arch.layers.size() == 1 && arch.layers[0].type() == "linear" &&
         arch.layers[0].num_params() > 0;
}

template <typename T>
bool DenseCurvature(Objective<T>& objective, Curvature /*curvature*/,
                    const kernels::Matrix<T>& theta, double shift, kernels::Matrix<T> out) {
  using Matrix = kernels::Matrix<T>;
  const Architecture& arch = objective.arch();
  // Streamed rows (data larger than memory): the Gram form needs n × C² on the device at
  // once; the caller then forms the matrix by curvature products, which stream.
  if (!HasDenseCurvature(arch) || objective.data().streamed()) return false;
  const int64_t p = objective.num_params(), n = objective.num_examples();
  LETHE_CHECK(theta.rows() == 1 && theta.cols() == p && out.rows() == p && out.cols() == p);
  kernels::Backend<T>& be = objective.backend();
  const LayerShape& layer = arch.layers[0];
  const int64_t C = layer.out[0], d = layer.in[0], wo = layer.tensors[0].offset;
  const int64_t bo = layer.tensors.size() > 1 ? layer.tensors[1].offset : -1;
  const Matrix& X = objective.data().X;

  // A (n × C²): columns [e·C, e·C + C) hold (1/n) Aᵢ e_e for every row i, so column
  // e·C + c is the n-vector (1/n) A_{·,ce}.
  Matrix F = be.Allocate(n, C), A = be.Allocate(n, C * C), unit = be.Allocate(n, C);
  objective.Outputs(theta, F);
  for (int64_t e = 0; e < C; ++e) {
    be.Fill(unit, T(0));
    be.Fill(unit.Cols(e, 1), T(1));
    be.LossHessianProduct(arch.spec.loss,
                          T(1.0 / static_cast<double>(objective.global_examples())), F, unit,
                          A.Cols(e * C, C));
  }
  auto weights = [&](int64_t c, int64_t e) { return A.Cols(e * C + c, 1); };
  auto W = [&](int64_t c, int64_t e) { return out.Rows(wo + c * d, d).Cols(wo + e * d, d); };

  // Cross-entropy: softmax is shift-invariant, so every row of Aᵢ sums to zero and the last
  // row of blocks is minus the sum of the others (C − 1 fewer Gram matrices: 45 of 55 for 10
  // classes). The sums cancel only what the Gram products would have rounded alike.
  const int64_t last = C - 1;
  const bool rows_sum_to_zero = arch.spec.loss == LossKind::kCrossEntropy && C > 1;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t e = c; e < C; ++e) {
      const Matrix w = weights(c, e);
      if (!(rows_sum_to_zero && e == last)) {
        be.WeightedGram(T(1), X, w, T(0), W(c, e));
        if (e != c) be.Copy(W(c, e), W(e, c));  // symmetric blocks: (e, c) = (c, e)ᵀ = (c, e)
      }
      if (bo < 0) continue;
      // Xᵀ w into the b_e column of W_c's rows and the b_c column of W_e's rows; wᵀ X into
      // the mirrored rows.
      be.Gemm(kernels::Op::kTranspose, kernels::Op::kNone, T(1), X, w, T(0),
              out.Rows(wo + c * d, d).Cols(bo + e, 1));
      be.Gemm(kernels::Op::kTranspose, kernels::Op::kNone, T(1), w, X, T(0),
              out.Rows(bo + e, 1).Cols(wo + c * d, d));
      const T bias = be.Sum(w);
      be.Fill(out.Rows(bo + c, 1).Cols(bo + e, 1), bias);
      if (e == c) continue;
      be.Copy(out.Rows(wo + c * d, d).Cols(bo + e, 1), out.Rows(wo + e * d, d).Cols(bo + c, 1));
      be.Copy(out.Rows(bo + e, 1).Cols(wo + c * d, d), out.Rows(bo + c, 1).Cols(wo + e * d, d));
      be.Fill(out.Rows(bo + e, 1).Cols(bo + c, 1), bias);
    }

  if (rows_sum_to_zero) {
    for (int64_t c = 0; c < last; ++c) {  // W(c, last) = −Σ_{e<last} W(c, e)
      for (int64_t e = 0; e < last; ++e) be.Axpby(T(-1), W(c, e), T(e == 0 ? 0 : 1), W(c, last));
      be.Copy(W(c, last), W(last, c));
    }
    for (int64_t c = 0; c < last; ++c)  // W(last, last) = −Σ_{c<last} W(c, last)
      be.Axpby(T(-1), W(c, last), T(c == 0 ? 0 : 1), W(last, last));
  }

  // Distributed (docs/distributed.md): the blocks above are sums over this rank's rows;
  // one allreduce of the p² values makes them the sums over all rows.
  objective.ReduceSum(out);
  const double diagonal = objective.l2() + shift;
  if (diagonal != 0) {
    Matrix ones = be.Allocate(p, 1);
    be.Fill(ones, T(1));
    be.Axpby(T(diagonal), ones, T(1), out.Diagonal());
  }
  return true;
}

template bool DenseCurvature<float>(Objective<float>&, Curvature, const kernels::Matrix<float>&,
                                    double, kernels::Matrix<float>);
template bool DenseCurvature<double>(Objective<double>&, Curvature, const kernels::Matrix<double>&,
                                     double, kernels::Matrix<double>);

}  // namespace lethe
