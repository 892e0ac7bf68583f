// The cells whose recurrence is elementwise: minGRU, minLSTM and IndRNN. None reads h_{t-1}
// through a matrix, so after the input product over all steps (gx = x W_ih^T + b, in
// loops/minrnn.py and loops/indrnn.py) a whole sequence's gates and recurrence are one call,
// and so is its backward. The eager loops make a dozen or more passes over (T, B, G*H) tensors
// and one torch call per step each way; here each batch row is one thread's work (common.h
// rows), time runs sequentially inside it and the hidden units are the vectorised inner loop,
// so gx is read once per direction and each step's state stays in the cache.
//
// Shapes: T steps, B batch, H hidden, G gate blocks (minGRU 2: z, h; minLSTM 3: f, i, h;
// IndRNN 1). gx (T, B, G*H); hs (T+1, B, H): h_0 (in), h_1 .. h_T (out). Keep masks kh
// (zoneout, padding) are (T, B, H) or (T, B, 1), folded as the eager loops fold them:
//   min*:   h_t = b' + a' h_{t-1},  a' = lerp(a, 1, k),  b' = (1 - k) b
//   IndRNN: h_t = lerp(act(a_t), h_{t-1}, k)
// Every tensor is contiguous and of one dtype (float or double), checked in check().
#include "common.h"

namespace {

using namespace gatedrnn;

// g(v): v + 1/2 for v >= 0, sigma(v) below (the paper's log-space-friendly activation)
template <typename T>
inline T gact(T v) { return v >= T(0) ? v + T(0.5) : sigm<T>(v); }

// g' read from g's output, as the cell and the eager loop read it: 1 where ht >= 1/2
template <typename T>
inline T gder(T ht) { return ht >= T(0.5) ? T(1) : ht * (T(1) - ht); }

// minLSTM's f' = f / (f + i) = sigma(log sigma(a_f) - log sigma(a_i)), f = sigma(a_f), i = sigma(a_i),
// written as (1 + e_i) / (2 + e_i + e_f) (e = exp(-a)) with numerator and denominator scaled by
// exp(-m), m = max(-a_f, -a_i, 0): no exponent above 0, and the denominator is at least 1.
template <typename T>
inline T fprime(T af, T ai) {
  const T m = std::max(std::max(-af, -ai), T(0));
  const T q = std::exp(-m), pi = std::exp(-ai - m), pf = std::exp(-af - m);
  return (q + pi) / (T(2) * q + pi + pf);
}

// The keep mask's value for unit j of a row: kr[j] for (T, B, H) masks, kr[0] for (T, B, 1)
template <int K, typename T>
inline T keep_at(const T* kr, int64_t j) { return K == 2 ? kr[j] : kr[0]; }

// -- minGRU / minLSTM ---------------------------------------------------------------------------
// The step's coefficients h_t = bc + ac h_{t-1} (before the keep mask), and z (minGRU's z,
// minLSTM's f') and ht = g(a_h), from a row of gx
template <typename T, bool LSTM>
inline void coefficients(const T* a, int64_t j, int64_t H, T& z, T& ht, T& ac, T& bc) {
  if (LSTM) {
    z = fprime<T>(a[j], a[H + j]);
    ht = gact<T>(a[2 * H + j]);
    ac = z;
    bc = (T(1) - z) * ht;
  } else {
    z = sigm<T>(a[j]);
    ht = gact<T>(a[H + j]);
    ac = T(1) - z;
    bc = z * ht;
  }
}

// K: 0 no keep mask, 1 a (T, B, 1) mask, 2 a (T, B, H) mask
template <typename T, bool LSTM, int K>
void min_fwd_impl(const at::Tensor& gx, const at::Tensor& hs, const at::Tensor& kh) {
  const int64_t S = gx.size(0), B = gx.size(1), H = hs.size(2), G = LSTM ? 3 : 2;
  const int64_t KW = K == 2 ? H : 1;
  const T *GX = ptr<T>(gx), *KH = ptr<T>(kh);
  T* HS = ptr<T>(hs);
  rows(B, S * G * H, [&](int64_t b) {
    for (int64_t t = 0; t < S; ++t) {
      const T* a = GX + (t * B + b) * G * H;
      const T* hp = HS + (t * B + b) * H;
      T* hn = HS + ((t + 1) * B + b) * H;
      const T* kr = K ? KH + (t * B + b) * KW : nullptr;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        T z, ht, ac, bc;
        coefficients<T, LSTM>(a, j, H, z, ht, ac, bc);
        if (K) {
          const T k = keep_at<K>(kr, j);
          ac = lerp<T>(ac, T(1), k);
          bc = bc * (T(1) - k);
        }
        hn[j] = bc + ac * hp[j];
      }
    }
  });
}

