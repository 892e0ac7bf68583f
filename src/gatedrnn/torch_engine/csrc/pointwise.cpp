// Each step's elementwise work of the fused engine's LSTM-family and GRU loops as one pass.
//
// Built at first use by gatedrnn/torch_engine/compiled.py (torch.utils.cpp_extension.load);
// the eager loops stay the fallback. One call per step: the loops of loops/lstm.py and
// loops/gru.py make a dozen elementwise torch calls per step (each a pass over memory and a
// dispatch), and at two threads each (32, 512) call is below ATen's parallel grain. Here the
// rows of the batch are split across threads (at::parallel_for) and each row is one loop over
// its hidden units that the compiler vectorises (exp and tanh through glibc's vector math,
// which -ffast-math enables; the flag is given to the compiler only, not the linker, so the
// process's floating-point mode is left alone).
//
// Shapes: B batch, H hidden, G gate blocks (4: i, f, g, o; CIFG 3: f, g, o; GRU 3: r, z, n).
// Every tensor is contiguous and of one dtype (float or double), checked in check().
#include "common.h"
#include "lstm_unit.h"
#include "onednn.h"

namespace {

using namespace gatedrnn;

// -- LSTM (plain, peephole, CIFG), with zoneout or padding keep masks ---------------------------
// a (B, G*H): the step's pre-activations (input and recurrent products, biases), or with ax
// (B, G*H) the recurrent product alone, to which ax, the step's input pre-activation, is added
// here, row by row, into a row of scratch in this thread's cache (this saves the product a pass).
// gt (B, G*H) or undefined: post-activation gates (out; without a backward to read them, they stay
// in that scratch row). cp (B, H): c_{t-1}. cn (B, H): the cell's c_t (out).
// h (B, H): h_t (out; mixed with h_prev by kh). cs (B, H): the state c_t after zoneout by kc (out,
// only with kc). peep (3H): w_i, w_f, w_o.
template <typename T, bool PEEP, bool CIFG, bool KH, bool KC>
void lstm_fwd_impl(const at::Tensor& a, const at::Tensor& ax, const at::Tensor& gt, const at::Tensor& cp,
                   const at::Tensor& cn, const at::Tensor& h, const at::Tensor& peep, const at::Tensor& h_prev,
                   const at::Tensor& kh, const at::Tensor& kc, const at::Tensor& cs) {
  const int64_t B = cp.size(0), H = cp.size(1), G = CIFG ? 3 : 4;
  const T *A = ptr<T>(a), *CP = ptr<T>(cp), *W = ptr<T>(peep), *HP = ptr<T>(h_prev), *KHp = ptr<T>(kh),
          *KCp = ptr<T>(kc), *AX = ptr<T>(ax);
  T *GT = ptr<T>(gt), *CN = ptr<T>(cn), *HO = ptr<T>(h), *CS = ptr<T>(cs);
  // one row of scratch a thread, where the sum with ax or gates nothing keeps go
  std::vector<T> scratch(AX || !GT ? at::get_num_threads() * G * H : 0);
  rows(B, G * H, [&](int64_t b) {
    const T* ar = A + b * G * H;
    T* row = scratch.empty() ? nullptr : scratch.data() + at::get_thread_num() * G * H;
    if (AX) {
      const T* xr = AX + b * G * H;
#pragma omp simd
      for (int64_t j = 0; j < G * H; ++j) row[j] = ar[j] + xr[j];
      ar = row;
    }
    T* gr = GT ? GT + b * G * H : row;  // the gates in place of what they are computed from there
    const T* cpr = CP + b * H;
    T *cnr = CN + b * H, *hr = HO + b * H, *csr = KC ? CS + b * H : cnr;
    const T *w = W, *hpr = KH ? HP + b * H : cpr, *khr = KH ? KHp + b * H : cpr, *kcr = KC ? KCp + b * H : cpr;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T c0 = cpr[j];
      const T c = lstm_cell_forward<T, PEEP, CIFG>(ar, gr, H, j, c0, w);
      T ao = ar[(G - 1) * H + j];
      if (PEEP) ao += c * w[2 * H + j];
      const T o = sigm<T>(ao);
      gr[(G - 1) * H + j] = o;
      cnr[j] = c;
      T hn = o * std::tanh(c);
      if (KH) {
        const T k = khr[j];
        hn = lerp<T>(hn, hpr[j], k);
      }
      hr[j] = hn;
      if (KC) {
        const T k = kcr[j];
        csr[j] = lerp<T>(c, c0, k);
      }
    }
  });
}

