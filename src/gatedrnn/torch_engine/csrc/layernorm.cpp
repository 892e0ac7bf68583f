// The layer-normalised LSTM step (loops/lstm.py, CompiledNormStep) as one pass per row: the
// input product's and the recurrent product's layer norms, the gates, c_t, c_t's layer norm and h_t,
// forward and backward (the input norm's backward, over every step at once, is layer_norm_backward).
//
// The eager step makes a dozen elementwise torch calls and two native_layer_norm calls per step
// (and their backward), each a pass over memory and a dispatch, each under ATen's parallel grain
// at two threads for a (32, 2048) block. Here one call does a step: each row of the batch is a
// few loops over its units (the statistics of a layer norm need the whole row before its output),
// all within the row's few kilobytes, and the rows are split across threads (common.h's rows).
//
// Shapes: B batch, H hidden, G gate blocks (4: i, f, g, o; CIFG 3: f, g, o), N = G*H.
// Layer norm of a row v of n units: v_hat = (v - mean) * rs with rs = 1/sqrt(var + eps) (the biased
// variance, as torch.nn.functional.layer_norm), then v_hat * gain (+ bias).
#include "common.h"
#include "lstm_unit.h"

namespace {

using namespace gatedrnn;

// the mean and 1/std of v[0..n) (two passes: the centred sum of squares, as native_layer_norm's accuracy)
template <typename T>
inline void moments(const T* v, int64_t n, T eps, T& mu, T& rs) {
  T s = T(0);
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += v[j];
  mu = s / T(n);
  T q = T(0);
#pragma omp simd reduction(+ : q)
  for (int64_t j = 0; j < n; ++j) {
    const T d = v[j] - mu;
    q += d * d;
  }
  rs = T(1) / std::sqrt(q / T(n) + eps);
}

// One row of the backward of a layer norm with a gain: dx[0..n) (out) from the gradient d and the
// input x of the row, with x's mean m and 1/std s from the forward; d * x_hat is added to acc (the
// gain's gradient) in the same pass.
template <typename T>
inline void row_backward(const T* d, const T* x, T m, T s, const T* gain, int64_t n, T* dx, T* acc) {
  T t1 = T(0), t2 = T(0);
#pragma omp simd reduction(+ : t1, t2)
  for (int64_t j = 0; j < n; ++j) {
    const T v = d[j] * gain[j], xh = (x[j] - m) * s;
    t1 += v;
    t2 += v * xh;
    acc[j] += d[j] * xh;
  }
  const T n1 = t1 / T(n), n2 = t2 / T(n);
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) dx[j] = s * (d[j] * gain[j] - n1 - (x[j] - m) * s * n2);
}