// dy (T, B, H) or undefined: dL/dy_t. dh (B, H): dL/dh_T in, dL/dh_0 out. da (T, B, G*H): dL/dgx
// (out). The reverse recurrence D_t = dy_t + a'_{t+1} D_{t+1}; the gates take E_t = (1 - k_t) D_t.
template <typename T, bool LSTM, int K>
void min_bwd_impl(const at::Tensor& gx, const at::Tensor& hs, const at::Tensor& dy, const at::Tensor& dh,
                  const at::Tensor& da, const at::Tensor& kh) {
  const int64_t S = gx.size(0), B = gx.size(1), H = hs.size(2), G = LSTM ? 3 : 2;
  const int64_t KW = K == 2 ? H : 1;
  const T *GX = ptr<T>(gx), *HS = ptr<T>(hs), *DY = ptr<T>(dy), *KH = ptr<T>(kh);
  T *DH = ptr<T>(dh), *DA = ptr<T>(da);
  const std::vector<T> zeros(H, T(0));  // in place of an absent dy
  rows(B, S * G * H, [&](int64_t b) {
    T* d = DH + b * H;  // a'_{t+1} D_{t+1}, what reaches h_t from later steps
    for (int64_t t = S - 1; t >= 0; --t) {
      const T* a = GX + (t * B + b) * G * H;
      const T* hp = HS + (t * B + b) * H;
      const T* dyr = DY ? DY + (t * B + b) * H : zeros.data();
      const T* kr = K ? KH + (t * B + b) * KW : nullptr;
      T* out = DA + (t * B + b) * G * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        T z, ht, ac, bc;
        coefficients<T, LSTM>(a, j, H, z, ht, ac, bc);
        const T D = d[j] + dyr[j];
        T E = D;
        if (K) {
          const T k = keep_at<K>(kr, j);
          ac = lerp<T>(ac, T(1), k);
          E = D * (T(1) - k);
        }
        const T zz = z * (T(1) - z);
        if (LSTM) {  // h = f' h_prev + (1 - f') ht, f' = sigma(log sigma(a_f) - log sigma(a_i))
          const T dd = (hp[j] - ht) * E * zz;
          out[j] = dd * sigm<T>(-a[j]);
          out[H + j] = -(dd * sigm<T>(-a[H + j]));
          out[2 * H + j] = (T(1) - z) * E * gder<T>(ht);
        } else {  // h = (1 - z) h_prev + z ht
          out[j] = (ht - hp[j]) * E * zz;
          out[H + j] = E * z * gder<T>(ht);
        }
        d[j] = ac * D;
      }
    }
  });
}

// the template for a call's (cell, keep kind)
template <typename T>
void min_fwd_t(bool lstm, int K, const at::Tensor& gx, const at::Tensor& hs, const at::Tensor& kh) {
#define GATEDRNN_F(L, KK) \
  if (lstm == L && K == KK) return min_fwd_impl<T, L, KK>(gx, hs, kh);
  GATEDRNN_F(false, 0) GATEDRNN_F(false, 1) GATEDRNN_F(false, 2)
  GATEDRNN_F(true, 0) GATEDRNN_F(true, 1) GATEDRNN_F(true, 2)
#undef GATEDRNN_F
}

