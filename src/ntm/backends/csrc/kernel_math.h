// Sizes, constants and the scalar and loop helpers of the CPU kernel (sequence_cpu.cpp).
// Header-only: the kernel is one translation unit, so everything here is inlined where used.

#pragma once

#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

// The loops over a memory row (M) or over the slots (N) are the time of the kernel. These
// pragmas (OpenMP's simd, active with -fopenmp) make the compiler vectorise them: it cannot
// prove on its own that the pointers do not overlap, and does not reorder a sum without leave.
#define NTM_SIMD _Pragma("omp simd")
#define NTM_PRAGMA(text) _Pragma(#text)
#define NTM_SIMD_SUM(...) NTM_PRAGMA(omp simd reduction(+ : __VA_ARGS__))

namespace ntm_kernel {

using at::Tensor;

// The constants of ntm/addressing.py and ntm/heads.py (passed in from Python, so that there
// is one definition of each).
struct Constants {
  double clip;        // heads.CLIP
  double norm_eps;    // addressing.NORM_EPS
  double log_floor;   // addressing.LOG_FLOOR
  double grad_bound;  // addressing.CARRY_GRAD_BOUND
};

struct Sizes {
  int64_t T, B, C, G, L, R, W, H, N, M, S, P;
  int64_t tanh_end, sigmoid_end, softplus_end;
  bool lstm;
};

// steps, batch and gates as in projected [T, B, G]; slots and width of the memory.
inline Sizes sizes_of(int64_t steps, int64_t batch, int64_t gates, int64_t slots,
                      int64_t width, const Tensor& head_weight, int64_t layers, int64_t hidden,
                      int64_t read_heads, int64_t write_heads, int64_t shifts, bool lstm) {
  Sizes s;
  s.T = steps;
  s.B = batch;
  s.G = gates;
  s.C = hidden;
  s.L = layers;
  s.R = read_heads;
  s.W = write_heads;
  s.H = read_heads + write_heads;
  s.N = slots;
  s.M = width;
  s.S = shifts;
  s.P = head_weight.size(0);
  s.tanh_end = (s.H + s.W) * s.M;
  s.sigmoid_end = s.tanh_end + s.H + s.W * s.M;
  s.softplus_end = s.sigmoid_end + 2 * s.H;
  s.lstm = lstm;
  TORCH_CHECK(s.softplus_end + s.H * s.S == s.P, "head layout does not match head_weight");
  return s;
}

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// torch.nn.functional.softplus with beta 1 and threshold 20, for x <= 20 (raw is clipped).
template <typename T>
inline T softplus(T x) {
  return x > T(20) ? x : std::log1p(std::exp(x));
}

template <typename T>
inline T clamp(T x, T bound) {
  return std::min(std::max(x, -bound), bound);
}

// exp and log as plain arithmetic, so that loops over the slots vectorise: with many heads the
// libm calls (several thousand per step and sequence) were most of the forward pass. Both are
// within a few ulp of libm in float32 and float64 over the ranges used: exp of a softmax's
// logits minus their maximum (<= 0) and log of a weighting clamped to [LOG_FLOOR, 1]. A NaN
// argument gives NaN.
template <typename T>
struct MathConstants;

template <>
struct MathConstants<float> {
  using Bits = int32_t;
  static constexpr float lowest = -87.0f, highest = 88.0f;  // 2^k stays a normal number
  static constexpr int mantissa = 23, bias = 127;
  static constexpr int exp_terms = 8, log_terms = 5;
};

template <>
struct MathConstants<double> {
  using Bits = int64_t;
  static constexpr double lowest = -708.0, highest = 709.0;
  static constexpr int mantissa = 52, bias = 1023;
  static constexpr int exp_terms = 14, log_terms = 11;
};

// 1 / i for i = 0..23 (0 unused).
constexpr double kReciprocals[24] = {
    0.0,       1.0,       1.0 / 2,   1.0 / 3,   1.0 / 4,   1.0 / 5,   1.0 / 6,   1.0 / 7,
    1.0 / 8,   1.0 / 9,   1.0 / 10,  1.0 / 11,  1.0 / 12,  1.0 / 13,  1.0 / 14,  1.0 / 15,
    1.0 / 16,  1.0 / 17,  1.0 / 18,  1.0 / 19,  1.0 / 20,  1.0 / 21,  1.0 / 22,  1.0 / 23};
constexpr double kLog2E = 1.4426950408889634074;
constexpr double kLn2High = 0.693145751953125;  // ln 2 in 16 significant bits: k * high is exact
constexpr double kLn2Low = 1.42860682030941723212e-6;  // ln 2 - kLn2High

template <typename T>
inline T fast_exp(T x) {
  using C = MathConstants<T>;
  using Bits = typename C::Bits;
  const T clamped = std::min(std::max(x, C::lowest), C::highest);  // keeps a NaN
  // x = k ln2 + r with |r| <= ln2 / 2; exp(r) by its Taylor series, 2^k by the exponent bits.
  // (Not the "+ 1.5 * 2^52 - 1.5 * 2^52" trick: -fassociative-math would cancel it.)
  const T k = clamped == clamped ? std::nearbyint(clamped * T(kLog2E)) : T(0);
  // Fused multiply-adds, which -fassociative-math cannot merge into one rounded k * ln2.
  const T r = std::fma(-k, T(kLn2Low), std::fma(-k, T(kLn2High), clamped));
  // 1 + r (1 + r/2 (1 + r/3 (...))), multiplying by the reciprocals (a division per term
  // costs more than the rest of the function).
  T series = 1;
  for (int i = C::exp_terms; i >= 1; --i) series = T(1) + series * r * T(kReciprocals[i]);
  const Bits bits = (static_cast<Bits>(k) + C::bias) << C::mantissa;
  T scale;
  std::memcpy(&scale, &bits, sizeof(T));
  return x < C::lowest ? T(0) : series * scale;  // below: under 1e-37 (float) or 1e-307
}

template <typename T>
inline T fast_log(T x) {
  using C = MathConstants<T>;
  using Bits = typename C::Bits;
  // x = 2^e m with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(s), s = (m - 1) / (m + 1).
  Bits bits;
  std::memcpy(&bits, &x, sizeof(T));
  const Bits mantissa_mask = (Bits(1) << C::mantissa) - 1;
  const Bits one = Bits(C::bias) << C::mantissa;
  Bits exponent = (bits >> C::mantissa) - C::bias;
  Bits mantissa_bits = (bits & mantissa_mask) | one;
  T m;
  std::memcpy(&m, &mantissa_bits, sizeof(T));
  const bool high = m > T(1.4142135623730951);
  m = high ? m * T(0.5) : m;
  exponent += high ? 1 : 0;
  const T s = (m - T(1)) / (m + T(1));
  const T z = s * s;
  T series = T(kReciprocals[2 * C::log_terms - 1]);
  for (int i = C::log_terms - 2; i >= 0; --i) series = T(kReciprocals[2 * i + 1]) + z * series;
  const T e = static_cast<T>(exponent);
  const T result = std::fma(e, T(kLn2High), std::fma(e, T(kLn2Low), T(2) * s * series));
  return x == x ? result : x;
}

// In-place softmax of n values.
template <typename T>
inline void softmax(T* x, int64_t n) {
  T top = x[0];
  NTM_PRAGMA(omp simd reduction(max : top))
  for (int64_t i = 1; i < n; ++i) top = std::max(top, x[i]);
  T total = 0;
  NTM_SIMD_SUM(total)
  for (int64_t i = 0; i < n; ++i) {
    x[i] = fast_exp(x[i] - top);
    total += x[i];
  }
  for (int64_t i = 0; i < n; ++i) x[i] /= total;
}

// p * (g - sum(g * p)): the gradient of the logits of a softmax p, in place of g.
template <typename T>
inline void softmax_backward(const T* p, T* g, int64_t n) {
  T dot = 0;
  NTM_SIMD_SUM(dot)
  for (int64_t i = 0; i < n; ++i) dot += g[i] * p[i];
  NTM_SIMD
  for (int64_t i = 0; i < n; ++i) g[i] = p[i] * (g[i] - dot);
}

// out(n) += weight * in((n - offset) mod N) for every n, as two contiguous runs (no modulo in
// the loop, so that the compiler vectorises it). |offset| < N.
template <typename T>
inline void add_rolled(T* out, const T* in, T weight, int64_t offset, int64_t N) {
  const int64_t split = ((offset % N) + N) % N;  // out(n) reads in(n - split) for n >= split
  NTM_SIMD
  for (int64_t n = split; n < N; ++n) out[n] += weight * in[n - split];
  NTM_SIMD
  for (int64_t n = 0; n < split; ++n) out[n] += weight * in[n + N - split];
}

// sum_n a(n) * b((n - offset) mod N).
template <typename T>
inline T dot_rolled(const T* a, const T* b, int64_t offset, int64_t N) {
  const int64_t split = ((offset % N) + N) % N;
  T total = 0;
  NTM_SIMD_SUM(total)
  for (int64_t n = split; n < N; ++n) total += a[n] * b[n - split];
  NTM_SIMD_SUM(total)
  for (int64_t n = 0; n < split; ++n) total += a[n] * b[n + N - split];
  return total;
}

}  // namespace ntm_kernel