// r (B, N): the recurrent product before its layer norm (read); ax (B, N): the step's input
// product before its layer norm (read); gain (N): ln_weight_hh; gain_x (N): ln_weight_ih; bias (N):
// every constant added to the pre-activations. r_save (B, N) or undefined: a copy of r for the
// backward (out); mu, rs (B): r's statistics, mu_x, rs_x (B): ax's (out). gt (B, N): post-activation
// gates (out; first the pre-activations a = LN(r) gain + LN(ax) gain_x + bias). cp (B, H): c_{t-1};
// cn (B, H): the cell's c_t (out). tc (B, H): tanh(LN(c_t)) (out); cmu, crs (B): c_t's statistics
// (out); wc, bc (H): ln_weight_c, ln_bias_c. h (B, H): h_t (out; mixed with h_prev by kh). cs (B, H):
// c_t after zoneout by kc (out, only with kc). peep (3H): w_i, w_f, w_o (the output gate's looks at
// c_t before its norm).
template <typename T, bool PEEP, bool CIFG, bool KH, bool KC>
void ln_fwd_impl(const at::Tensor& r, const at::Tensor& ax, const at::Tensor& gain, const at::Tensor& gain_x,
                 const at::Tensor& bias, const at::Tensor& r_save, const at::Tensor& mu, const at::Tensor& rs,
                 const at::Tensor& mu_x, const at::Tensor& rs_x, const at::Tensor& gt, const at::Tensor& cp,
                 const at::Tensor& cn, const at::Tensor& tc, const at::Tensor& cmu, const at::Tensor& crs,
                 const at::Tensor& wc, const at::Tensor& bc, const at::Tensor& h, const at::Tensor& peep,
                 const at::Tensor& h_prev, const at::Tensor& kh, const at::Tensor& kc, const at::Tensor& cs,
                 double eps_) {
  const int64_t B = cp.size(0), H = cp.size(1), G = CIFG ? 3 : 4, N = G * H;
  const T eps = T(eps_);
  const T *R = ptr<T>(r), *AX = ptr<T>(ax), *GA = ptr<T>(gain), *GI = ptr<T>(gain_x), *BI = ptr<T>(bias),
          *CP = ptr<T>(cp), *WC = ptr<T>(wc),
          *BC = ptr<T>(bc), *W = ptr<T>(peep), *HP = ptr<T>(h_prev), *KHp = ptr<T>(kh), *KCp = ptr<T>(kc);
  T *RS = ptr<T>(r_save), *MU = ptr<T>(mu), *RSD = ptr<T>(rs), *MUX = ptr<T>(mu_x), *RSX = ptr<T>(rs_x),
    *GT = ptr<T>(gt), *CN = ptr<T>(cn),
    *TC = ptr<T>(tc), *CMU = ptr<T>(cmu), *CRS = ptr<T>(crs), *HO = ptr<T>(h), *CS = ptr<T>(cs);
  rows(B, N, [&](int64_t b) {
    const T *rr = R + b * N, *xr = AX + b * N;
    T* gr = GT + b * N;
    T m, s, mx, sx;
    moments(rr, N, eps, m, s);
    moments(xr, N, eps, mx, sx);
    MU[b] = m;
    RSD[b] = s;
    MUX[b] = mx;
    RSX[b] = sx;
    if (RS) std::copy(rr, rr + N, RS + b * N);
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) gr[j] = (rr[j] - m) * s * GA[j] + ((xr[j] - mx) * sx * GI[j] + BI[j]);
    const int64_t q = b * H;
    const T *cpr = CP + q, *w = W;
    T* cnr = CN + q;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T c0 = cpr[j];
      const T c = lstm_cell_forward<T, PEEP, CIFG>(gr, gr, H, j, c0, w);
      T ao = gr[(G - 1) * H + j];
      if (PEEP) ao += c * w[2 * H + j];
      gr[(G - 1) * H + j] = sigm<T>(ao);
      cnr[j] = c;
    }
    T cm, cr;
    moments(cnr, H, eps, cm, cr);
    CMU[b] = cm;
    CRS[b] = cr;
    T *tcr = TC + q, *hr = HO + q, *csr = KC ? CS + q : cnr;
    const T *hpr = KH ? HP + q : cpr, *khr = KH ? KHp + q : cpr, *kcr = KC ? KCp + q : cpr;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T c = cnr[j];
      const T t = std::tanh((c - cm) * cr * WC[j] + BC[j]);
      tcr[j] = t;
      T hn = gr[(G - 1) * H + j] * t;
      if (KH) hn = lerp<T>(hn, hpr[j], khr[j]);
      hr[j] = hn;
      if (KC) csr[j] = lerp<T>(c, cpr[j], kcr[j]);
    }
  });
}