template <typename T>
void min_bwd_t(bool lstm, int K, const at::Tensor& gx, const at::Tensor& hs, const at::Tensor& dy,
               const at::Tensor& dh, const at::Tensor& da, const at::Tensor& kh) {
#define GATEDRNN_B(L, KK) \
  if (lstm == L && K == KK) return min_bwd_impl<T, L, KK>(gx, hs, dy, dh, da, kh);
  GATEDRNN_B(false, 0) GATEDRNN_B(false, 1) GATEDRNN_B(false, 2)
  GATEDRNN_B(true, 0) GATEDRNN_B(true, 1) GATEDRNN_B(true, 2)
#undef GATEDRNN_B
}

int keep_kind(const at::Tensor& kh, int64_t H) {
  if (!kh.defined()) return 0;
  TORCH_CHECK(kh.dim() == 3 && (kh.size(2) == 1 || kh.size(2) == H), "keep mask: expected (T, B, 1) or (T, B, H)");
  return kh.size(2) == H && H != 1 ? 2 : 1;
}

void check_min(const at::Tensor& gx, const at::Tensor& hs, const at::Tensor& kh, bool lstm) {
  const int64_t G = lstm ? 3 : 2;
  TORCH_CHECK(gx.dim() == 3 && hs.dim() == 3 && hs.size(0) == gx.size(0) + 1 && hs.size(1) == gx.size(1) &&
                  gx.size(2) == G * hs.size(2),
              "minrnn kernel: expected gx (T, B, G*H) and hs (T+1, B, H)");
  TORCH_CHECK(!kh.defined() || (kh.size(0) == gx.size(0) && kh.size(1) == gx.size(1)),
              "minrnn kernel: keep mask of another length or batch");
}

// min_forward(gx, hs, lstm, kh): writes hs[1:] from hs[0]
void min_forward(const at::Tensor& gx, const at::Tensor& hs, bool lstm, const c10::optional<at::Tensor>& kh_) {
  auto kh = opt(kh_);
  check({gx, hs, kh}, gx);
  check_min(gx, hs, kh, lstm);
  const int K = keep_kind(kh, hs.size(2));
  AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "min_forward", [&] { min_fwd_t<scalar_t>(lstm, K, gx, hs, kh); });
}

void min_backward(const at::Tensor& gx, const at::Tensor& hs, const c10::optional<at::Tensor>& dy_,
                  const at::Tensor& dh, const at::Tensor& da, bool lstm, const c10::optional<at::Tensor>& kh_) {
  auto dy = opt(dy_), kh = opt(kh_);
  check({gx, hs, dy, dh, da, kh}, gx);
  check_min(gx, hs, kh, lstm);
  TORCH_CHECK(da.sizes() == gx.sizes() && dh.sizes() == hs[0].sizes() && (!dy.defined() || dy.sizes() == hs.slice(0, 1).sizes()),
              "minrnn kernel: da, dh or dy of the wrong shape");
  const int K = keep_kind(kh, hs.size(2));
  AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "min_backward",
                             [&] { min_bwd_t<scalar_t>(lstm, K, gx, hs, dy, dh, da, kh); });
}

// -- IndRNN: h_t = act(gx_t + w_hh * (h_{t-1} * mask) ), gx with both biases ---------------------
// w (H): the recurrent weights; mask (B, H) or undefined: state dropout of what w reads. With a keep
// mask, gx is overwritten with act(a_t) (the step's output before the mask), which the backward
// reads; without, that is h_t itself.
template <typename T, bool RELU, bool MASK, int K>
void ind_fwd_impl(const at::Tensor& gx, const at::Tensor& hs, const at::Tensor& w, const at::Tensor& mask,
                  const at::Tensor& kh) {
  const int64_t S = gx.size(0), B = gx.size(1), H = hs.size(2);
  const int64_t KW = K == 2 ? H : 1;
  const T *W = ptr<T>(w), *M = ptr<T>(mask), *KH = ptr<T>(kh);
  T *GX = ptr<T>(gx), *HS = ptr<T>(hs);
  rows(B, S * H, [&](int64_t b) {
    const T* mr = MASK ? M + b * H : W;
    for (int64_t t = 0; t < S; ++t) {
      T* a = GX + (t * B + b) * H;
      const T* hp = HS + (t * B + b) * H;
      T* hn = HS + ((t + 1) * B + b) * H;
      const T* kr = K ? KH + (t * B + b) * KW : nullptr;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T hread = MASK ? hp[j] * mr[j] : hp[j];
        const T v = a[j] + W[j] * hread;
        const T y = RELU ? (v > T(0) ? v : T(0)) : std::tanh(v);
        if (K) {
          a[j] = y;
          hn[j] = lerp<T>(y, hp[j], keep_at<K>(kr, j));
        } else {
          hn[j] = y;
        }
      }
    }
  });
}

