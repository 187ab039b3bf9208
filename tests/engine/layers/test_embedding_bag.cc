// embedding_bag (engine/layers/embedding_bag.h): its derivatives through the one checker,
// with the batch's token ids held fixed (ids have no derivative); its keys, its
// initialisation, and where the data meet the model (integer X, ids in range).
#include <cmath>
#include <string>
#include <vector>

#include "engine/inverse_hvp.h"
#include "engine/kfac_preconditioner.h"
#include "engine/layers/plan.h"
#include "engine/model.h"
#include "engine/objective.h"
#include "tests/engine/layers/layer_gradient_check.h"

namespace lethe {
namespace {

// 5 bags of 4 ids over 7 rows: bag 0 all padding (when padding_idx = 2), bag 1 one id four
// times, bag 2 padding and a repeat, bag 3 uses rows 0 and 6, bag 4 mixed.
const std::vector<double> kIds = {2, 2, 2, 2, 5, 5, 5, 5, 2, 1, 1, 2, 0, 6, 3, 4, 6, 2, 4, 1};

io::LayerSpec Bag(const std::string& extra) {
  return io::LayerSpec::Of("embedding_bag", R"({"num_embeddings": 7, "dim": 3)" + extra + "}");
}

testing::LayerCheckOptions WithIds() {
  testing::LayerCheckOptions o;
  o.token_ids = kIds;
  return o;
}

TEST(EmbeddingBagLayer, DerivativesMeanWithPadding) {
  testing::CheckLayerDerivatives(Bag(R"(, "padding_idx": 2)"), {4}, -1, WithIds());
}
TEST(EmbeddingBagLayer, DerivativesSumWithPadding) {
  testing::CheckLayerDerivatives(Bag(R"(, "mode": "sum", "padding_idx": 2)"), {4}, -1, WithIds());
}
TEST(EmbeddingBagLayer, DerivativesMeanWithoutPadding) {
  testing::CheckLayerDerivatives(Bag(""), {4}, -1, WithIds());
}
TEST(EmbeddingBagLayer, DerivativesSum) {
  testing::CheckLayerDerivatives(Bag(R"(, "mode": "sum")"), {4}, -1, WithIds());
}

TEST(EmbeddingBagLayer, DerivativesFrozenTableHasNone) {
  // A frozen table is a fixed tensor: the layer has no parameters and passes nothing back.
  testing::CheckLayerDerivatives(Bag(R"(, "frozen": true)"), {4}, -1, WithIds());
}

// Runs `f`, expecting one lethe::Error line that starts with `prefix` and holds `phrase`.
template <typename F>
void ExpectError(F&& f, const std::string& prefix, const std::string& phrase) {
  try {
    f();
    ADD_FAILURE() << "no lethe::Error; expected " << phrase;
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.rfind(prefix, 0), 0u) << message;
    EXPECT_NE(message.find(phrase), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

io::ModelSpec TextModel(const std::string& bag_keys) {
  io::ModelSpec spec;
  spec.loss = LossKind::kCrossEntropy;
  spec.layers = {io::LayerSpec::Of("embedding_bag", bag_keys),
                 io::LayerSpec::Linear("1.weight", "1.bias", 3)};
  return spec;
}

TEST(EmbeddingBagLayer, PlansTableAndShapes) {
  io::ModelSpec spec = TextModel(R"({"num_embeddings": 7, "dim": 3, "padding_idx": 0})");
  spec.input = {4};
  const Architecture arch = Architecture::Build(spec, {}, "text.json");
  ASSERT_EQ(arch.layers.size(), 2u);
  const LayerShape& bag = arch.layers[0];
  EXPECT_EQ(bag.in, (Shape{4}));
  EXPECT_EQ(bag.out, (Shape{3}));
  ASSERT_EQ(bag.tensors.size(), 1u);
  EXPECT_EQ(bag.tensors[0].name, "0.weight");  // the default name
  EXPECT_EQ(bag.tensors[0].shape, (Shape{7, 3}));
  EXPECT_EQ(arch.num_params, 7 * 3 + 3 * 3 + 3);
  EXPECT_EQ(arch.input_shape, (Shape{4}));
  // The resolved spec names the weight, so the model file alone can be read back.
  EXPECT_NE(bag.spec.keys.find("\"weight\":\"0.weight\""), std::string::npos) << bag.spec.keys;
}

TEST(EmbeddingBagLayer, RefusesBadKeysAndPlaces) {
  struct Case {
    std::string keys, phrase;
  };
  const std::vector<Case> cases = {
      {R"({"num_embeddings": 7, "dim": 3, "mode": "max"})", "mode"},
      {R"({"num_embeddings": 7, "dim": 3, "padding_idx": 7})", "padding_idx 7 is not in [0, 7)"},
      {R"({"num_embeddings": 7, "dim": 3, "padding_idx": -1})", "padding_idx"},
      {R"({"dim": 3})", "num_embeddings"},
      {R"({"num_embeddings": 16777217, "dim": 3})", "num_embeddings"},
      {R"({"num_embeddings": 7, "dim": 3, "size": 2})", "size"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.keys);
    io::ModelSpec spec = TextModel(c.keys);
    spec.input = {4};
    ExpectError([&] { Architecture::Build(spec, {}, "text.json"); }, "text.json", c.phrase);
  }
  // Anywhere but first: its input would be computed, not token ids.
  io::ModelSpec late;
  late.loss = LossKind::kCrossEntropy;
  late.input = {4};
  late.layers = {io::LayerSpec::Linear("0.weight", "0.bias", 4), io::LayerSpec::Of("relu"),
                 io::LayerSpec::Of("embedding_bag", R"({"num_embeddings": 7, "dim": 3})"),
                 io::LayerSpec::Linear("3.weight", "3.bias", 3)};
  ExpectError([&] { Architecture::Build(late, {}, "late.json"); }, "late.json",
              "must be the model's first layer");
}

// Token-id data: n × L integer ids (as LoadDataset gives them from an int64 X).
io::Dataset TokenData(const std::vector<double>& ids, int64_t length, bool integer) {
  io::Dataset data;
  data.path = "ids.npz";
  data.d = length;
  data.n = static_cast<int64_t>(ids.size()) / length;
  data.X.assign(ids.begin(), ids.end());
  data.example_shape = {length};
  data.integer_features = integer;
  for (int64_t i = 0; i < data.n; ++i) {
    data.y.push_back(static_cast<double>(i % 3));
    data.ids.push_back(i);
  }
  return data;
}

TEST(EmbeddingBagLayer, InitialisedAsTorchWithPaddingRowZero) {
  const io::Dataset data = TokenData(kIds, 4, true);
  const Model model =
      InitializeModel(TextModel(R"({"num_embeddings": 400, "dim": 25, "padding_idx": 2})"), data, 5,
                      io::DType::kF64);
  EXPECT_EQ(model.arch.input_shape, (Shape{4}));  // X's trailing shape [L]
  double sum = 0, squares = 0;
  for (int64_t k = 0; k < 400 * 25; ++k) {
    const double w = model.theta[k];
    if (k / 25 == 2) {
      EXPECT_EQ(w, 0.0) << k;  // the padding row
      continue;
    }
    sum += w, squares += w * w;
  }
  // N(0, 1) over 9975 values: mean within 5σ/√n = 0.05, variance within 0.1.
  const double m = 9975;
  EXPECT_NEAR(sum / m, 0.0, 0.05);
  EXPECT_NEAR(squares / m - (sum / m) * (sum / m), 1.0, 0.1);
}

TEST(EmbeddingBagLayer, DataMustBeIdsInRange) {
  const io::Dataset ids = TokenData(kIds, 4, true);
  const Model model = InitializeModel(
      TextModel(R"({"num_embeddings": 7, "dim": 3, "padding_idx": 2})"), ids, 5, io::DType::kF64);
  CheckDataMatchesModel(model.arch, ids);  // fine
  ExpectError([&] { CheckDataMatchesModel(model.arch, TokenData(kIds, 4, false)); }, "ids.npz",
              "X holds float features but the model's first layer is embedding_bag");
  std::vector<double> bad = kIds;
  bad[3 * 4 + 1] = 7;  // row 3
  ExpectError([&] { CheckDataMatchesModel(model.arch, TokenData(bad, 4, true)); }, "ids.npz",
              "X row 3 holds token id 7 at position 1, outside [0, 7)");
  bad[3 * 4 + 1] = -1;
  ExpectError([&] { CheckDataMatchesModel(model.arch, TokenData(bad, 4, true)); }, "ids.npz",
              "X row 3 holds token id -1");
  // Integer X for a model that reads features.
  io::ModelSpec linear;
  linear.loss = LossKind::kCrossEntropy;
  linear.input = {4};
  linear.layers = {io::LayerSpec::Linear("0.weight", "0.bias", 3)};
  const Architecture arch = Architecture::Build(linear, {}, "linear.json");
  ExpectError([&] { CheckDataMatchesModel(arch, ids); }, "ids.npz",
              "X has an integer dtype (token ids) but the model's first layer is linear");
}

// The table has no Kronecker block: K-FAC applies (l2 + λ)⁻¹ to it (and writes it: CG reads
// every entry), and `auto` does not pick K-FAC for a model it does not cover.
TEST(EmbeddingBagLayer, KfacLeavesTheTableToTheDamping) {
  const io::Dataset data = TokenData(kIds, 4, true);
  io::ModelSpec spec = TextModel(R"({"num_embeddings": 7, "dim": 3, "padding_idx": 2})");
  spec.l2 = 0.1;
  const Model model = InitializeModel(spec, data, 5, io::DType::kF64);
  EXPECT_EQ(ResolvePreconditioner(PreconditionerKind::kAuto, model.arch),
            PreconditionerKind::kNone);
  auto backend = kernels::MakeBackend<double>({});
  Objective<double> objective(*backend, model.arch, UploadData(*backend, data));
  const int64_t p = objective.num_params(), table = 7 * 3;
  kernels::Matrix<double> theta = backend->Allocate(1, p);
  backend->Upload(model.theta.data(), theta);
  KfacPreconditioner<double> M(objective, theta, 0.2);
  std::vector<double> v(2 * p), got(2 * p);
  for (int64_t k = 0; k < 2 * p; ++k) v[k] = std::sin(1.0 + k);
  kernels::Matrix<double> V = backend->Allocate(2, p), out = backend->Allocate(2, p);
  backend->Upload(v.data(), V);
  backend->Fill(out, std::nan(""));
  M.Apply(V, out);
  backend->Download(out, got.data());
  for (int64_t r = 0; r < 2; ++r)
    for (int64_t k = 0; k < p; ++k) {
      if (k < table)
        EXPECT_NEAR(got[r * p + k], v[r * p + k] / 0.3, 1e-15) << r << " " << k;
      else
        EXPECT_TRUE(std::isfinite(got[r * p + k])) << r << " " << k;  // the linear block
    }
  io::ModelSpec linear;
  linear.loss = LossKind::kCrossEntropy;
  linear.input = {4};
  linear.layers = {io::LayerSpec::Linear("0.weight", "0.bias", 3)};
  EXPECT_EQ(ResolvePreconditioner(PreconditionerKind::kAuto, Architecture::Build(linear, {}, "l")),
            PreconditionerKind::kKfac);
}

}  // namespace
}  // namespace lethe