// gt, cp, cn, tc, cmu, crs as saved by the forward; wc (H): ln_weight_c. dh (B, H): dL/dh_t from the
// next step's product; carry (B, H) or undefined: what zoneout kept of the gradient at h; dy (B, H) or
// undefined: dL/dy_t. dc (B, H): dL/dc_t in, dL/dc_{t-1} out. da (B, N): dL/da (out); dn (B, H):
// dL/d LN(c_t) (out, for the gains). r, mu, rs, gain: the recurrent product and its layer norm as
// the forward saw them; dr (B, N): dL/dr (out), what the product's backward takes. carry_out (B, H):
// kh's share of this step's dh (out, only with kh). acc (threads, N + 2H): each thread's running sums
// over its rows of the gains' and bias's gradients, added to (ln_weight_hh: da r_hat; ln_weight_c:
// dn c_hat; ln_bias_c: dn), so the backward needs no pass over every step's saved r after the loop.
template <typename T, bool PEEP, bool CIFG, bool KH, bool KC>
void ln_bwd_impl(const at::Tensor& gt, const at::Tensor& cp, const at::Tensor& cn, const at::Tensor& tc,
                 const at::Tensor& cmu, const at::Tensor& crs, const at::Tensor& wc, const at::Tensor& dh,
                 const at::Tensor& carry, const at::Tensor& dy, const at::Tensor& dc, const at::Tensor& da,
                 const at::Tensor& dn, const at::Tensor& r, const at::Tensor& mu, const at::Tensor& rs,
                 const at::Tensor& gain, const at::Tensor& dr, const at::Tensor& peep, const at::Tensor& kh,
                 const at::Tensor& kc, const at::Tensor& carry_out, const at::Tensor& acc) {
  const int64_t B = cp.size(0), H = cp.size(1), G = CIFG ? 3 : 4, N = G * H;
  T* ACC = ptr<T>(acc);
  const T *GT = ptr<T>(gt), *CP = ptr<T>(cp), *CN = ptr<T>(cn), *TC = ptr<T>(tc), *CMU = ptr<T>(cmu),
          *CRS = ptr<T>(crs), *WC = ptr<T>(wc), *DH = ptr<T>(dh), *CA = ptr<T>(carry), *DY = ptr<T>(dy),
          *R = ptr<T>(r), *MU = ptr<T>(mu), *RSD = ptr<T>(rs), *GA = ptr<T>(gain), *W = ptr<T>(peep),
          *KHp = ptr<T>(kh), *KCp = ptr<T>(kc);
  T *DC = ptr<T>(dc), *DA = ptr<T>(da), *DN = ptr<T>(dn), *DR = ptr<T>(dr), *CO = ptr<T>(carry_out);
  const std::vector<T> zeros(H, T(0));  // in place of an absent carry or dy
  rows(B, N, [&](int64_t b) {
    const int64_t q = b * H;
    const T *gr = GT + b * N, *dhr = DH + q, *car = CA ? CA + q : zeros.data(), *dyr = DY ? DY + q : zeros.data(),
            *khr = KH ? KHp + q : dhr, *kcr = KC ? KCp + q : dhr, *cpr = CP + q, *cnr = CN + q, *tcr = TC + q,
            *w = W;
    T *dar = DA + b * N, *dcr = DC + q, *dnr = DN + q, *cor = KH ? CO + q : dnr;
    const T cm = CMU[b], cr = CRS[b];
    T* ac = ACC + at::get_thread_num() * (N + 2 * H);  // this thread's sums: no other thread adds to them
    T *gw = ac + N, *gb = ac + N + H;
    // 1: the output gate's and LN(c_t)'s gradients, and the sums c_t's layer norm backward needs
    T s1 = T(0), s2 = T(0);
#pragma omp simd reduction(+ : s1, s2)
    for (int64_t j = 0; j < H; ++j) {
      T d = dhr[j] + car[j] + dyr[j];
      if (KH) {
        const T k = khr[j];
        cor[j] = d * k;
        d = d * (T(1) - k);
      }
      const T o = gr[(G - 1) * H + j], t = tcr[j];
      dar[(G - 1) * H + j] = d * t * (o * (T(1) - o));
      const T dnj = d * o * (T(1) - t * t);
      dnr[j] = dnj;
      const T dx = dnj * WC[j], xh = (cnr[j] - cm) * cr;
      s1 += dx;
      s2 += dx * xh;
      gw[j] += dnj * xh;
      gb[j] += dnj;
    }
    const T m1 = s1 / T(H), m2 = s2 / T(H);
    // 2: dL/dc_t, the other gates, dL/dc_{t-1}
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      T dcj = dcr[j], carry_c = T(0);
      if (KC) {
        const T k = kcr[j];
        carry_c = dcj * k;
        dcj = dcj * (T(1) - k);
      }
      const T dx = dnr[j] * WC[j], xh = (cnr[j] - cm) * cr;
      dcj += cr * (dx - m1 - xh * m2);
      const T dao = dar[(G - 1) * H + j];
      if (PEEP) dcj += dao * w[2 * H + j];
      T dcn = lstm_cell_backward<T, PEEP, CIFG>(gr, dar, H, j, dcj, cpr[j], w);
      if (KC) dcn += carry_c;
      dcr[j] = dcn;
    }
    // 3: through the recurrent product's layer norm
    row_backward<T>(dar, R + b * N, MU[b], RSD[b], GA, N, DR + b * N, ac);
  });
}

