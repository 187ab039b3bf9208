// One derivative checker that every layer's test calls (Caffe's
// test_gradient_check_util.hpp, for lethe's passes): a layer alone, on a random batch x
// and random parameters w, under the test loss
//
//   ℓ(y) = ⟨C, y⟩ + ½ ⟨y, D ⊙ y⟩,   so   δ = ∂ℓ/∂y = C + D ⊙ y,   R{δ} = D ⊙ R{y}
//
// (C, D random, D > 0: an output Hessian A = diag(D) as a loss would give). Checked, in
// double on the CPU backend:
//   - Backward's δ_in and ∇w (and its per-example rows and their dot products with
//     directions) against central differences of ℓ in x and w;
//   - BackwardInput (after Linearize) equals Backward's δ_in;
//   - RForward against central differences of y along (R{x}, v), with and without R{x};
//   - RBackward (Hessian) against central differences of δ_in and ∇w along (R{x}, v), δ
//     following y; RBackward (Gauss-Newton) equals Backward applied to R{δ};
//   - the grouped first-layer products equal the per-direction ones;
//   - K-FAC (one example, where it is exact): Γ V S equals the Gauss-Newton R{∇w}.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engine/architecture.h"
#include "engine/layers/layer.h"
#include "kernels/backend.h"

namespace lethe::testing {

struct LayerCheckOptions {
  int64_t count = 5;   // examples in the batch
  uint64_t seed = 11;  // inputs, parameters, directions, C and D
  // Central differences: error O(ε²) + O(ε_mach/ε) ≈ 1e-10 on these O(1) quantities, so
  // 1e-7 (relative to the largest component) catches any missing term or sign.
  double step = 1e-5;
  double tolerance = 1e-7;
  // Identities that hold up to rounding (same maths, different order).
  double rounding = 1e-12;
  // Whether the layer's K-FAC block is exact for one example (linear; conv2d with one
  // output position). conv2d's KFC over several positions is not (it drops the products
  // of different positions' terms): its factors are checked against their definition in
  // its own test instead.
  bool kronecker_exact = true;
  // A layer that reads token ids (embedding_bag): the batch x (count × in) is these ids and
  // stays fixed. Ids have no derivative, so x is never perturbed: the differences in x, the
  // δ_in check and R{x} ≠ 0 are skipped (δ_in and R{δ_in} must then be zero).
  std::vector<double> token_ids;
};

// Checks `spec` as the only layer of a model whose examples have shape `in`; a layer whose
// output width the spec leaves open (linear without "out") gets `out`. Fixed tensors
// (frozen parameters, BatchNorm statistics) get random positive values.
inline void CheckLayerDerivatives(const io::LayerSpec& spec, const Shape& in, int64_t out = -1,
                                  const LayerCheckOptions& o = {}) {
  using Matrix = kernels::Matrix<double>;
  using Vec = std::vector<double>;
  io::ModelSpec model;
  model.loss = LossKind::kMse;
  model.layers = {spec};
  model.input = in;
  ArchitectureSource source;
  source.data_output_width = [out] { return out; };
  source.one_layer_test = true;  // an activation or pooling layer alone
  const Architecture arch = Architecture::Build(model, source, "check");
  const LayerShape& shape = arch.layers[0];
  const int64_t n = o.count, w_in = shape.in_width(), w_out = shape.out_width();
  const int64_t p = arch.num_params, p_alloc = std::max<int64_t>(p, 1);
  SCOPED_TRACE("layer " + spec.type + " " + spec.keys);

  auto backend = kernels::MakeBackend<double>({.threads = 1});
  kernels::Backend<double>& be = *backend;
  auto layer = layers::MakeLayer<double>(shape);
  layer->Allocate(be, n);
  ASSERT_EQ(layer->num_params(), p);
  Matrix scratch = be.Allocate(n, std::max<int64_t>(1, layer->ScratchWidth()));

  std::mt19937_64 rng(o.seed);
  std::normal_distribution<double> normal;
  auto random = [&](int64_t size, double scale = 1.0) {
    Vec v(size);
    for (double& x : v) x = scale * normal(rng);
    return v;
  };
  auto up = [&](const Vec& v, int64_t rows, int64_t cols) {
    Matrix m = be.Allocate(rows, cols);
    be.Upload(v.data(), m);
    return m;
  };
  auto down = [&](const Matrix& m) {
    Vec v(m.size());
    be.Download(m, v.data());
    return v;
  };
  const bool ids = !o.token_ids.empty();
  Vec x0 = random(n * w_in);
  if (ids) {
    ASSERT_EQ(o.token_ids.size(), x0.size());
    x0 = o.token_ids;
  }
  const Vec w0 = random(p_alloc, 0.5), C = random(n * w_out);
  Vec D = random(n * w_out);
  for (double& d : D) d = 0.5 + std::abs(d);
  const Vec rx0 = random(n * w_in), v0 = random(p_alloc), s0 = random(2 * p_alloc);
  Vec fixed = random(std::max<size_t>(1, arch.constants.size()));
  for (double& f : fixed) f = 0.5 + std::abs(f);
  const Matrix constants = up(fixed, 1, static_cast<int64_t>(fixed.size()));

  struct Eval {
    Vec y, delta, delta_in, grad;
    double loss = 0;
  };
  // Forward and backward at (x, w) under ℓ.
  auto eval = [&](const Vec& x, const Vec& w) {
    Eval e;
    Matrix X = up(x, n, w_in), theta = up(w, 1, p_alloc), Y = be.Allocate(n, w_out);
    const layers::Pass<double> pass{
        .backend = be, .theta = theta, .constants = constants, .count = n, .scratch = scratch};
    layer->Forward(pass, X, Y);
    e.y = down(Y);
    e.delta.resize(e.y.size());
    for (size_t i = 0; i < e.y.size(); ++i) {
      e.loss += C[i] * e.y[i] + 0.5 * D[i] * e.y[i] * e.y[i];
      e.delta[i] = C[i] + D[i] * e.y[i];
    }
    Matrix G = be.Zeros(1, p_alloc), Din = be.Allocate(n, w_in);
    layer->Backward(pass, X, up(e.delta, n, w_out), Din, {.grad = &G});
    e.delta_in = down(Din);
    e.grad = down(G);
    return e;
  };
  auto shifted = [&](const Vec& a, double t, const Vec& d) {
    Vec r = a;
    for (size_t i = 0; i < r.size(); ++i) r[i] += t * d[i];
    return r;
  };
  auto expect_close = [&](const Vec& got, const Vec& want, double tol, const char* what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    double scale = 1;
    for (double w : want) scale = std::max(scale, std::abs(w));
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_NEAR(got[i], want[i], tol * scale) << what << " component " << i;
  };
  const double h = o.step;
  const Eval at = eval(x0, w0);

  // --- backward: δ_in and ∇w against central differences of ℓ --------------------------
  {
    Vec fd_x(x0.size(), 0.0), fd_w(p);
    for (size_t i = 0; i < x0.size() && !ids; ++i) {
      Vec e(x0.size(), 0.0);
      e[i] = 1;
      fd_x[i] = (eval(shifted(x0, h, e), w0).loss - eval(shifted(x0, -h, e), w0).loss) / (2 * h);
    }
    for (int64_t i = 0; i < p; ++i) {
      Vec e(p_alloc, 0.0);
      e[i] = 1;
      fd_w[i] = (eval(x0, shifted(w0, h, e)).loss - eval(x0, shifted(w0, -h, e)).loss) / (2 * h);
    }
    expect_close(at.delta_in, fd_x, o.tolerance, "backward δ_in");
    if (p > 0) expect_close(Vec(at.grad.begin(), at.grad.begin() + p), fd_w, o.tolerance, "∇w");
  }
  Matrix X = up(x0, n, w_in), theta = up(w0, 1, p_alloc), Y = be.Allocate(n, w_out);
  const layers::Pass<double> pass{
      .backend = be, .theta = theta, .constants = constants, .count = n, .scratch = scratch};
  layer->Forward(pass, X, Y);
  const Matrix delta = up(at.delta, n, w_out);

  // --- per-example gradients and their dot products -----------------------------------
  if (p > 0) {
    Matrix rows = be.Zeros(n, p_alloc), S = up(s0, 2, p_alloc), dots = be.Zeros(n, 2);
    layer->Backward(pass, X, delta, Matrix(), {.per_example = &rows});
    layer->Backward(pass, X, delta, Matrix(), {.dot_with = &S, .dots = &dots});
    const Vec r = down(rows), d = down(dots);
    Vec sum(p, 0.0), want_dots(n * 2, 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < p; ++k) {
        sum[k] += r[i * p_alloc + k];
        for (int j = 0; j < 2; ++j)
          want_dots[i * 2 + j] += r[i * p_alloc + k] * s0[j * p_alloc + k];
      }
    expect_close(sum, Vec(at.grad.begin(), at.grad.begin() + p), o.rounding, "Σ per-example");
    expect_close(d, want_dots, o.rounding, "per-example dots");
    // Row i alone: the gradient of example i's loss (δ zero elsewhere).
    for (int64_t i = 0; i < n; ++i) {
      Vec di(at.delta.size(), 0.0);
      std::copy(at.delta.begin() + i * w_out, at.delta.begin() + (i + 1) * w_out,
                di.begin() + i * w_out);
      Matrix G = be.Zeros(1, p_alloc);
      layer->Backward(pass, X, up(di, n, w_out), Matrix(), {.grad = &G});
      const Vec g = down(G);
      expect_close(Vec(r.begin() + i * p_alloc, r.begin() + i * p_alloc + p),
                   Vec(g.begin(), g.begin() + p), o.rounding, "per-example row");
    }
  }

  // The R passes see what the last Forward, Backward and Linearize of the batch left in the
  // layer (as in the objective: a residual block keeps its body's activations); the
  // finite differences below run the layer elsewhere, so the centre is restored first.
  auto recentre = [&] {
    eval(x0, w0);
    layer->Linearize(pass, X, true);
  };

  // --- linearisation: BackwardInput = Backward's δ_in ---------------------------------
  recentre();
  {
    Matrix Din = be.Allocate(n, w_in);
    layer->BackwardInput(pass, delta, Din);
    expect_close(down(Din), at.delta_in, o.rounding, "BackwardInput");
  }

  // --- R forward and R backward ----------------------------------------------------------
  const Matrix V = up(v0, 1, p_alloc);
  for (bool with_rx : {true, false}) {
    if (with_rx && ids) continue;
    SCOPED_TRACE(with_rx ? "R{x} ≠ 0" : "R{x} = 0 (first layer)");
    recentre();
    const Vec rx = with_rx ? rx0 : Vec(x0.size(), 0.0);
    const Vec v = p > 0 ? v0 : Vec(p_alloc, 0.0);
    const Matrix RX = with_rx ? up(rx0, n, w_in) : Matrix();
    Matrix RY = be.Allocate(n, w_out);
    layer->RForward(pass, X, RX, V, RY);
    const Vec ry = down(RY);
    const Eval plus = eval(shifted(x0, h, rx), shifted(w0, h, v));
    const Eval minus = eval(shifted(x0, -h, rx), shifted(w0, -h, v));
    auto fd = [&](const Vec& a, const Vec& b) {
      Vec r(a.size());
      for (size_t i = 0; i < a.size(); ++i) r[i] = (a[i] - b[i]) / (2 * h);
      return r;
    };
    expect_close(ry, fd(plus.y, minus.y), o.tolerance, "R{y}");
    recentre();
    layer->RForward(pass, X, RX, V, RY);
    Vec rdelta(ry.size());
    for (size_t i = 0; i < ry.size(); ++i) rdelta[i] = D[i] * ry[i];
    const Matrix RD = up(rdelta, n, w_out);
    // Hessian: R{δ_in} and R{∇w} are the derivatives of δ_in and ∇w along (R{x}, v).
    Matrix HV = be.Zeros(1, p_alloc), RDin = be.Allocate(n, w_in);
    layer->RBackward(pass, true, X, RX, delta, RD, V, HV, RDin);
    expect_close(down(RDin), fd(plus.delta_in, minus.delta_in), o.tolerance, "R{δ_in}");
    const Vec fd_grad = fd(plus.grad, minus.grad);
    const Vec hv = down(HV);
    if (p > 0)
      expect_close(Vec(hv.begin(), hv.begin() + p), Vec(fd_grad.begin(), fd_grad.begin() + p),
                   o.tolerance, "R{∇w}");
    // Gauss-Newton: the Jacobians' transposes applied to R{δ}, i.e. Backward of R{δ}.
    Matrix GV = be.Zeros(1, p_alloc), GDin = be.Allocate(n, w_in);
    layer->RBackward(pass, false, X, RX, delta, RD, V, GV, GDin);
    Matrix G = be.Zeros(1, p_alloc), Din = be.Allocate(n, w_in);
    layer->Backward(pass, X, RD, Din, {.grad = &G});
    expect_close(down(GDin), down(Din), o.rounding, "Gauss-Newton R{δ_in}");
    expect_close(down(GV), down(G), o.rounding, "Gauss-Newton R{∇w}");
  }

  // --- grouped first-layer products = per-direction ones -------------------------------
  if (const int64_t width = layer->GroupWidth(); width > 0) {
    const int64_t g = 3;
    const Matrix Vs = up(random(g * p_alloc), g, p_alloc);
    layer->ReserveGroup(be, g);
    Matrix r_out = be.Allocate(n, g * width), r_delta = up(random(n * g * width), n, g * width);
    layer->GroupedRForward(pass, X, Vs, r_out);
    Matrix grouped = be.Zeros(g, p_alloc);
    layer->GroupedRBackward(pass, X, r_delta, grouped);
    for (int64_t j = 0; j < g; ++j) {
      Matrix RY = be.Allocate(n, w_out), HV = be.Zeros(1, p_alloc);
      layer->RForward(pass, X, Matrix(), Vs.Row(j), RY);
      expect_close(down(r_out.Cols(j * width, width)), down(RY), o.rounding, "grouped R{y}");
      layer->RBackward(pass, true, X, Matrix(), delta, r_delta.Cols(j * width, width), Vs.Row(j),
                       HV, Matrix());
      expect_close(down(grouped.Row(j)), down(HV), o.rounding, "grouped R{∇w}");
    }
  }

  // --- K-FAC: exact for one example -------------------------------------------------------
  if (const layers::KroneckerBlock kb = layer->Kronecker(); kb.out > 0 && o.kronecker_exact) {
    const int64_t k = kb.k();
    Matrix x1 = X.Rows(0, 1), ones = be.Allocate(1, 1);
    be.Fill(ones, 1.0);
    const layers::Pass<double> one{.backend = be,
                                   .theta = theta,
                                   .constants = constants,
                                   .count = 1,
                                   .scratch = scratch.Rows(0, 1)};
    Matrix S = be.Zeros(k, k), Gamma = be.Zeros(kb.out, kb.out);
    layer->AddInputFactor(one, x1, ones, S);
    for (int64_t c = 0; c < kb.out; ++c) {  // J = I here: e_c and A e_c = D_c e_c
      Vec e(kb.out, 0.0), ae(kb.out, 0.0);
      e[c] = 1, ae[c] = D[c];
      layer->AddOutputFactor(one, up(e, 1, kb.out), up(ae, 1, kb.out), Gamma);
    }
    // [V_W | v_b] (out × k), Γ V S against R{∇w} of the Gauss-Newton product.
    const Vec gamma = down(Gamma), s = down(S);
    Vec Vm(kb.out * k, 0.0);
    for (int64_t a = 0; a < kb.out; ++a) {
      for (int64_t b = 0; b < kb.in; ++b) Vm[a * k + b] = v0[kb.weight_offset + a * kb.in + b];
      if (kb.bias_offset >= 0) Vm[a * k + kb.in] = v0[kb.bias_offset + a];
    }
    Vec want(kb.out * k, 0.0);
    for (int64_t a = 0; a < kb.out; ++a)
      for (int64_t b = 0; b < k; ++b)
        for (int64_t c = 0; c < kb.out; ++c)
          for (int64_t d = 0; d < k; ++d)
            want[a * k + b] += gamma[a * kb.out + c] * Vm[c * k + d] * s[d * k + b];
    Matrix RY = be.Allocate(1, w_out), GV = be.Zeros(1, p_alloc);
    layer->RForward(one, x1, Matrix(), V, RY);
    Vec rd = down(RY);
    for (int64_t c = 0; c < w_out; ++c) rd[c] *= D[c];
    layer->RBackward(one, false, x1, Matrix(), delta.Rows(0, 1), up(rd, 1, w_out), V, GV, Matrix());
    const Vec gv = down(GV);
    Vec got(kb.out * k, 0.0);
    for (int64_t a = 0; a < kb.out; ++a) {
      for (int64_t b = 0; b < kb.in; ++b) got[a * k + b] = gv[kb.weight_offset + a * kb.in + b];
      if (kb.bias_offset >= 0) got[a * k + kb.in] = gv[kb.bias_offset + a];
    }
    expect_close(got, want, o.rounding, "K-FAC Γ V S (one example)");
  }
}

}  // namespace lethe::testing