// act (T, B, H): each step's act(a_t) (hs[1:] without a keep mask). dh (B, H): dL/dh_T in, dL/dh_0
// out. da (T, B, H): dL/da (out). dw (B, H): each row's sum over steps of da * h_read (out);
// db (B, H) or undefined: each row's sum over steps of da (out).
template <typename T, bool RELU, bool MASK, int K>
void ind_bwd_impl(const at::Tensor& act, const at::Tensor& hs, const at::Tensor& dy, const at::Tensor& dh,
                  const at::Tensor& da, const at::Tensor& w, const at::Tensor& mask, const at::Tensor& kh,
                  const at::Tensor& dw, const at::Tensor& db) {
  const int64_t S = act.size(0), B = act.size(1), H = hs.size(2);
  const int64_t KW = K == 2 ? H : 1;
  const T *A = ptr<T>(act), *HS = ptr<T>(hs), *DY = ptr<T>(dy), *W = ptr<T>(w), *M = ptr<T>(mask), *KH = ptr<T>(kh);
  T *DH = ptr<T>(dh), *DA = ptr<T>(da), *DW = ptr<T>(dw), *DB = ptr<T>(db);
  const std::vector<T> zeros(H, T(0));
  rows(B, S * H, [&](int64_t b) {
    T *d = DH + b * H, *dwr = DW + b * H, *dbr = DB ? DB + b * H : nullptr;
    const T* mr = MASK ? M + b * H : W;
    std::vector<T> sb(H, T(0));  // the bias sum, written to db at the end where asked for
    T* sbr = sb.data();
    for (int64_t j = 0; j < H; ++j) dwr[j] = T(0);
    for (int64_t t = S - 1; t >= 0; --t) {
      const T* ar = A + (t * B + b) * H;
      const T* hp = HS + (t * B + b) * H;
      const T* dyr = DY ? DY + (t * B + b) * H : zeros.data();
      const T* kr = K ? KH + (t * B + b) * KW : nullptr;
      T* out = DA + (t * B + b) * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        T D = d[j] + dyr[j], kept = T(0);
        if (K) {
          const T k = keep_at<K>(kr, j);
          kept = D * k;
          D = D * (T(1) - k);
        }
        const T y = ar[j];
        const T g = RELU ? (y > T(0) ? D : T(0)) : (T(1) - y * y) * D;
        out[j] = g;
        const T m = MASK ? mr[j] : T(1);
        dwr[j] += g * (hp[j] * m);
        sbr[j] += g;
        d[j] = g * W[j] * m + kept;
      }
    }
    if (dbr)
      for (int64_t j = 0; j < H; ++j) dbr[j] = sbr[j];
  });
}

template <typename T>
void ind_fwd_t(bool relu, bool M, int K, const at::Tensor& gx, const at::Tensor& hs, const at::Tensor& w,
               const at::Tensor& mask, const at::Tensor& kh) {
#define GATEDRNN_F(R, MM, KK) \
  if (relu == R && M == MM && K == KK) return ind_fwd_impl<T, R, MM, KK>(gx, hs, w, mask, kh);
#define GATEDRNN_F3(R, MM) GATEDRNN_F(R, MM, 0) GATEDRNN_F(R, MM, 1) GATEDRNN_F(R, MM, 2)
  GATEDRNN_F3(false, false) GATEDRNN_F3(false, true) GATEDRNN_F3(true, false) GATEDRNN_F3(true, true)
#undef GATEDRNN_F3
#undef GATEDRNN_F
}

