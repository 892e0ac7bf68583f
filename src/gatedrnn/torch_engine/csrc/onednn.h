// oneDNN's product called from the kernels (the Mogrifier's rounds, the LSTM's sequence
// forward): torch's mkldnn::_linear_pointwise through the dispatcher, on the weight
// products.Product packed once in Python, or MKL's at::mm_out on W^T where Product chose MKL.
#pragma once
#include <torch/extension.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <optional>

namespace gatedrnn {

// oneDNN's product (torch's mkldnn::_linear_pointwise, the op products.Product calls from Python),
// looked up once; none where this torch lacks it or registers it with another signature.
using LinearFn = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, std::string_view,
                            c10::List<std::optional<at::Scalar>>, std::optional<std::string_view>);
using BinaryFn = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                            std::string_view);
struct OneDNN {
  c10::TypedOperatorHandle<LinearFn> linear;
  c10::TypedOperatorHandle<BinaryFn> binary;
  c10::List<std::optional<at::Scalar>> none;
};

inline const OneDNN* onednn() {
  static const std::optional<OneDNN> ops = []() -> std::optional<OneDNN> {
    try {
      auto& d = c10::Dispatcher::singleton();
      return OneDNN{d.findSchemaOrThrow("mkldnn::_linear_pointwise", "").typed<LinearFn>(),
                    d.findSchemaOrThrow("mkldnn::_linear_pointwise", "binary").typed<BinaryFn>(),
                    c10::List<std::optional<at::Scalar>>()};
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }();
  return ops ? &*ops : nullptr;
}

inline const OneDNN& need_onednn() {
  const OneDNN* ops = onednn();
  TORCH_CHECK(ops != nullptr, "gatedrnn compiled kernel: oneDNN's _linear_pointwise cannot be called here");
  return *ops;
}

// a W^T for a loop's weight w: W^T (B rows of a times it, on MKL, into out) or oneDNN's packed W
inline at::Tensor product(const at::Tensor& a, const at::Tensor& w, bool packed, at::Tensor& out) {
  if (packed) return need_onednn().linear.call(a, w, std::nullopt, "none", need_onednn().none, "");
  return at::mm_out(out, a, w);
}

// add + a W^T, add (B, N) contiguous: in place on MKL, a new tensor from oneDNN (its add fused)
inline at::Tensor product_add(const at::Tensor& a, const at::Tensor& w, bool packed, at::Tensor& add) {
  if (packed) return need_onednn().binary.call(a, add, w, std::nullopt, "add");
  return add.addmm_(a, w);
}

}  // namespace gatedrnn