// dh (B, H): dL/dh_t from the next step's product; carry (B, H) or undefined: what zoneout kept
// of the gradient at h, added here; dy (B, H) or undefined: dL/dy_t. dc (B, H): dL/dc_t in, dL/dc_{t-1}
// out. gt, cp, cn as saved by the forward. da (B, G*H): dL/da (out). carry_out (B, H): kh's share of
// this step's dh (out, only with kh).
template <typename T, bool PEEP, bool CIFG, bool KH, bool KC>
void lstm_bwd_impl(const at::Tensor& gt, const at::Tensor& cp, const at::Tensor& cn, const at::Tensor& dh,
                   const at::Tensor& carry, const at::Tensor& dy, const at::Tensor& dc, const at::Tensor& da,
                   const at::Tensor& peep, const at::Tensor& kh, const at::Tensor& kc,
                   const at::Tensor& carry_out) {
  const int64_t B = cp.size(0), H = cp.size(1), G = CIFG ? 3 : 4;
  const T *GT = ptr<T>(gt), *CP = ptr<T>(cp), *CN = ptr<T>(cn), *DH = ptr<T>(dh), *CA = ptr<T>(carry),
          *DY = ptr<T>(dy), *W = ptr<T>(peep), *KHp = ptr<T>(kh), *KCp = ptr<T>(kc);
  T *DC = ptr<T>(dc), *DA = ptr<T>(da), *CO = ptr<T>(carry_out);
  const std::vector<T> zeros(H, T(0));  // in place of an absent carry or dy: one loop, no branches
  rows(B, G * H, [&](int64_t b) {
    const int64_t r = b * H;
    const T *gr = GT + b * G * H, *dhr = DH + r, *car = CA ? CA + r : zeros.data(), *dyr = DY ? DY + r : zeros.data(),
            *khr = KH ? KHp + r : DH + r, *kcr = KC ? KCp + r : DH + r, *cpr = CP + r, *cnr = CN + r, *w = W;
    T *dar = DA + b * G * H, *dcr = DC + r, *cor = KH ? CO + r : DC + r;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      T d = dhr[j] + car[j] + dyr[j];
      if (KH) {
        const T k = khr[j];
        cor[j] = d * k;
        d = d * (T(1) - k);
      }
      T dcj = dcr[j], carry_c = T(0);
      if (KC) {
        const T k = kcr[j];
        carry_c = dcj * k;
        dcj = dcj * (T(1) - k);
      }
      const T c0 = cpr[j], tc = std::tanh(cnr[j]);
      const T o = gr[(G - 1) * H + j];
      const T dao = d * tc * (o * (T(1) - o));
      dcj += d * ((T(1) - tc * tc) * o);
      if (PEEP) dcj += dao * w[2 * H + j];
      dar[(G - 1) * H + j] = dao;
      T dcn = lstm_cell_backward<T, PEEP, CIFG>(gr, dar, H, j, dcj, c0, w);
      if (KC) dcn += carry_c;
      dcr[j] = dcn;
    }
  });
}

template <typename T>
void lstm_fwd_t(bool peep, bool cifg, bool zh, bool zc, const at::Tensor& a, const at::Tensor& ax,
                const at::Tensor& gt, const at::Tensor& cp, const at::Tensor& cn, const at::Tensor& h,
                const at::Tensor& w, const at::Tensor& hp, const at::Tensor& kh, const at::Tensor& kc,
                const at::Tensor& cs) {
  with_flags(peep, cifg, zh, zc, [&](auto P, auto C, auto ZH, auto ZC) {
    lstm_fwd_impl<T, decltype(P)::value, decltype(C)::value, decltype(ZH)::value, decltype(ZC)::value>(
        a, ax, gt, cp, cn, h, w, hp, kh, kc, cs);
  });
}

