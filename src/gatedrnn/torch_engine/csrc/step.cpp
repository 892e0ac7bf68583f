// One token through a whole stack of layers (the modules' step() for generation), in one call.
//
// At batch 1 a token reads every weight once and does little else with it: each layer is a
// matrix-vector product over W_ih and W_hh (read in the parameters' own row-major layout, which
// is already the order a product with one vector streams them in, so there is nothing to lay out
// again and nothing to invalidate when a parameter changes) and a pass of elementwise work. Here
// the products, the elementwise work and the Mogrifier's rounds of every layer run with no
// Python between them: what torch.nn's cells pay per call (module call, two addmm dispatches,
// the cell kernel) and what the module's step() paid per layer is paid once per token.
//
// Shapes: B batch (small: each weight row is read once for all rows of the batch), I input, H
// hidden, G gate blocks (RNN and IndRNN 1; GRU 3: r, z, n; LSTM 4: i, f, g, o; CIFG 3: f, g, o;
// minGRU 2: z, h; minLSTM 3: f, i, h; sLSTM 4: i, f, z, o, its w_hh (4H, H / heads)). Parameters per layer, in the cell's spec order: w_ih
// (G*H, I), w_hh (G*H, H) (IndRNN: (H,); minGRU and minLSTM: none), [b_ih (G*H), b_hh (G*H;
// minGRU and minLSTM: none)], [peephole (3H)], [Mogrifier: q (nq, I, H), r (nr, H, I); with rank
// k: q_left (nq, I, k), q_right (nq, k, H), r_left (nr, H, k), r_right (nr, k, I)].
#include "common.h"

namespace {

using namespace gatedrnn;

// out[b, n] = W[n, :] . v[b, :] for n in [n0, n1) (v's rows ldv apart): four rows at a time, each
// row read once for every b (it stays in L1 between them), four independent sums for the vector units.
template <typename T>
void matvec(const T* W, int64_t K, const T* v, int64_t ldv, int64_t B, T* out, int64_t ldo, int64_t n0, int64_t n1) {
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) {
    const T *w0 = W + n * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
    for (int64_t b = 0; b < B; ++b) {
      const T* vb = v + b * ldv;
      T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
      for (int64_t k = 0; k < K; ++k) {
        const T x = vb[k];
        s0 += w0[k] * x;
        s1 += w1[k] * x;
        s2 += w2[k] * x;
        s3 += w3[k] * x;
      }
      T* o = out + b * ldo + n;
      o[0] = s0;
      o[1] = s1;
      o[2] = s2;
      o[3] = s3;
    }
  }
  for (; n < n1; ++n) {
    const T* w = W + n * K;
    for (int64_t b = 0; b < B; ++b) {
      const T* vb = v + b * ldv;
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t k = 0; k < K; ++k) s += w[k] * vb[k];
      out[b * ldo + n] = s;
    }
  }
}

// Rows [0, N) of one or two products, split across threads in blocks of four rows where the
// products hold enough work (below about 64k multiply-adds a parallel region costs more than
// it saves). ox = W1 v1 (N rows); oh = W2 v2, or with W2 null nothing.
template <typename T>
void products(int64_t N, int64_t B, const T* W1, int64_t K1, const T* v1, T* o1, const T* W2, int64_t K2,
              const T* v2, T* o2) {
  const int64_t per_row = B * (K1 + (W2 ? K2 : 0));
  const int64_t blocks = (N + 3) / 4;
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, 4 * per_row));
  at::parallel_for(0, blocks, grain, [&](int64_t q0, int64_t q1) {
    const int64_t n0 = 4 * q0, n1 = std::min(N, 4 * q1);
    matvec<T>(W1, K1, v1, K1, B, o1, N, n0, n1);
    if (W2) matvec<T>(W2, K2, v2, K2, B, o2, N, n0, n1);
  });
}

// The sLSTM's block-diagonal recurrent product: out (B, 4H) = blockdiag(W) h, W (4H, DH), row
// g*H + n*DH + e of W is unit e of gate g in head n, which reads h[n*DH : (n+1)*DH].
template <typename T>
void heads_product(const T* W, int64_t H, int64_t DH, const T* h, int64_t B, T* out) {
  const int64_t K = H / DH, blocks = 4 * K;
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, B * DH * DH));
  at::parallel_for(0, blocks, grain, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t row = (q / K) * H + (q % K) * DH;  // gate q / K, head q % K
      matvec<T>(W, DH, h + (q % K) * DH, H, B, out, 4 * H, row, row + DH);
    }
  });
}

