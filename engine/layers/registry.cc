// The one place that maps a spec's layer type to its module. A table, not self-registering
// statics: lethe_engine is a static library, and a layer file that registers itself from a
// static initialiser is dropped by the linker when nothing else references it.
#include <iterator>

#include "common/error.h"
#include "engine/layers/activation.h"
#include "engine/layers/layer.h"
#include "engine/layers/linear.h"

namespace lethe::layers {
namespace {

template <typename T>
using Factory = std::unique_ptr<Layer<T>> (*)(const io::LayerSpec&, const LayerShape&);

template <typename T>
struct Entry {
  io::LayerSpec::Type type;
  Factory<T> make;
};

template <typename T>
constexpr Entry<T> kLayerTypes[] = {
    {io::LayerSpec::Type::kLinear, &MakeLinear<T>},
    {io::LayerSpec::Type::kActivation, &MakeActivation<T>},
};

}  // namespace

template <typename T>
int64_t Layer<T>::num_params() const {
  int64_t n = 0;
  for (const Tensor& t : Tensors()) {
    int64_t size = 1;
    for (int64_t d : t.shape) size *= d;
    n += size;
  }
  return n;
}

template <typename T>
std::unique_ptr<Layer<T>> MakeLayer(const io::LayerSpec& spec, const LayerShape& shape) {
  for (const Entry<T>& e : kLayerTypes<T>)
    if (e.type == spec.type) return e.make(spec, shape);
  LETHE_CHECK(false, "no layer module for spec type ", static_cast<int>(spec.type));
  return nullptr;
}

template class Layer<float>;
template class Layer<double>;
template std::unique_ptr<Layer<float>> MakeLayer<float>(const io::LayerSpec&, const LayerShape&);
template std::unique_ptr<Layer<double>> MakeLayer<double>(const io::LayerSpec&, const LayerShape&);

}  // namespace lethe::layers