template <typename T>
void lstm_bwd_t(bool peep, bool cifg, bool zh, bool zc, const at::Tensor& gt, const at::Tensor& cp,
                const at::Tensor& cn, const at::Tensor& dh, const at::Tensor& carry, const at::Tensor& dy,
                const at::Tensor& dc, const at::Tensor& da, const at::Tensor& w, const at::Tensor& kh,
                const at::Tensor& kc, const at::Tensor& co) {
  with_flags(peep, cifg, zh, zc, [&](auto P, auto C, auto ZH, auto ZC) {
    lstm_bwd_impl<T, decltype(P)::value, decltype(C)::value, decltype(ZH)::value, decltype(ZC)::value>(
        gt, cp, cn, dh, carry, dy, dc, da, w, kh, kc, co);
  });
}

void lstm_forward(const at::Tensor& a, const c10::optional<at::Tensor>& ax_, const c10::optional<at::Tensor>& gt_,
                  const at::Tensor& cp, const at::Tensor& cn, const at::Tensor& h, bool cifg,
                  const c10::optional<at::Tensor>& peep_, const c10::optional<at::Tensor>& h_prev_,
                  const c10::optional<at::Tensor>& kh_, const c10::optional<at::Tensor>& kc_,
                  const c10::optional<at::Tensor>& cs_) {
  auto ax = opt(ax_), gt = opt(gt_), peep = opt(peep_), hp = opt(h_prev_), kh = opt(kh_), kc = opt(kc_),
       cs = opt(cs_);
  check({a, ax, gt, cp, cn, h, peep, hp, kh, kc, cs}, a);
  TORCH_CHECK(!cifg || !peep.defined(), "gatedrnn pointwise kernel: no peepholes with CIFG");
  const bool zh = kh.defined(), zc = kc.defined();
  TORCH_CHECK(!zh || hp.defined(), "kh needs h_prev");
  TORCH_CHECK(!zc || cs.defined(), "kc needs cs");
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "lstm_forward", [&] {
    lstm_fwd_t<scalar_t>(peep.defined(), cifg, zh, zc, a, ax, gt, cp, cn, h, peep, hp, kh, kc, cs);
  });
}

// The LSTM's forward over all T steps in one call, for a loop without keep masks, state dropout
// or layer norm: each step's recurrent product (onednn.h's product: oneDNN's on the packed weight,
// else MKL's on W^T) and lstm_forward's pass with the step's input pre-activation added, with no
// Python between steps. gx (T, B, G*H): the input pre-activations, biases in. Hs (T+1, B, H): h_0
// in, h_1 .. h_T out. With Gs (T, B, G*H), the gates of every step out and C (T+1, B, H) every c_t
// (c_0 in); without, no gates are written and c alternates between C[0] and C[1].
void lstm_sequence_forward(const at::Tensor& gx, const at::Tensor& Hs, const at::Tensor& C,
                           const c10::optional<at::Tensor>& Gs, const at::Tensor& w, bool packed, bool cifg,
                           const c10::optional<at::Tensor>& peep) {
  const int64_t T = gx.size(0);
  const bool save = Gs.has_value();
  TORCH_CHECK(gx.dim() == 3 && Hs.dim() == 3 && Hs.size(0) == T + 1 && C.size(0) >= (save ? T + 1 : 2) &&
                  (!save || Gs->size(0) >= T),
              "gatedrnn lstm_sequence_forward: expected gx (T, B, G*H), Hs (T+1, B, H), C (T+1 or 2, B, H) and "
              "Gs (T, B, G*H) or none; found T=", T, ", Hs ", Hs.sizes(), ", C ", C.sizes());
  at::Tensor out = packed ? at::Tensor() : at::empty({gx.size(1), gx.size(2)}, gx.options());
  const c10::optional<at::Tensor> none;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t j = save ? t : t % 2, jn = save ? t + 1 : (t + 1) % 2;
    const at::Tensor a = product(Hs.select(0, t), w, packed, out);
    lstm_forward(a, gx.select(0, t), save ? c10::optional<at::Tensor>(Gs->select(0, t)) : none, C.select(0, j),
                 C.select(0, jn), Hs.select(0, t + 1), cifg, peep, none, none, none, none);
  }
}

