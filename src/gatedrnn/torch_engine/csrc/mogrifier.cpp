// The Mogrifier's rounds (loops/mogrifier.py) as one pass per round, forward and backward.
//
// A round gates one vector by the other: v_out = 2 sigma(z) v, z the round's product (h Q_k^T for
// x, x R_k^T for h). The eager loop makes three torch calls per round forward (sigmoid, the
// doubled product, a copy into the step's [x, h]) and five backward; here each is one call whose
// rows are split across threads (common.h's rows) and whose row is one loop the compiler
// vectorises. The vectors a round reads and writes may be column slices of wider rows (the
// step's [x, h] and its gradient), so every (B, N) tensor here is taken with its row stride;
// within a row the elements are contiguous.
//
// A step's rounds in one call (mogrify_step_forward / mogrify_step_backward): each round's product
// and its pass, with no Python between rounds. The products run on the kernel the loop's
// products.Product chose for each weight: MKL through at::mm_out / addmm_out on W^T, or oneDNN's
// _linear_pointwise (its "binary" add overload in the backward) through the dispatcher, on the
// weight products.Product packed once (nothing reordered per call).
#include "common.h"
#include "onednn.h"

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

// -- a step's rounds in one call ------------------------------------------------------------------
bool mogrify_onednn() { return onednn() != nullptr; }

// add + a W^T where add is a column slice of dxh (strided rows): into the contiguous scratch
// (oneDNN's add reads a strided operand through a copy of its own, made afresh per call)
at::Tensor product_add_strided(const at::Tensor& a, const at::Tensor& w, bool packed, const at::Tensor& add,
                               at::Tensor& scratch) {
  if (packed) {
    scratch.copy_(add);
    return product_add(a, w, packed, scratch);
  }
  return at::addmm_out(scratch, add, a, w);
}

void check_weights(const std::vector<at::Tensor>& wq, const std::vector<bool>& pq, const std::vector<at::Tensor>& wr,
                   const std::vector<bool>& pr) {
  TORCH_CHECK(wq.size() == pq.size() && wr.size() == pr.size() && wq.size() >= 1 &&
                  (wq.size() == wr.size() || wq.size() == wr.size() + 1),
              "gatedrnn mogrifier kernel: expected nq >= 1 weights of x's rounds and nq or nq - 1 of h's, "
              "each with its oneDNN flag; found ", wq.size(), " (", pq.size(), " flags) and ", wr.size(), " (",
              pr.size(), " flags)");
}

// One step's rounds, forward: what loops/mogrifier.py's _rounds_compiled does round by round.
// x (T, B, I), Hs (T+1, B, R): the step reads x[t] and h_{t-1} = Hs[t]. wq[k], wr[k]: Q_k, R_k as
// the loop's products hold them (pq[k], pr[k]: oneDNN's packed weight, else W^T for at::mm). SQ,
// Xm (nq or nq - 1, S, B, I), SR, Hm (max(nr, 1), S, B, R), round-major, XH (S, B, I+R): this step's
// rows at slot s (out; XH's h through state dropout's mask (B, R) where given). Xm with nq - 1 rounds:
// the last x round, which no backward reads beyond XH (with more x rounds than h rounds, no R_k takes
// it), is written into XH alone. zq (B, I), zr (B, R): the MKL products' scratch.
void mogrify_step_forward(const at::Tensor& x, const at::Tensor& Hs, int64_t t, int64_t s,
                          const std::vector<at::Tensor>& wq, const std::vector<bool>& pq,
                          const std::vector<at::Tensor>& wr, const std::vector<bool>& pr, const at::Tensor& SQ,
                          const at::Tensor& Xm, const at::Tensor& SR, const at::Tensor& Hm, const at::Tensor& XH,
                          const c10::optional<at::Tensor>& mask_, at::Tensor zq, at::Tensor zr) {
  check_weights(wq, pq, wr, pr);
  const int64_t nq = wq.size(), nr = wr.size(), I = x.size(2), rounds = nq + nr;
  const bool last_x_in_xh = Xm.size(0) == nq - 1;
  TORCH_CHECK(Xm.size(0) == nq || (last_x_in_xh && nq > nr),
              "gatedrnn mogrifier kernel: Xm holds nq rounds, or nq - 1 where there are more x rounds than h rounds; "
              "found ", Xm.size(0), " for nq=", nq, ", nr=", nr);
  const auto xh = XH.select(0, s), sq = SQ.select(1, s), xm = Xm.select(1, s), sr = SR.select(1, s),
             hm = Hm.select(1, s);
  at::Tensor xo = xh.narrow(1, 0, I), ho = xh.narrow(1, I, xh.size(1) - I);
  at::Tensor xk = x.select(0, t), hk = Hs.select(0, t);
  for (int64_t j = 1; j <= rounds; ++j) {
    if (j % 2) {  // x^(k+1) = 2 sigma(h^(k) Q_k^T) x^(k)
      const int64_t k = (j - 1) / 2;
      const bool last = k == nq - 1, direct = last && last_x_in_xh;
      const auto out = direct ? xo : xm.select(0, k);
      mogrify_forward(product(hk, wq[k], pq[k], zq), xk, sq.select(0, k), out,
                      last && !direct ? c10::optional<at::Tensor>(xo) : c10::nullopt, c10::nullopt);
      xk = out;
    } else {  // h^(k+1) = 2 sigma(x^(k+1) R_k^T) h^(k)
      const int64_t k = j / 2 - 1;
      const bool last = k == nr - 1;
      const auto out = hm.select(0, k);
      mogrify_forward(product(xk, wr[k], pr[k], zr), hk, sr.select(0, k), out,
                      last ? c10::optional<at::Tensor>(ho) : c10::nullopt, last ? mask_ : c10::nullopt);
      hk = out;
    }
  }
  if (nr == 0) {  // one round: h reaches the product as it is
    if (mask_.has_value()) at::mul_out(ho, hk, *mask_);
    else ho.copy_(hk);
  }
}

