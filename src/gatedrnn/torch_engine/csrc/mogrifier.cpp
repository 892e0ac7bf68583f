// The Mogrifier's rounds (loops/mogrifier.py) as one pass per round, forward and backward.
//
// A round gates one vector by the other: v_out = 2 sigma(z) v, z the round's product (h Q_k^T for
// x, x R_k^T for h). The eager loop makes three torch calls per round forward (sigmoid, the
// doubled product, a copy into the step's [x, h]) and five backward; here each is one call whose
// rows are split across threads (common.h's rows) and whose row is one loop the compiler
// vectorises. The vectors a round reads and writes may be column slices of wider rows (the
// step's [x, h] and its gradient), so every (B, N) tensor here is taken with its row stride;
// within a row the elements are contiguous.
#include "common.h"

namespace {

using namespace gatedrnn;

// a (B, N) tensor, possibly a slice of wider rows: its rows' elements contiguous, one dtype, CPU
void check_rows(const std::vector<at::Tensor>& ts, const at::Tensor& like) {
  for (const auto& t : ts) {
    if (!t.defined()) continue;
    TORCH_CHECK(t.dim() == 2 && t.size(0) == like.size(0) && t.size(1) == like.size(1) &&
                    (t.size(1) <= 1 || t.stride(1) == 1) && t.scalar_type() == like.scalar_type() &&
                    t.device().is_cpu(),
                "gatedrnn mogrifier kernel: every tensor must be (B, N) like the first, with contiguous rows, "
                "on the CPU and of one dtype");
  }
}

inline int64_t rs(const at::Tensor& t) { return t.defined() ? t.stride(0) : 0; }

// z (B, N): the round's product; v (B, N): the vector gated. s (B, N): sigma(z) (out, kept for the
// backward); out (B, N): 2 s v (out). out2 (B, N) or undefined: out again, times mask (B, N) where
// given (the step's [x, h] the LSTM product reads, h there seen through state dropout's mask).
template <typename T, bool O2, bool MASK>
void fwd_impl(const at::Tensor& z, const at::Tensor& v, const at::Tensor& s, const at::Tensor& out,
              const at::Tensor& out2, const at::Tensor& mask) {
  const int64_t B = z.size(0), N = z.size(1);
  const T *Z = ptr<T>(z), *V = ptr<T>(v), *M = ptr<T>(mask);
  T *S = ptr<T>(s), *O = ptr<T>(out), *O2p = ptr<T>(out2);
  const int64_t zs = rs(z), vs = rs(v), ss = rs(s), os = rs(out), o2s = rs(out2), ms = rs(mask);
  rows(B, N, [&](int64_t b) {
    const T *zr = Z + b * zs, *vr = V + b * vs, *mr = MASK ? M + b * ms : vr;
    T *sr = S + b * ss, *orow = O + b * os, *o2r = O2 ? O2p + b * o2s : orow;
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) {
      const T g = sigm<T>(zr[j]);
      const T o = T(2) * g * vr[j];
      sr[j] = g;
      orow[j] = o;
      if (O2) o2r[j] = MASK ? o * mr[j] : o;
    }
  });
}

// d (B, N): dL/d(the round's output); v, s: the round's input and gate. dz (B, N): dL/dz
// = 2 d v s (1 - s) (out); dv (B, N): dL/dv through this round, 2 s d (out; may be d itself).
template <typename T>
void bwd_impl(const at::Tensor& d, const at::Tensor& v, const at::Tensor& s, const at::Tensor& dz,
              const at::Tensor& dv) {
  const int64_t B = d.size(0), N = d.size(1);
  const T *D = ptr<T>(d), *V = ptr<T>(v), *S = ptr<T>(s);
  T *DZ = ptr<T>(dz), *DV = ptr<T>(dv);
  const int64_t ds = rs(d), vs = rs(v), ss = rs(s), dzs = rs(dz), dvs = rs(dv);
  rows(B, N, [&](int64_t b) {
    const T *dr = D + b * ds, *vr = V + b * vs, *sr = S + b * ss;
    T *dzr = DZ + b * dzs, *dvr = DV + b * dvs;
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) {
      const T g = sr[j], dj = T(2) * dr[j];
      dzr[j] = dj * vr[j] * (g - g * g);
      dvr[j] = dj * g;
    }
  });
}

void mogrify_forward(const at::Tensor& z, const at::Tensor& v, const at::Tensor& s, const at::Tensor& out,
                     const c10::optional<at::Tensor>& out2_, const c10::optional<at::Tensor>& mask_) {
  auto out2 = opt(out2_), mask = opt(mask_);
  check_rows({z, v, s, out, out2, mask}, z);
  TORCH_CHECK(!mask.defined() || out2.defined(), "gatedrnn mogrifier kernel: a mask needs out2");
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "mogrify_forward", [&] {
    if (!out2.defined()) fwd_impl<scalar_t, false, false>(z, v, s, out, out2, mask);
    else if (!mask.defined()) fwd_impl<scalar_t, true, false>(z, v, s, out, out2, mask);
    else fwd_impl<scalar_t, true, true>(z, v, s, out, out2, mask);
  });
}

void mogrify_backward(const at::Tensor& d, const at::Tensor& v, const at::Tensor& s, const at::Tensor& dz,
                      const at::Tensor& dv) {
  check_rows({d, v, s, dz, dv}, d);
  AT_DISPATCH_FLOATING_TYPES(d.scalar_type(), "mogrify_backward", [&] { bwd_impl<scalar_t>(d, v, s, dz, dv); });
}

const Register reg([](pybind11::module_& m) {
  m.def("mogrify_forward", &mogrify_forward);
  m.def("mogrify_backward", &mogrify_backward);
});

}  // namespace