void lstm_backward(const at::Tensor& gt, const at::Tensor& cp, const at::Tensor& cn, const at::Tensor& dh,
                   const c10::optional<at::Tensor>& carry_, const c10::optional<at::Tensor>& dy_,
                   const at::Tensor& dc, const at::Tensor& da, bool cifg, const c10::optional<at::Tensor>& peep_,
                   const c10::optional<at::Tensor>& kh_, const c10::optional<at::Tensor>& kc_,
                   const c10::optional<at::Tensor>& carry_out_) {
  auto carry = opt(carry_), dy = opt(dy_), peep = opt(peep_), kh = opt(kh_), kc = opt(kc_), co = opt(carry_out_);
  check({gt, cp, cn, dh, carry, dy, dc, da, peep, kh, kc, co}, gt);
  TORCH_CHECK(!kh.defined() || co.defined(), "kh needs carry_out");
  AT_DISPATCH_FLOATING_TYPES(gt.scalar_type(), "lstm_backward", [&] {
    lstm_bwd_t<scalar_t>(peep.defined(), cifg, kh.defined(), kc.defined(), gt, cp, cn, dh, carry, dy, dc, da,
                         peep, kh, kc, co);
  });
}

// -- GRU: n = tanh(a_x,n + r * a_h,n), h = n + z (h_prev - n) -------------------------------
// gx (B, 3H): input pre-activations of the step; gh (B, 3H): the recurrent product (with b_hh).
// gt (B, 3H): r, z, n (out); ghn (B, H) or undefined: a_h,n kept for the backward (out).
// h (B, H): h_t (out), mixed with h_prev by kh.
template <typename T, bool KH>
void gru_fwd_impl(const at::Tensor& gx, const at::Tensor& gh, const at::Tensor& hp, const at::Tensor& gt,
                  const at::Tensor& ghn, const at::Tensor& h, const at::Tensor& kh) {
  const int64_t B = hp.size(0), H = hp.size(1);
  const T *GX = ptr<T>(gx), *GH = ptr<T>(gh), *HP = ptr<T>(hp), *KHp = ptr<T>(kh);
  T *GT = ptr<T>(gt), *GN = ptr<T>(ghn), *HO = ptr<T>(h);
  const bool save_n = GN != nullptr;
  rows(B, 3 * H, [&](int64_t b) {
    const T *xr = GX + b * 3 * H, *hr = GH + b * 3 * H;
    T* gr = GT + b * 3 * H;
    const int64_t q = b * H;
    const T *hpr = HP + q, *khr = KH ? KHp + q : hpr;
    T *gnr = save_n ? GN + q : gr, *hor = HO + q;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T r = sigm<T>(xr[j] + hr[j]), z = sigm<T>(xr[H + j] + hr[H + j]);
      const T hn_ = hr[2 * H + j];
      const T n = std::tanh(xr[2 * H + j] + r * hn_);
      const T p = hpr[j];
      T hn = n + z * (p - n);
      if (KH) hn = lerp<T>(hn, p, khr[j]);
      gr[j] = r;
      gr[H + j] = z;
      gr[2 * H + j] = n;
      if (save_n) gnr[j] = hn_;
      hor[j] = hn;
    }
  });
}

