// One hidden unit of an LSTM-family step (plain, peephole, CIFG), forward and backward: the part
// every LSTM kernel shares (pointwise.cpp's step, layernorm.cpp's layer-normalised step), written
// once. Gate blocks: i, f, g, o (CIFG: f, g, o; its input gate is 1 - f). Inlined into the
// callers' vectorised loops over the units.
#pragma once
#include "common.h"

namespace gatedrnn {

// The gates but the output gate, and c_t, for unit j: pre-activations read from a, the gates after
// their activations written to gt (which may be a itself), c0 = c_{t-1}, w the peephole weights
// (w_i, w_f, w_o). Returns c_t; the output gate is the caller's (its peephole reads c_t).
template <typename T, bool PEEP, bool CIFG>
inline __attribute__((always_inline)) T lstm_cell_forward(const T* a, T* gt, int64_t H, int64_t j, T c0, const T* w) {
  if (CIFG) {
    const T f = sigm<T>(a[j]), g = std::tanh(a[H + j]);
    gt[j] = f;
    gt[H + j] = g;
    return g + f * (c0 - g);
  }
  T ai = a[j], af = a[H + j];
  if (PEEP) {
    ai += c0 * w[j];
    af += c0 * w[H + j];
  }
  const T i = sigm<T>(ai), f = sigm<T>(af), g = std::tanh(a[2 * H + j]);
  gt[j] = i;
  gt[H + j] = f;
  gt[2 * H + j] = g;
  return f * c0 + i * g;
}

// lstm_cell_forward's backward for unit j: dc = all of dL/dc_t (through h, the output gate's
// peephole and the next step); the gates' pre-activation gradients written to da (the output
// gate's is the caller's). Returns dL/dc_{t-1} (zoneout's carried share is the caller's).
template <typename T, bool PEEP, bool CIFG>
inline __attribute__((always_inline)) T lstm_cell_backward(const T* gt, T* da, int64_t H, int64_t j, T dc, T c0,
                                                           const T* w) {
  const T f = CIFG ? gt[j] : gt[H + j], g = CIFG ? gt[H + j] : gt[2 * H + j];
  const T dg = T(1) - g * g, dfs = f * (T(1) - f);
  T dai = T(0), daf;
  if (CIFG) {
    daf = dc * (c0 - g) * dfs;
    da[H + j] = (dc - dc * f) * dg;
  } else {
    const T i = gt[j];
    dai = dc * g * (i * (T(1) - i));
    daf = dc * c0 * dfs;
    da[j] = dai;
    da[2 * H + j] = dc * i * dg;
  }
  da[CIFG ? j : H + j] = daf;
  T dcp = dc * f;
  if (PEEP) dcp += dai * w[j] + daf * w[H + j];
  return dcp;
}

}  // namespace gatedrnn