struct Config {
  int64_t kind;  // 0 rnn tanh, 1 rnn relu, 2 gru, 3 LSTM family
  bool bias, peep, cifg, lowrank;
  double forget_bias;
  int64_t rounds;
};

enum { RNN_TANH = 0, RNN_RELU = 1, GRU = 2, LSTM = 3, INDRNN_RELU = 4, INDRNN_TANH = 5, MINGRU = 6, MINLSTM = 7, SLSTM = 8 };

int64_t state_parts(int64_t kind) { return kind == LSTM ? 2 : (kind == SLSTM ? 4 : 1); }

int64_t gates(int64_t kind, bool cifg) {
  switch (kind) {
    case LSTM: return cifg ? 3 : 4;
    case SLSTM: return 4;
    case GRU: case MINLSTM: return 3;
    case MINGRU: return 2;
    default: return 1;
  }
}
bool input_only(int64_t kind) { return kind == MINGRU || kind == MINLSTM; }  // no w_hh, no b_hh

// minGRU's and minLSTM's g(v): v + 0.5 for v >= 0, sigma(v) below; log sigma(v), finite everywhere
template <typename T>
inline T gpos(T v) { return v >= T(0) ? v + T(0.5) : sigm<T>(v); }
template <typename T>
inline T log_sigm(T v) { return std::min(v, T(0)) - std::log1p(std::exp(-std::abs(v))); }

// The modern cells' elementwise work of one row: a (G*H) the input product, h0 and h1 (H)
template <typename T>
void modern_row(int64_t kind, const T* a, const T* w_hh, const T* b_ih, const T* b_hh, const T* hp, T* ho, int64_t H) {
  if (kind == INDRNN_RELU || kind == INDRNN_TANH) {
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T v = a[j] + w_hh[j] * hp[j] + (b_ih ? b_ih[j] + b_hh[j] : T(0));
      ho[j] = kind == INDRNN_TANH ? std::tanh(v) : (v > T(0) ? v : T(0));
    }
  } else if (kind == MINGRU) {
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T z = sigm<T>(a[j] + (b_ih ? b_ih[j] : T(0))), ht = gpos<T>(a[H + j] + (b_ih ? b_ih[H + j] : T(0)));
      ho[j] = (T(1) - z) * hp[j] + z * ht;
    }
  } else {  // minLSTM: f / (f + i) = sigma(log sigma(a_f) - log sigma(a_i))
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T af = a[j] + (b_ih ? b_ih[j] : T(0)), ai = a[H + j] + (b_ih ? b_ih[H + j] : T(0));
      const T fn = sigm<T>(log_sigm<T>(af) - log_sigm<T>(ai)), ht = gpos<T>(a[2 * H + j] + (b_ih ? b_ih[2 * H + j] : T(0)));
      ho[j] = fn * hp[j] + (T(1) - fn) * ht;
    }
  }
}

// v (B, K) <- 2 sigmoid(M u) * v for the Mogrifier's round: M (rows, cols) = (K, len(u)), or its
// factors left (K, k), right (k, len(u)) with a (B, k) scratch
template <typename T>
void mogrify(const T* M, const T* left, const T* right, int64_t rank, const T* u, int64_t U, T* v, int64_t K,
             int64_t B, T* s, T* thin) {
  if (M) {
    products<T>(K, B, M, U, u, s, nullptr, 0, nullptr, nullptr);
  } else {
    products<T>(rank, B, right, U, u, thin, nullptr, 0, nullptr, nullptr);
    products<T>(K, B, left, rank, thin, s, nullptr, 0, nullptr, nullptr);
  }
  const int64_t n = B * K;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) v[j] = T(2) * sigm<T>(s[j]) * v[j];
}