template <typename T>
void ln_fwd_t(bool peep, bool cifg, bool zh, bool zc, const at::Tensor& r, const at::Tensor& ax,
              const at::Tensor& gain, const at::Tensor& gain_x, const at::Tensor& bias, const at::Tensor& r_save,
              const at::Tensor& mu, const at::Tensor& rs, const at::Tensor& mu_x, const at::Tensor& rs_x,
              const at::Tensor& gt, const at::Tensor& cp, const at::Tensor& cn, const at::Tensor& tc,
              const at::Tensor& cmu, const at::Tensor& crs, const at::Tensor& wc, const at::Tensor& bc,
              const at::Tensor& h, const at::Tensor& w, const at::Tensor& hp, const at::Tensor& kh,
              const at::Tensor& kc, const at::Tensor& cs, double eps) {
  with_flags(peep, cifg, zh, zc, [&](auto P, auto C, auto ZH, auto ZC) {
    ln_fwd_impl<T, decltype(P)::value, decltype(C)::value, decltype(ZH)::value, decltype(ZC)::value>(
        r, ax, gain, gain_x, bias, r_save, mu, rs, mu_x, rs_x, gt, cp, cn, tc, cmu, crs, wc, bc, h, w, hp, kh, kc, cs,
        eps);
  });
}

template <typename T>
void ln_bwd_t(bool peep, bool cifg, bool zh, bool zc, const at::Tensor& gt, const at::Tensor& cp,
              const at::Tensor& cn, const at::Tensor& tc, const at::Tensor& cmu, const at::Tensor& crs,
              const at::Tensor& wc, const at::Tensor& dh, const at::Tensor& carry, const at::Tensor& dy,
              const at::Tensor& dc, const at::Tensor& da, const at::Tensor& dn, const at::Tensor& r,
              const at::Tensor& mu, const at::Tensor& rs, const at::Tensor& gain, const at::Tensor& dr,
              const at::Tensor& w, const at::Tensor& kh, const at::Tensor& kc, const at::Tensor& co,
              const at::Tensor& acc) {
  with_flags(peep, cifg, zh, zc, [&](auto P, auto C, auto ZH, auto ZC) {
    ln_bwd_impl<T, decltype(P)::value, decltype(C)::value, decltype(ZH)::value, decltype(ZC)::value>(
        gt, cp, cn, tc, cmu, crs, wc, dh, carry, dy, dc, da, dn, r, mu, rs, gain, dr, w, kh, kc, co, acc);
  });
}

void lstm_ln_forward(const at::Tensor& r, const at::Tensor& ax, const at::Tensor& gain, const at::Tensor& gain_x,
                     const at::Tensor& bias, const c10::optional<at::Tensor>& r_save_, const at::Tensor& mu,
                     const at::Tensor& rs, const at::Tensor& mu_x, const at::Tensor& rs_x,
                     const at::Tensor& gt, const at::Tensor& cp, const at::Tensor& cn, const at::Tensor& tc,
                     const at::Tensor& cmu, const at::Tensor& crs, const at::Tensor& wc, const at::Tensor& bc,
                     const at::Tensor& h, bool cifg, const c10::optional<at::Tensor>& peep_,
                     const c10::optional<at::Tensor>& h_prev_, const c10::optional<at::Tensor>& kh_,
                     const c10::optional<at::Tensor>& kc_, const c10::optional<at::Tensor>& cs_, double eps) {
  auto r_save = opt(r_save_), peep = opt(peep_), hp = opt(h_prev_), kh = opt(kh_), kc = opt(kc_), cs = opt(cs_);
  check({r, ax, gain, gain_x, bias, r_save, mu, rs, mu_x, rs_x, gt, cp, cn, tc, cmu, crs, wc, bc, h, peep, hp, kh, kc,
         cs}, r);
  TORCH_CHECK(!cifg || !peep.defined(), "gatedrnn layer-norm kernel: no peepholes with CIFG");
  TORCH_CHECK(cp.size(1) > 0, "gatedrnn layer-norm kernel: no units to normalise");
  const bool zh = kh.defined(), zc = kc.defined();
  TORCH_CHECK(!zh || hp.defined(), "kh needs h_prev");
  TORCH_CHECK(!zc || cs.defined(), "kc needs cs");
  AT_DISPATCH_FLOATING_TYPES(r.scalar_type(), "lstm_ln_forward", [&] {
    ln_fwd_t<scalar_t>(peep.defined(), cifg, zh, zc, r, ax, gain, gain_x, bias, r_save, mu, rs, mu_x, rs_x, gt, cp,
                       cn, tc, cmu, crs, wc, bc,
                       h, peep, hp, kh, kc, cs, eps);
  });
}