// The same step's rounds backward, read bottom-up from dxh (B, I+R), the gradient of the step's
// [x, h]: what _rounds_backward_compiled does round by round. x, Hs, SQ, Xm, SR, Hm as the forward
// saved them (every step: slot t); wq[k], wr[k]: Q_k^T's and R_k^T's products as the loop holds them
// (W for at::mm or oneDNN's packed W^T). dZQ (nq, L, B, I), dZR (max(nr, 1), L, B, R): the rounds'
// pre-activation gradients at slot u (out). dX (T, B, I): dL/dx_t into dX[t] (out). mask: state
// dropout's (B, R). dxb (B, I), dhb (B, R): contiguous scratch for the two gradients. Returns
// dL/dh_{t-1} (B, R) contiguous: dhb, or a tensor oneDNN's last product made.
at::Tensor mogrify_step_backward(const at::Tensor& dxh, const at::Tensor& x, const at::Tensor& Hs, int64_t t,
                                 const std::vector<at::Tensor>& wq, const std::vector<bool>& pq,
                                 const std::vector<at::Tensor>& wr, const std::vector<bool>& pr,
                                 const at::Tensor& SQ, const at::Tensor& Xm, const at::Tensor& SR,
                                 const at::Tensor& Hm, const at::Tensor& dZQ, const at::Tensor& dZR, int64_t u,
                                 const at::Tensor& dX, const c10::optional<at::Tensor>& mask_, at::Tensor dxb,
                                 at::Tensor dhb) {
  check_weights(wq, pq, wr, pr);
  const int64_t nq = wq.size(), nr = wr.size(), I = x.size(2), rounds = nq + nr;
  const auto x_t = x.select(0, t), h_t = Hs.select(0, t), sq = SQ.select(1, t), xm = Xm.select(1, t),
             sr = SR.select(1, t), hm = Hm.select(1, t), dzq = dZQ.select(1, u), dzr = dZR.select(1, u);
  at::Tensor dx_out = dX.select(0, t);
  // each gradient starts as a column slice of dxh (strided rows), until a pass or product writes it
  // into contiguous memory (dxb, dhb, a oneDNN product's result)
  at::Tensor dx = dxh.narrow(1, 0, I), dh = dxh.narrow(1, I, dxh.size(1) - I);
  bool dx_slice = true, dh_slice = true;
  if (mask_.has_value()) {
    at::mul_out(dhb, dh, *mask_);
    dh = dhb;
    dh_slice = false;
  }
  for (int64_t j = rounds; j >= 1; --j) {
    if (j % 2) {  // x^(k+1) = 2 s x^(k), s = sigma(h^(k) Q_k^T)
      const int64_t k = (j - 1) / 2;
      const auto dz = dzq.select(0, k);
      at::Tensor out = j == 1 ? dx_out : dx_slice ? dxb : dx;
      mogrify_backward(dx, k == 0 ? x_t : xm.select(0, k - 1), sq.select(0, k), dz, out);
      dx = out;
      dx_slice = false;
      dh = dh_slice ? product_add_strided(dz, wq[k], pq[k], dh, dhb) : product_add(dz, wq[k], pq[k], dh);
      dh_slice = false;
    } else {  // h^(k+1) = 2 s h^(k), s = sigma(x^(k+1) R_k^T)
      const int64_t k = j / 2 - 1;
      const auto dz = dzr.select(0, k);
      at::Tensor out = dh_slice ? dhb : dh;
      mogrify_backward(dh, k == 0 ? h_t : hm.select(0, k - 1), sr.select(0, k), dz, out);
      dh = out;
      dh_slice = false;
      dx = dx_slice ? product_add_strided(dz, wr[k], pr[k], dx, dxb) : product_add(dz, wr[k], pr[k], dx);
      dx_slice = false;
    }
  }
  return dh;
}

const Register reg([](pybind11::module_& m) {
  m.def("mogrify_forward", &mogrify_forward);
  m.def("mogrify_backward", &mogrify_backward);
  m.def("mogrify_onednn", &mogrify_onednn);
  m.def("mogrify_step_forward", &mogrify_step_forward);
  m.def("mogrify_step_backward", &mogrify_step_backward);
});

}  // namespace