// The sLSTM's elementwise work (see cells/slstm.py): a (B, 4H) pre-activations i, f, z, o with
// both biases; s0 = (h, c, n, m) at t-1, s1 at t, each (B, H)
template <typename T>
void slstm_rows(const T* a_all, const T* const* s0, T* const* s1, int64_t B, int64_t H) {
  for (int64_t b = 0; b < B; ++b) {
    const T* a = a_all + b * 4 * H;
    const int64_t r = b * H;
    const T *cp = s0[1] + r, *np = s0[2] + r, *mp = s0[3] + r;
    T *ho = s1[0] + r, *co = s1[1] + r, *no = s1[2] + r, *mo = s1[3] + r;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T ai = a[j], log_f = log_sigm<T>(a[H + j]);
      const T m = np[j] == T(0) ? ai : std::max(ai, log_f + mp[j]);
      const T i = std::exp(ai - m), f = std::exp(log_f + mp[j] - m);
      const T c = f * cp[j] + i * std::tanh(a[2 * H + j]), n = f * np[j] + i;
      ho[j] = sigm<T>(a[3 * H + j]) * c / n;
      co[j] = c;
      no[j] = n;
      mo[j] = m;
    }
  }
}

template <typename T>
void layer_step(const Config& cfg, const std::vector<at::Tensor>& p, const T* x_in, int64_t I, const T* const* s0,
                int64_t B, int64_t H, T* const* s1) {
  const T *h0 = s0[0], *c0 = s0[1];
  T *h1 = s1[0], *c1 = s1[1];
  const int64_t G = gates(cfg.kind, cfg.cifg), N = G * H;
  size_t at = 0;
  const T* w_ih = ptr<T>(p[at++]);
  const T* w_hh = input_only(cfg.kind) ? nullptr : ptr<T>(p[at++]);
  const T *b_ih = nullptr, *b_hh = nullptr, *w_peep = nullptr;
  if (cfg.bias) {
    b_ih = ptr<T>(p[at++]);
    if (!input_only(cfg.kind)) b_hh = ptr<T>(p[at++]);
  }
  if (cfg.peep) w_peep = ptr<T>(p[at++]);
  std::vector<T> gx(B * N), gh(B * N);
  if (cfg.kind == SLSTM) {
    products<T>(N, B, w_ih, I, x_in, gx.data(), nullptr, 0, nullptr, nullptr);
    heads_product<T>(w_hh, H, p[1].size(1), h0, B, gh.data());
    for (int64_t b = 0; b < B * N; ++b) gx[b] += gh[b] + (b_ih ? b_ih[b % N] + b_hh[b % N] : T(0));
    slstm_rows<T>(gx.data(), s0, s1, B, H);
    return;
  }
  if (cfg.kind >= INDRNN_RELU) {  // no recurrent product: the input product, then the row's work
    products<T>(N, B, w_ih, I, x_in, gx.data(), nullptr, 0, nullptr, nullptr);
    for (int64_t b = 0; b < B; ++b) modern_row<T>(cfg.kind, gx.data() + b * N, w_hh, b_ih, b_hh, h0 + b * H, h1 + b * H, H);
    return;
  }
  const T *x = x_in, *h = h0;
  std::vector<T> xm, hm, s, thin;
  if (cfg.rounds > 0) {  // the Mogrifier: x and h gate each other, on copies
    const int64_t nq = (cfg.rounds + 1) / 2, nr = cfg.rounds / 2;
    const T *q = nullptr, *ql = nullptr, *qr = nullptr, *r = nullptr, *rl = nullptr, *rr = nullptr;
    int64_t k = 0;
    if (cfg.lowrank) {
      ql = ptr<T>(p[at++]);
      qr = ptr<T>(p[at++]);
      k = p[at - 1].size(1);
      if (nr) {
        rl = ptr<T>(p[at++]);
        rr = ptr<T>(p[at++]);
      }
    } else {
      q = ptr<T>(p[at++]);
      if (nr) r = ptr<T>(p[at++]);
    }
    xm.assign(x_in, x_in + B * I);
    hm.assign(h0, h0 + B * H);
    s.resize(B * std::max(I, H));
    thin.resize(B * std::max<int64_t>(k, 1));
    for (int64_t j = 1; j <= cfg.rounds; ++j) {
      if (j % 2) {  // x = 2 sigma(h Q^T) * x, Q (I, H)
        const int64_t m = (j - 1) / 2;
        mogrify<T>(q ? q + m * I * H : nullptr, ql ? ql + m * I * k : nullptr, qr ? qr + m * k * H : nullptr, k,
                   hm.data(), H, xm.data(), I, B, s.data(), thin.data());
      } else {  // h = 2 sigma(x R^T) * h, R (H, I)
        const int64_t m = j / 2 - 1;
        mogrify<T>(r ? r + m * H * I : nullptr, rl ? rl + m * H * k : nullptr, rr ? rr + m * k * I : nullptr, k,
                   xm.data(), I, hm.data(), H, B, s.data(), thin.data());
      }
    }
    x = xm.data();
    h = hm.data();
  }
  products<T>(N, B, w_ih, I, x, gx.data(), w_hh, H, h, gh.data());
  // the pre-activations a = gx + gh + b_ih + b_hh (+ forget_bias), into gx; the GRU keeps its
  // n block's recurrent part (with b_hn) apart, in gh
  const int64_t f_block = cfg.kind == LSTM ? (cfg.cifg ? 0 : 1) : -1;
  for (int64_t b = 0; b < B; ++b) {
    T *ax = gx.data() + b * N, *ah = gh.data() + b * N;
    const int64_t summed = cfg.kind == GRU ? 2 * H : N;
    if (b_ih) {
#pragma omp simd
      for (int64_t j = 0; j < summed; ++j) ax[j] += ah[j] + b_ih[j] + b_hh[j];
      if (cfg.kind == GRU) {
#pragma omp simd
        for (int64_t j = 2 * H; j < N; ++j) {
          ax[j] += b_ih[j];
          ah[j] += b_hh[j];
        }
      }
    } else {
#pragma omp simd
      for (int64_t j = 0; j < summed; ++j) ax[j] += ah[j];
    }
    if (f_block >= 0 && cfg.forget_bias != 0.0) {
      const T fb = T(cfg.forget_bias);
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) ax[f_block * H + j] += fb;
    }
  }
  for (int64_t b = 0; b < B; ++b) {
    const T *a = gx.data() + b * N, *ah = gh.data() + b * N;
    T* ho = h1 + b * H;
    if (cfg.kind == RNN_TANH) {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) ho[j] = std::tanh(a[j]);
    } else if (cfg.kind == RNN_RELU) {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) ho[j] = a[j] > T(0) ? a[j] : T(0);
    } else if (cfg.kind == GRU) {
      const T* hp = h0 + b * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T rg = sigm<T>(a[j]), z = sigm<T>(a[H + j]);
        const T n = std::tanh(a[2 * H + j] + rg * ah[2 * H + j]);
        ho[j] = n + z * (hp[j] - n);
      }
    } else if (cfg.cifg) {  // f, g, o; c = g + f (c_prev - g)
      const T* cp = c0 + b * H;
      T* co = c1 + b * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T f = sigm<T>(a[j]), g = std::tanh(a[H + j]);
        const T c = g + f * (cp[j] - g);
        co[j] = c;
        ho[j] = sigm<T>(a[2 * H + j]) * std::tanh(c);
      }
    } else if (w_peep) {  // i and f look at c_{t-1}, o at c_t
      const T* cp = c0 + b * H;
      T* co = c1 + b * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T c_prev = cp[j];
        const T i = sigm<T>(a[j] + c_prev * w_peep[j]), f = sigm<T>(a[H + j] + c_prev * w_peep[H + j]);
        const T c = f * c_prev + i * std::tanh(a[2 * H + j]);
        co[j] = c;
        ho[j] = sigm<T>(a[3 * H + j] + c * w_peep[2 * H + j]) * std::tanh(c);
      }
    } else {
      const T* cp = c0 + b * H;
      T* co = c1 + b * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T c = sigm<T>(a[H + j]) * cp[j] + sigm<T>(a[j]) * std::tanh(a[2 * H + j]);
        co[j] = c;
        ho[j] = sigm<T>(a[3 * H + j]) * std::tanh(c);
      }
    }
  }
}

