// What every kernel file of the compiled extension shares: the scalar helpers, the checks, the
// split of a batch's rows across threads, and the registry through which each file adds its
// functions to the one Python module (module.cpp), so a new kernel file is one new file.
//
// Every tensor a kernel takes is contiguous, on the CPU and of one dtype (float or double).
#pragma once
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <vector>

namespace gatedrnn {

template <typename s_t>
inline s_t sigm(s_t v) { return s_t(1) / (s_t(1) + std::exp(-v)); }

inline void check(const std::vector<at::Tensor>& ts, const at::Tensor& like) {
  for (const auto& t : ts) {
    if (!t.defined()) continue;
    TORCH_CHECK(t.is_contiguous() && t.scalar_type() == like.scalar_type() && t.device().is_cpu(),
                "gatedrnn compiled kernel: every tensor must be contiguous, on the CPU and of one dtype");
  }
}

// The fewest elements a thread of a parallel pass is given: below it a parallel region costs more
// than it saves. set_parallel_grain (module.cpp) changes it, for benchmarks/compiled_ab.py --grains.
inline int64_t& parallel_grain() {
  static int64_t elems = 16384;
  return elems;
}

// f(b) for every b in [0, B), the range split across threads where a row holds enough work
template <typename F>
void rows(int64_t B, int64_t row_elems, const F& f) {
  const int64_t grain = std::max<int64_t>(1, parallel_grain() / std::max<int64_t>(1, row_elems));
  at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) f(b);
  });
}

// torch.lerp(a, b, w)'s formula, so a keep mask of 1 gives b exactly (a padded step keeps its state)
template <typename s_t>
inline s_t lerp(s_t a, s_t b, s_t w) { return w < s_t(0.5) ? a + w * (b - a) : b - (b - a) * (s_t(1) - w); }

template <typename T> T* ptr(const at::Tensor& t) { return t.defined() ? t.data_ptr<T>() : nullptr; }

// f(A, B, C, D) with the four flags' run-time values as std::true_type / std::false_type: the
// kernels' template switches (peephole, CIFG, the two keep masks), one instantiation per
// combination, chosen in one place (decltype(A)::value is the compile-time bool)
template <typename F>
inline void with_flag(bool v, F&& f) {
  if (v) f(std::true_type{});
  else f(std::false_type{});
}
template <typename F>
inline void with_flags(bool a, bool b, bool c, bool d, F&& f) {
  with_flag(a, [&](auto A) {
    with_flag(b, [&](auto B) { with_flag(c, [&](auto C) { with_flag(d, [&](auto D) { f(A, B, C, D); }); }); });
  });
}

inline at::Tensor opt(const c10::optional<at::Tensor>& t) { return t.has_value() ? *t : at::Tensor(); }

// The registry: a file adds its functions with
//   static gatedrnn::Register reg([](pybind11::module_& m) { m.def("name", &fn); });
using Registration = void (*)(pybind11::module_&);
std::vector<Registration>& registrations();
struct Register {
  explicit Register(Registration r) { registrations().push_back(r); }
};

}  // namespace gatedrnn
