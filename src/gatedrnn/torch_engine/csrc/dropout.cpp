// Dropout in one pass with its mask drawn from a counter-based hash (torch_engine/regularisation.py,
// ``dropout``): out[i] = x[i] * (keep(i) ? 1 / (1 - p) : 0), keep(i) = hash(i, seed) >= threshold.
//
// torch's own CPU dropout draws a Bernoulli variate per element from its Mersenne Twister, one
// element at a time: on a character model's (64, 32, 512) activations that costs about a tenth
// of a training step at two threads (benchmarks/RESULTS.md, "Dropout in one pass"). Here the
// mask of element i is a function of i and a seed alone, so a pass vectorises, splits across
// threads, and the backward recomputes the mask from the seed instead of keeping it. The seed is
// one draw from torch's generator per call. The same hash gives zoneout its masks (hash_mask: 1
// where the hash is below the threshold, the steps that keep their previous state).
//
// The hash: two rounds of a 32-bit integer mixer (xor-shift, multiply, xor-shift, multiply,
// xor-shift), over the element's index with the seed's two halves mixed in. The mixer's shifts
// and multipliers are those C. Wellons found by search and published as "lowbias32" (the
// hash-prospector project, 2018). tests/torch_engine/test_regularisation.py computes the same mask
// with torch's integer operations and checks every bit of it against this kernel.
#include "common.h"

#include <cstdint>

namespace {

using namespace gatedrnn;

inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

// O[i] = X[i] times the scale of the kept for i in [a, b), a block within one 2^32 of indices:
// the index's high half, mixed into s1, is constant over it, so the loop is 32-bit and vectorises
// (its operands are locals: through the lambda's references gcc would not vectorise it)
template <typename T>
void apply_block(const T* X, T* O, int64_t a, int64_t b, uint32_t s0, uint32_t s1, uint32_t thr, T kept) {
#pragma omp simd
  for (int64_t i = a; i < b; ++i) {
    const uint32_t h = mix32(mix32(uint32_t(i) ^ s0) ^ s1);
    O[i] = X[i] * (h >= thr ? kept : T(0));
  }
}

// O[i] = 1 where the hash of i is below thr, else 0, for i in [a, b) (as apply_block): a mask whose
// elements are 1 with probability thr / 2^32, the complement of apply_block's kept elements
template <typename T>
void mask_block(T* O, int64_t a, int64_t b, uint32_t s0, uint32_t s1, uint32_t thr) {
#pragma omp simd
  for (int64_t i = a; i < b; ++i) {
    const uint32_t h = mix32(mix32(uint32_t(i) ^ s0) ^ s1);
    O[i] = h < thr ? T(1) : T(0);
  }
}

// f(lo, end, s0, s1) over [0, n) split across threads, in blocks within one 2^32 of indices, with
// the seed's halves (seed: 64 bits, given as an int64) and the block's high half mixed into s1
template <typename F>
void hash_blocks(int64_t n, int64_t seed, const F& f) {
  const uint32_t s0 = uint32_t(uint64_t(seed)), s1 = uint32_t(uint64_t(seed) >> 32);
  at::parallel_for(0, n, parallel_grain(), [&](int64_t a, int64_t b) {
    for (int64_t lo = a; lo < b;) {
      const int64_t end = std::min<int64_t>(b, (lo | int64_t(0xFFFFFFFF)) + 1);
      f(lo, end, s0, s1 ^ uint32_t(uint64_t(lo) >> 32));
      lo = end;
    }
  });
}

// out (any shape, contiguous, like x) = x times the kept elements' scale; threshold: keep(i) when
// the hash is at least this (p * 2^32, rounded down, in [0, 2^32))
template <typename T>
void apply_impl(const at::Tensor& x, const at::Tensor& out, int64_t seed, int64_t threshold, double scale) {
  const T* X = x.data_ptr<T>();
  T* O = out.data_ptr<T>();
  const uint32_t thr = uint32_t(threshold);
  const T kept = T(scale);
  hash_blocks(x.numel(), seed, [&](int64_t lo, int64_t end, uint32_t s0, uint32_t s1) {
    apply_block<T>(X, O, lo, end, s0, s1, thr, kept);
  });
}

void check_threshold(int64_t threshold) {
  TORCH_CHECK(threshold >= 0 && threshold < (int64_t(1) << 32),
              "gatedrnn dropout kernel: the threshold must be in [0, 2^32), found ", threshold);
}

void dropout_apply(const at::Tensor& x, const at::Tensor& out, int64_t seed, int64_t threshold, double scale) {
  check({x, out}, x);
  TORCH_CHECK(out.numel() == x.numel(), "gatedrnn dropout kernel: out must have x's ", x.numel(), " elements, found ",
              out.numel());
  check_threshold(threshold);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dropout_apply",
                             [&] { apply_impl<scalar_t>(x, out, seed, threshold, scale); });
}

// out (any shape, contiguous) = 1 where the hash of the element's index is below threshold, else 0:
// zoneout's mask of the steps that keep their previous state (regularisation.zoneout_mask)
void hash_mask(const at::Tensor& out, int64_t seed, int64_t threshold) {
  check({out}, out);
  check_threshold(threshold);
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "hash_mask", [&] {
    scalar_t* O = out.data_ptr<scalar_t>();
    hash_blocks(out.numel(), seed, [&](int64_t lo, int64_t end, uint32_t s0, uint32_t s1) {
      mask_block<scalar_t>(O, lo, end, s0, s1, uint32_t(threshold));
    });
  });
}

const Register reg([](pybind11::module_& m) {
  m.def("dropout_apply", &dropout_apply);
  m.def("hash_mask", &hash_mask);
});

}  // namespace