void lstm_ln_backward(const at::Tensor& gt, const at::Tensor& cp, const at::Tensor& cn, const at::Tensor& tc,
                      const at::Tensor& cmu, const at::Tensor& crs, const at::Tensor& wc, const at::Tensor& dh,
                      const c10::optional<at::Tensor>& carry_, const c10::optional<at::Tensor>& dy_,
                      const at::Tensor& dc, const at::Tensor& da, const at::Tensor& dn, const at::Tensor& r,
                      const at::Tensor& mu, const at::Tensor& rs, const at::Tensor& gain, const at::Tensor& dr,
                      bool cifg, const c10::optional<at::Tensor>& peep_, const c10::optional<at::Tensor>& kh_,
                      const c10::optional<at::Tensor>& kc_, const c10::optional<at::Tensor>& carry_out_,
                      const at::Tensor& acc) {
  auto carry = opt(carry_), dy = opt(dy_), peep = opt(peep_), kh = opt(kh_), kc = opt(kc_), co = opt(carry_out_);
  check({gt, cp, cn, tc, cmu, crs, wc, dh, carry, dy, dc, da, dn, r, mu, rs, gain, dr, peep, kh, kc, co, acc}, gt);
  TORCH_CHECK(acc.dim() == 2 && acc.size(0) >= at::get_num_threads() && acc.size(1) == gt.size(1) + 2 * cp.size(1),
              "gatedrnn layer-norm kernel: acc must be (threads, N + 2H)");
  TORCH_CHECK(!cifg || !peep.defined(), "gatedrnn layer-norm kernel: no peepholes with CIFG");
  TORCH_CHECK(cp.size(1) > 0, "gatedrnn layer-norm kernel: no units to normalise");
  TORCH_CHECK(!kh.defined() || co.defined(), "kh needs carry_out");
  AT_DISPATCH_FLOATING_TYPES(gt.scalar_type(), "lstm_ln_backward", [&] {
    ln_bwd_t<scalar_t>(peep.defined(), cifg, kh.defined(), kc.defined(), gt, cp, cn, tc, cmu, crs, wc, dh, carry, dy,
                       dc, da, dn, r, mu, rs, gain, dr, peep, kh, kc, co, acc);
  });
}

// The backward of a layer norm with a gain over the rows of d, x (M, N) (the input product's, over
// every step at once): dx (M, N) (out), and each thread's sums of d x_hat over its rows added to its
// row of acc (threads, N), the gain's gradient, in the same pass (ATen's backward makes a second
// pass over d and x for it). mu, rs (M): x's statistics from the forward.
template <typename T>
void rows_bwd_impl(const at::Tensor& d, const at::Tensor& x, const at::Tensor& mu, const at::Tensor& rs,
                   const at::Tensor& gain, const at::Tensor& dx, const at::Tensor& acc) {
  const int64_t M = d.size(0), N = d.size(1);
  const T *D = ptr<T>(d), *X = ptr<T>(x), *MU = ptr<T>(mu), *RSD = ptr<T>(rs), *GA = ptr<T>(gain);
  T *DX = ptr<T>(dx), *ACC = ptr<T>(acc);
  rows(M, N, [&](int64_t b) {
    row_backward<T>(D + b * N, X + b * N, MU[b], RSD[b], GA, N, DX + b * N, ACC + at::get_thread_num() * N);
  });
}

void layer_norm_backward(const at::Tensor& d, const at::Tensor& x, const at::Tensor& mu, const at::Tensor& rs,
                         const at::Tensor& gain, const at::Tensor& dx, const at::Tensor& acc) {
  check({d, x, mu, rs, gain, dx, acc}, d);
  TORCH_CHECK(d.dim() == 2 && d.size(1) > 0, "gatedrnn layer-norm kernel: d must be (rows, units > 0)");
  TORCH_CHECK(acc.dim() == 2 && acc.size(0) >= at::get_num_threads() && acc.size(1) == d.size(1),
              "gatedrnn layer-norm kernel: acc must be (threads, N)");
  AT_DISPATCH_FLOATING_TYPES(d.scalar_type(), "layer_norm_backward", [&] {
    rows_bwd_impl<scalar_t>(d, x, mu, rs, gain, dx, acc);
  });
}

const Register reg([](pybind11::module_& m) {
  m.def("layer_norm_backward", &layer_norm_backward);
  m.def("lstm_ln_forward", &lstm_ln_forward);
  m.def("lstm_ln_backward", &lstm_ln_backward);
});

}  // namespace