bool usable(const at::Tensor& t, const at::Tensor& like) {
  return t.defined() && t.is_contiguous() && t.scalar_type() == like.scalar_type() && t.device().is_cpu();
}

bool shape_is(const at::Tensor& t, std::initializer_list<int64_t> shape) {
  return t.sizes().equals(shape);
}

// Each layer's parameters in the number and shapes its configuration reads (see the top).
bool shapes_fit(int64_t kind, bool bias, bool peep, bool cifg, int64_t rounds, bool lowrank, int64_t I, int64_t H,
                const std::vector<std::vector<at::Tensor>>& layers) {
  const int64_t G = gates(kind, cifg), N = G * H;
  const int64_t nq = (rounds + 1) / 2, nr = rounds / 2;
  const size_t per = input_only(kind) ? 1 : 2;  // weights, and biases, per layer
  for (const auto& p : layers) {
    size_t need = per + (bias ? per : 0) + (peep ? 1 : 0) + (rounds ? (lowrank ? 2 : 1) * ((nq ? 1 : 0) + (nr ? 1 : 0)) : 0);
    if (p.size() != need) return false;
    size_t at = 0;
    if (!shape_is(p[at++], {N, I})) return false;
    if (kind == SLSTM) {  // (4H, DH), H a multiple of DH
      const at::Tensor& w = p[at++];
      if (w.dim() != 2 || w.size(0) != N || w.size(1) <= 0 || H % w.size(1) != 0) return false;
    } else if (per == 2 && !(kind >= INDRNN_RELU ? shape_is(p[at++], {H}) : shape_is(p[at++], {N, H}))) {
      return false;
    }
    if (bias && !shape_is(p[at++], {N})) return false;
    if (bias && per == 2 && !shape_is(p[at++], {N})) return false;
    if (peep && !shape_is(p[at++], {3 * H})) return false;
    if (rounds) {
      if (lowrank) {
        const int64_t k = p[at].dim() == 3 ? p[at].size(2) : -1;
        if (!shape_is(p[at++], {nq, I, k}) || !shape_is(p[at++], {nq, k, H})) return false;
        if (nr && (!shape_is(p[at++], {nr, H, k}) || !shape_is(p[at++], {nr, k, I}))) return false;
      } else {
        if (!shape_is(p[at++], {nq, I, H})) return false;
        if (nr && !shape_is(p[at++], {nr, H, I})) return false;
      }
    }
    I = H;
  }
  return true;
}

