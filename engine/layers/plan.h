// How a layer type describes itself to the rest of lethe: it reads and checks its own spec
// keys, says what shape it gives for the shape it takes, declares its tensors, initialises
// them, and makes its compute module (engine/layers/layer.h). engine/architecture.cc walks
// the spec and calls these; engine/layers/registry.cc lists the types. A new layer type is
// one file with a LayerType and its tests; nothing else switches on a layer's type.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "engine/architecture.h"

namespace lethe::layers {

template <typename T>
class Layer;

// A layer's spec keys, read with checks. Every reader marks its key as known; Done() then
// refuses any other key, so a typo is an error, not a default. Messages name the layer.
class SpecKeys {
 public:
  SpecKeys(const io::LayerSpec& spec, std::string where);
  ~SpecKeys();
  SpecKeys(const SpecKeys&) = delete;
  SpecKeys& operator=(const SpecKeys&) = delete;

  // A non-empty string.
  std::optional<std::string> String(const std::string& key);
  // An integer in [min, max].
  std::optional<int64_t> Int(const std::string& key, int64_t min, int64_t max);
  // An integer or a pair [a, b] of integers in [min, max] (PyTorch's int-or-tuple
  // arguments: kernel, stride, padding, dilation); an integer k means (k, k).
  std::optional<std::pair<int64_t, int64_t>> IntOrPair(const std::string& key, int64_t min,
                                                       int64_t max);
  // A finite number in [min, max].
  std::optional<double> Number(const std::string& key, double min, double max);
  std::optional<bool> Bool(const std::string& key);
  // One of `allowed` (a string).
  std::optional<std::string> Choice(const std::string& key, const std::vector<std::string>& allowed);
  // Records a key the layer resolved (e.g. linear's "out" from the file), so that the model
  // file written later carries it.
  void SetInt(const std::string& key, int64_t value);
  void SetString(const std::string& key, const std::string& value);
  // Throws for any key no reader asked for.
  void Done() const;
  std::string Dump() const;  // the keys as compact JSON (with SetInt's)

  template <typename... Args>
  [[noreturn]] void Fail(const Args&... args) const {
    lethe::Fail(where_, ": ", args...);
  }
  const std::string& where() const { return where_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string where_;
};

// What a layer type's plan() sees and declares (engine/architecture.cc drives it).
class PlanContext {
 public:
  struct Driver;  // engine/architecture.cc
  // `index` is the layer's place ("3", or "3.1" in a body), `where` its name in messages.
  PlanContext(Driver& driver, const io::LayerSpec& spec, const Shape& in, std::string index,
              std::string where);
  ~PlanContext();

  const io::LayerSpec& spec() const { return spec_; }
  const std::string& index() const { return index_; }  // "3", "3.1" (in a body)
  const Shape& in() const { return in_; }
  SpecKeys& keys() { return keys_; }
  bool frozen() const { return frozen_; }
  template <typename... Args>
  [[noreturn]] void Fail(const Args&... args) const {
    keys_.Fail(args...);
  }

  // The input must be a vector (rank 1): its width. A dimension still unknown (-1) is
  // returned as -1 for the layer to resolve (ResolveInput).
  int64_t InputWidth(const char* what_needs_it) const;
  // The shape a model file gives tensor `name` (loading: an error naming the tensor when
  // the file has none), or nullopt (a model made from the spec).
  std::optional<Shape> FileShape(const std::string& name) const;
  // The output width the data decide, for a layer whose width neither the spec nor the
  // file gives; only the last such layer of the model may take it (an earlier one is an
  // error telling it to say "out"). -1 when no data are at hand.
  int64_t DataOutputWidth();
  // Declares the layer's next tensor: trainable (in θ) unless the layer is frozen or the
  // tensor `fixed` (BatchNorm's statistics). Checks the shape against the file's, the name
  // against the model's other tensors, and the model's size against lethe's limits.
  void AddTensor(const std::string& name, const Shape& shape, bool fixed = false);
  // The layer learned the model's input width (it was unknown, -1): linear from its
  // weight's shape when a model file is read without data and without "input".
  void ResolveInput(int64_t width);
  // Plans the spec's "layers" body on `in` (a residual block); returns its output shape.
  Shape PlanBody(const Shape& in);
  void SetOut(const Shape& out) { out_ = out; }

  // For the driver.
  LayerShape Finish();

 private:
  Driver& driver_;
  const io::LayerSpec& spec_;
  Shape in_, out_;
  SpecKeys keys_;
  std::string index_;
  bool frozen_ = false, body_planned_ = false;
  bool has_parameters_ = false;  // a tensor that is not `fixed` (what "frozen" fixes)
  std::vector<TensorInfo> tensors_;
  std::vector<LayerShape> body_;
};

// A freshly made model's tensors, as PyTorch's default initialisation of the module would
// fill them, from one 64-bit Mersenne Twister (deterministic across platforms: variates
// are built from its raw bits, not std::*_distribution, whose output the standard leaves
// to the implementation).
class Initializer {
 public:
  Initializer(uint64_t seed, std::vector<double>& theta, std::vector<double>& constants)
      : rng_(seed), theta_(theta), constants_(constants) {}
  double Uniform01() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }  // [0, 1)
  // Every element U(−bound, bound), in storage order.
  void Uniform(const TensorInfo& t, double bound);
  // Every element N(0, stddev²) (Box–Muller).
  void Normal(const TensorInfo& t, double stddev);
  void Fill(const TensorInfo& t, double value);
  double* Values(const TensorInfo& t);

 private:
  std::mt19937_64 rng_;
  std::vector<double>& theta_;
  std::vector<double>& constants_;
};

// How a layer type uses the model's input, when the spec gives no "input" shape: the
// first layer (in spec order) that is not kAny decides whether X's trailing dimensions
// are the example's shape (kShaped: conv2d) or flattened (kFlat: as lethe always did).
enum class InputUse { kAny, kFlat, kShaped };

struct LayerType {
  const char* name;  // the spec's "type"
  void (*plan)(PlanContext& ctx);
  void (*init)(const LayerShape& shape, Initializer& init);  // null: nothing to initialise
  std::unique_ptr<Layer<float>> (*make_f32)(const LayerShape& shape);
  std::unique_ptr<Layer<double>> (*make_f64)(const LayerShape& shape);
  InputUse input_use = InputUse::kAny;
  // A layer that reads the data as integer token ids (embedding_bag; it is then the model's
  // first layer): checks X (n rows of the layer's input width) and throws lethe::Error
  // naming `path` and the row of the first bad id. Null: the layer reads float features, and
  // integer X is refused (engine/model.cc, CheckDataMatchesModel).
  void (*check_token_ids)(const LayerShape& shape, const double* X, int64_t n,
                          const std::string& path) = nullptr;
};

// registry.cc: the type named `name`, or null; and the known names for messages.
const LayerType* FindLayerType(const std::string& name);
std::string KnownLayerTypes();

}  // namespace lethe::layers