// dh, carry, dy as for the LSTM. dgx (B, 3H): dL/d(input pre-activations) (out); dgh (B, 3H): dL/d(the
// recurrent product) (out); carry_out (B, H): what reaches h_{t-1} other than through the product
// (dh z, and with kh its kept share) (out).
template <typename T, bool KH>
void gru_bwd_impl(const at::Tensor& gt, const at::Tensor& ghn, const at::Tensor& hp, const at::Tensor& dh,
                  const at::Tensor& carry, const at::Tensor& dy, const at::Tensor& dgx, const at::Tensor& dgh,
                  const at::Tensor& kh, const at::Tensor& carry_out) {
  const int64_t B = hp.size(0), H = hp.size(1);
  const T *GT = ptr<T>(gt), *GN = ptr<T>(ghn), *HP = ptr<T>(hp), *DH = ptr<T>(dh), *CA = ptr<T>(carry),
          *DY = ptr<T>(dy), *KHp = ptr<T>(kh);
  T *DX = ptr<T>(dgx), *DG = ptr<T>(dgh), *CO = ptr<T>(carry_out);
  const std::vector<T> zeros(H, T(0));
  rows(B, 3 * H, [&](int64_t b) {
    const T* gr = GT + b * 3 * H;
    T *xr = DX + b * 3 * H, *hr = DG + b * 3 * H;
    const int64_t q = b * H;
    const T *dhr = DH + q, *car = CA ? CA + q : zeros.data(), *dyr = DY ? DY + q : zeros.data(), *khr = KH ? KHp + q : dhr,
            *hpr = HP + q, *gnr = GN + q;
    T* cor = CO + q;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      T d = dhr[j] + car[j] + dyr[j];
      T kept = T(0);
      if (KH) {
        const T k = khr[j];
        kept = d * k;
        d = d * (T(1) - k);
      }
      const T r = gr[j], z = gr[H + j], n = gr[2 * H + j];
      const T dan = (d - d * z) * (T(1) - n * n);
      const T daz = d * (hpr[j] - n) * (z * (T(1) - z));
      const T dar = dan * gnr[j] * (r * (T(1) - r));
      xr[j] = dar;
      xr[H + j] = daz;
      xr[2 * H + j] = dan;
      hr[j] = dar;
      hr[H + j] = daz;
      hr[2 * H + j] = dan * r;
      cor[j] = d * z + kept;
    }
  });
}

void gru_forward(const at::Tensor& gx, const at::Tensor& gh, const at::Tensor& hp, const at::Tensor& gt,
                 const c10::optional<at::Tensor>& ghn_, const at::Tensor& h, const c10::optional<at::Tensor>& kh_) {
  auto ghn = opt(ghn_), kh = opt(kh_);
  check({gx, gh, hp, gt, ghn, h, kh}, gx);
  AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "gru_forward", [&] {
    if (kh.defined()) gru_fwd_impl<scalar_t, true>(gx, gh, hp, gt, ghn, h, kh);
    else gru_fwd_impl<scalar_t, false>(gx, gh, hp, gt, ghn, h, kh);
  });
}

void gru_backward(const at::Tensor& gt, const at::Tensor& ghn, const at::Tensor& hp, const at::Tensor& dh,
                  const c10::optional<at::Tensor>& carry_, const c10::optional<at::Tensor>& dy_, const at::Tensor& dgx,
                  const at::Tensor& dgh, const c10::optional<at::Tensor>& kh_, const at::Tensor& carry_out) {
  auto carry = opt(carry_), dy = opt(dy_), kh = opt(kh_);
  check({gt, ghn, hp, dh, carry, dy, dgx, dgh, kh, carry_out}, gt);
  AT_DISPATCH_FLOATING_TYPES(gt.scalar_type(), "gru_backward", [&] {
    if (kh.defined()) gru_bwd_impl<scalar_t, true>(gt, ghn, hp, dh, carry, dy, dgx, dgh, kh, carry_out);
    else gru_bwd_impl<scalar_t, false>(gt, ghn, hp, dh, carry, dy, dgx, dgh, kh, carry_out);
  });
}

const Register reg([](pybind11::module_& m) {
  m.def("lstm_forward", &lstm_forward);
  m.def("lstm_sequence_forward", &lstm_sequence_forward);
  m.def("lstm_backward", &lstm_backward);
  m.def("gru_forward", &gru_forward);
  m.def("gru_backward", &gru_backward);
});

}  // namespace