// x (B, I); state: h (L, B, H)[, c (L, B, H)] (sLSTM: h, c, n, m); layers: each layer's parameters (see the top).
// Returns {y (B, H), h_n (L, B, H)[, c_n[, n_n, m_n]]}, or nothing where a tensor is not contiguous, not on
// the CPU or not of x's dtype (the caller then runs its eager step).
std::vector<at::Tensor> stack_step(int64_t kind, bool bias, bool peep, bool cifg, double forget_bias, int64_t rounds,
                                   bool lowrank, const at::Tensor& x, const std::vector<at::Tensor>& state,
                                   const std::vector<std::vector<at::Tensor>>& layers) {
  if (!(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble) || !usable(x, x) || x.dim() != 2) return {};
  if (kind < 0 || kind > SLSTM) return {};
  const int64_t parts = state_parts(kind);
  if (static_cast<int64_t>(state.size()) != parts) return {};
  for (const auto& s : state)
    if (!usable(s, x) || s.dim() != 3) return {};
  for (const auto& layer : layers)
    for (const auto& t : layer)
      if (!usable(t, x)) return {};
  const int64_t L = static_cast<int64_t>(layers.size()), B = x.size(0), H = state[0].size(2);
  for (const auto& s : state)
    if (s.size(0) != L || s.size(1) != B || s.size(2) != H) return {};
  if (!shapes_fit(kind, bias, peep, cifg, rounds, lowrank, x.size(1), H, layers)) return {};
  std::vector<at::Tensor> out{at::Tensor()};
  for (const auto& s : state) out.push_back(at::empty_like(s));
  const Config cfg{kind, bias, peep, cifg, lowrank, forget_bias, rounds};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "stack_step", [&] {
    using T = scalar_t;
    const T* in = x.data_ptr<T>();
    int64_t I = x.size(1);
    const T* s0[4] = {nullptr, nullptr, nullptr, nullptr};
    T* s1[4] = {nullptr, nullptr, nullptr, nullptr};
    for (int64_t l = 0; l < L; ++l) {
      for (int64_t k = 0; k < parts; ++k) {
        s0[k] = state[k].data_ptr<T>() + l * B * H;
        s1[k] = out[k + 1].data_ptr<T>() + l * B * H;
      }
      layer_step<T>(cfg, layers[l], in, I, s0, B, H, s1);
      in = s1[0];
      I = H;
    }
  });
  out[0] = out[1].select(0, L - 1).clone();
  return out;
}

const Register reg([](pybind11::module_& m) { m.def("stack_step", &stack_step); });

}  // namespace