template <typename T>
void ind_bwd_t(bool relu, bool M, int K, const at::Tensor& act, const at::Tensor& hs, const at::Tensor& dy,
               const at::Tensor& dh, const at::Tensor& da, const at::Tensor& w, const at::Tensor& mask,
               const at::Tensor& kh, const at::Tensor& dw, const at::Tensor& db) {
#define GATEDRNN_B(R, MM, KK) \
  if (relu == R && M == MM && K == KK) return ind_bwd_impl<T, R, MM, KK>(act, hs, dy, dh, da, w, mask, kh, dw, db);
#define GATEDRNN_B3(R, MM) GATEDRNN_B(R, MM, 0) GATEDRNN_B(R, MM, 1) GATEDRNN_B(R, MM, 2)
  GATEDRNN_B3(false, false) GATEDRNN_B3(false, true) GATEDRNN_B3(true, false) GATEDRNN_B3(true, true)
#undef GATEDRNN_B3
#undef GATEDRNN_B
}

void ind_forward(const at::Tensor& gx, const at::Tensor& hs, const at::Tensor& w, bool relu,
                 const c10::optional<at::Tensor>& mask_, const c10::optional<at::Tensor>& kh_) {
  auto mask = opt(mask_), kh = opt(kh_);
  check({gx, hs, w, mask, kh}, gx);
  const int64_t H = hs.size(2);
  TORCH_CHECK(gx.dim() == 3 && hs.size(0) == gx.size(0) + 1 && hs.size(1) == gx.size(1) && gx.size(2) == H &&
                  w.numel() == H && (!mask.defined() || mask.sizes() == hs[0].sizes()) &&
                  (!kh.defined() || (kh.size(0) == gx.size(0) && kh.size(1) == gx.size(1))),
              "indrnn kernel: expected gx (T, B, H), hs (T+1, B, H), w (H), mask (B, H), keep (T, B, H|1)");
  const int K = keep_kind(kh, H);
  const bool M = mask.defined();
  AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "ind_forward",
                             [&] { ind_fwd_t<scalar_t>(relu, M, K, gx, hs, w, mask, kh); });
}

void ind_backward(const at::Tensor& act, const at::Tensor& hs, const c10::optional<at::Tensor>& dy_,
                  const at::Tensor& dh, const at::Tensor& da, const at::Tensor& w, bool relu,
                  const c10::optional<at::Tensor>& mask_, const c10::optional<at::Tensor>& kh_, const at::Tensor& dw,
                  const c10::optional<at::Tensor>& db_) {
  auto dy = opt(dy_), mask = opt(mask_), kh = opt(kh_), db = opt(db_);
  check({act, hs, dy, dh, da, w, mask, kh, dw, db}, act);
  const int64_t H = hs.size(2);
  TORCH_CHECK(act.dim() == 3 && act.sizes() == da.sizes() && hs.size(0) == act.size(0) + 1 && act.size(2) == H &&
                  dh.sizes() == hs[0].sizes() && dw.sizes() == hs[0].sizes() && (!db.defined() || db.sizes() == dw.sizes()) &&
                  (!dy.defined() || dy.sizes() == act.sizes()) && w.numel() == H &&
                  (!mask.defined() || mask.sizes() == hs[0].sizes()) &&
                  (!kh.defined() || (kh.size(0) == act.size(0) && kh.size(1) == act.size(1))),
              "indrnn kernel: tensors of the wrong shapes");
  const int K = keep_kind(kh, H);
  const bool M = mask.defined();
  AT_DISPATCH_FLOATING_TYPES(act.scalar_type(), "ind_backward",
                             [&] { ind_bwd_t<scalar_t>(relu, M, K, act, hs, dy, dh, da, w, mask, kh, dw, db); });
}

const Register reg([](pybind11::module_& m) {
  m.def("min_forward", &min_forward);
  m.def("min_backward", &min_backward);
  m.def("ind_forward", &ind_forward);
  m.def("ind_backward", &ind_backward);
});

}  // namespace
