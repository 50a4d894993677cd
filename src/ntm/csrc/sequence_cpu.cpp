// The CPU kernel of the fused path: a whole NTM sequence, forward and backward, in C++.
//
// The same math as ntm/fused.py (which calls ntm/addressing.py and ntm/memory.py), written as
// loops over one sequence of the batch at a time. On a CPU, at the paper's sizes, the Python
// fused path spends nearly all of its time in the overhead of about 216 small tensor
// operations per time step; here a step is a handful of matrix products (ATen, so BLAS) and
// plain loops. The sequences of a batch run in parallel on torch's intra-op threads.
//
// Shapes, as in ntm/addressing.py: B batch, T steps, C controller width, G gates of a layer,
// R read heads, W write heads, H = R + W heads, N memory slots, M memory width, S = 2K+1
// shifts, P head parameters. The head parameters are laid out as ntm/heads.py's HeadLayout:
// [keys (H*M), add (W*M) | gates (H), erase (W*M) | strengths (H), sharpening (H) | shifts (H*S)].
//
// Inside the kernel the memory is kept transposed, [M, N] per sequence (M^T): every sum over a
// row's M entries then runs as a vector operation over the N slots, with no horizontal sum per
// slot. It is transposed once on the way in and once on the way out.
//
// Every equation of the backward pass is the one written next to ntm/fused.py's code;
// tests/test_fused.py checks this file against that path and against plain autograd.

#include <torch/extension.h>

#include <ATen/Parallel.h>

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

namespace {

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
Sizes sizes_of(int64_t steps, int64_t batch, int64_t gates, int64_t slots, int64_t width,
               const Tensor& head_weight, int64_t layers, int64_t hidden, int64_t read_heads,
               int64_t write_heads, int64_t shifts, bool lstm) {
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

// The checks the Python node's operations make, so that a wrong input raises the same kind of
// error here instead of being converted or read out of bounds.
void check_inputs(const Sizes& s, const Tensor& projected, const Tensor& memory,
                  const Tensor& focus, const Tensor& reads, const std::vector<Tensor>& state,
                  const std::vector<Tensor>& layer_weights, const Tensor& bias,
                  const Tensor& head_weight, const Tensor& head_bias) {
  const auto dtype = projected.scalar_type();
  auto check = [&](const Tensor& tensor, at::IntArrayRef shape, const char* name) {
    TORCH_CHECK(tensor.scalar_type() == dtype, "ntm kernel: ", name, " has dtype ",
                tensor.scalar_type(), ", expected ", dtype);
    TORCH_CHECK(tensor.device().is_cpu(), "ntm kernel: ", name, " is not on the CPU");
    TORCH_CHECK(tensor.sizes() == shape, "ntm kernel: ", name, " has shape ", tensor.sizes(),
                ", expected ", shape);
  };
  check(memory, {s.B, s.N, s.M}, "memory");
  check(focus, {s.B, s.H, s.N}, "weights");
  check(reads, {s.B, s.R * s.M}, "read vectors");
  TORCH_CHECK(static_cast<int64_t>(state.size()) == (s.lstm ? 2 * s.L : 0),
              "ntm kernel: wrong number of controller state tensors");
  for (const auto& tensor : state) check(tensor, {s.B, s.C}, "controller state");
  for (int64_t l = 0; l < s.L; ++l) {
    const int64_t below = l == 0 ? s.R * s.M : s.C;
    check(layer_weights[l], {s.G, below + (s.lstm ? s.C : 0)}, "controller weight");
  }
  check(bias, {s.L, s.G}, "controller bias");
  check(head_weight, {s.P, s.C}, "head weight");
  check(head_bias, {s.P}, "head bias");
  TORCH_CHECK(s.G == (s.lstm ? 4 : 1) * s.C, "ntm kernel: projected input has ", s.G,
              " gates, expected ", (s.lstm ? 4 : 1) * s.C);
  TORCH_CHECK(s.S >= 1 && s.S % 2 == 1 && (s.S - 1) / 2 < s.N, "ntm kernel: bad shift count");
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

// -- forward of the heads and the memory, one sequence of the batch --------------------------

template <typename T>
struct StepPointers {
  // Inputs of the step.
  const T* memory;    // (M, N) transposed
  const T* previous;  // (H, N)
  const T* raw;       // (P)
  // What the step computes (and the backward pass keeps).
  T* act;       // (P) activated head parameters (softplus without the +1 of gamma)
  T* key_inv;   // (H)
  T* row_inv;   // (N)
  T* sim;       // (H, N)
  T* content;   // (H, N)
  T* gated;     // (H, N)
  T* shifted;   // (H, N)
  T* log_shifted;  // (H, N) log(max(shifted, LOG_FLOOR))
  T* focus;     // (H, N)
  T* reads;     // (R * M)
  T* new_memory;  // (M, N) transposed
};

template <typename T>
void heads_forward(const Sizes& s, const Constants& k, const StepPointers<T>& p) {
  const int64_t H = s.H, N = s.N, M = s.M, W = s.W, R = s.R, S = s.S, K = (S - 1) / 2;
  const T clip = T(k.clip);
  // Clip, then the activations of heads.HeadLayout.activate.
  for (int64_t i = 0; i < s.P; ++i) {
    const T x = clamp(p.raw[i], clip);
    if (i < s.tanh_end) {
      p.act[i] = std::tanh(x);
    } else if (i < s.sigmoid_end) {
      p.act[i] = sigmoid(x);
    } else if (i < s.softplus_end) {
      p.act[i] = softplus(x);
    } else {
      p.act[i] = x;
    }
  }
  for (int64_t h = 0; h < H; ++h) softmax(p.act + s.softplus_end + h * S, S);
  const T* keys = p.act;                            // (H, M)
  const T* add = p.act + H * M;                     // (W, M)
  const T* gates = p.act + s.tanh_end;              // (H)
  const T* erase = p.act + s.tanh_end + H;          // (W, M)
  const T* strengths = p.act + s.sigmoid_end;       // (H) beta
  const T* sharpening = p.act + s.sigmoid_end + H;  // (H) gamma - 1
  const T* shift_weights = p.act + s.softplus_end;  // (H, S)

  // Content: cosine similarity, then softmax(beta * K) (paper eq. 5-6).
  const T* __restrict__ transposed = p.memory;  // (M, N)
  T* __restrict__ row_inv = p.row_inv;
  std::fill(row_inv, row_inv + N, T(0));
  for (int64_t m = 0; m < M; ++m) {
    const T* __restrict__ column = transposed + m * N;
    NTM_SIMD
    for (int64_t n = 0; n < N; ++n) row_inv[n] += column[n] * column[n];
  }
  NTM_SIMD
  for (int64_t n = 0; n < N; ++n) row_inv[n] = T(1) / std::sqrt(row_inv[n] + T(k.norm_eps));
  for (int64_t h = 0; h < H; ++h) {
    const T* key = keys + h * M;
    T total = 0;
    NTM_SIMD_SUM(total)
    for (int64_t m = 0; m < M; ++m) total += key[m] * key[m];
    const T key_inv = T(1) / std::sqrt(total + T(k.norm_eps));
    p.key_inv[h] = key_inv;
    T* __restrict__ sim = p.sim + h * N;
    T* __restrict__ content = p.content + h * N;
    std::fill(sim, sim + N, T(0));
    for (int64_t m = 0; m < M; ++m) {
      const T* __restrict__ column = transposed + m * N;
      const T key_m = key[m];
      NTM_SIMD
      for (int64_t n = 0; n < N; ++n) sim[n] += key_m * column[n];
    }
    const T beta = strengths[h];
    NTM_SIMD
    for (int64_t n = 0; n < N; ++n) {
      sim[n] *= key_inv * row_inv[n];
      content[n] = sim[n] * beta;
    }
    softmax(content, N);
    // Interpolation (eq. 7), circular shift (eq. 8), sharpening (eq. 9).
    const T gate = gates[h];
    const T* previous = p.previous + h * N;
    T* gated = p.gated + h * N;
    for (int64_t n = 0; n < N; ++n) gated[n] = previous[n] + gate * (content[n] - previous[n]);
    T* shifted = p.shifted + h * N;
    T* focus = p.focus + h * N;
    const T* weights = shift_weights + h * S;
    const T gamma = sharpening[h] + T(1);
    // w_s(n) = sum_j s(j) w_g(n - (j - K)).
    std::fill(shifted, shifted + N, T(0));
    for (int64_t j = 0; j < S; ++j) add_rolled(shifted, gated, weights[j], j - K, N);
    T* log_shifted = p.log_shifted + h * N;
    NTM_SIMD
    for (int64_t n = 0; n < N; ++n) {
      log_shifted[n] = fast_log(std::max(shifted[n], T(k.log_floor)));
      focus[n] = gamma * log_shifted[n];
    }
    softmax(focus, N);
  }
  // Read (eq. 2) from the memory before the write: r(m) = sum_n w(n) M(n, m).
  for (int64_t r = 0; r < R; ++r) {
    const T* __restrict__ w = p.focus + r * N;
    for (int64_t m = 0; m < M; ++m) {
      const T* __restrict__ column = transposed + m * N;
      T total = 0;
      NTM_SIMD_SUM(total)
      for (int64_t n = 0; n < N; ++n) total += w[n] * column[n];
      p.reads[r * M + m] = total;
    }
  }
  // Write (eq. 3-4): M' = M * prod_w (1 - w_w e_w^T) + sum_w w_w a_w^T, column by column.
  const T* write_focus = p.focus + R * N;
  for (int64_t m = 0; m < M; ++m) {
    const T* __restrict__ column = transposed + m * N;
    T* __restrict__ out = p.new_memory + m * N;
    NTM_SIMD
    for (int64_t n = 0; n < N; ++n) out[n] = column[n];
    for (int64_t w = 0; w < W; ++w) {
      const T* __restrict__ weight = write_focus + w * N;
      const T e = erase[w * M + m];
      NTM_SIMD
      for (int64_t n = 0; n < N; ++n) out[n] *= T(1) - weight[n] * e;
    }
    for (int64_t w = 0; w < W; ++w) {
      const T* __restrict__ weight = write_focus + w * N;
      const T a = add[w * M + m];
      NTM_SIMD
      for (int64_t n = 0; n < N; ++n) out[n] += weight[n] * a;
    }
  }
}

// -- backward of the heads and the memory, one sequence of the batch --------------------------

template <typename T>
struct StepGradients {
  const T* new_memory;  // (M, N) into the memory after the step, transposed
  const T* focus;       // (H, N) into the focus after the step
  const T* reads;       // (R * M) into the read vectors after the step
  T* memory;            // (M, N) into the memory before the step, transposed
  T* previous;          // (H, N) into the focus before the step
  T* raw;               // (P) into the head parameters before the clip
};

template <typename T>
void heads_backward(const Sizes& s, const Constants& k, const StepPointers<T>& p,
                    const StepGradients<T>& g, std::vector<T>& work) {
  const int64_t H = s.H, N = s.N, M = s.M, W = s.W, R = s.R, S = s.S, K = (S - 1) / 2;
  const T floor = T(k.log_floor), bound = T(k.grad_bound), clip = T(k.clip);
  const T* keys = p.act;
  const T* add = p.act + H * M;
  const T* gates = p.act + s.tanh_end;
  const T* erase = p.act + s.tanh_end + H;
  const T* strengths = p.act + s.sigmoid_end;
  const T* sharpening = p.act + s.sigmoid_end + H;
  const T* shift_weights = p.act + s.softplus_end;
  const T* write_focus = p.focus + R * N;

  // Work space: gradients of the activated head parameters, of the focus, and per-head rows.
  work.assign(s.P + H * N + 5 * N + W * N, T(0));
  T* grad_act = work.data();          // (P)
  T* grad_focus = grad_act + s.P;     // (H, N)
  T* grad_rows = grad_focus + H * N;  // (N) row coefficients of the content backward
  T* grad_shifted = grad_rows + N;    // (N)
  T* grad_gated = grad_shifted + N;   // (N)
  T* grad_dot = grad_gated + N;       // (N)
  T* kept = grad_dot + N;             // (N) for one column m
  T* others = kept + N;               // (W, N) for one column m
  const T* __restrict__ memory_t = p.memory;         // (M, N)
  const T* __restrict__ grad_new_t = g.new_memory;   // (M, N) dM'
  T* __restrict__ grad_memory_t = g.memory;          // (M, N) dM
  T* grad_keys = grad_act;
  T* grad_add = grad_act + H * M;
  T* grad_gates = grad_act + s.tanh_end;
  T* grad_erase = grad_act + s.tanh_end + H;
  T* grad_strengths = grad_act + s.sigmoid_end;
  T* grad_sharpening = grad_act + s.sigmoid_end + H;
  T* grad_shift_weights = grad_act + s.softplus_end;

  std::copy(g.focus, g.focus + H * N, grad_focus);
  // Write, column by column: with f_w(n) = 1 - w_w(n) e_w(m) and dM' the incoming gradient,
  //   dM = dM' prod_w f_w,  da_w(m) = sum_n w_w(n) dM'(n),
  //   dw_w(n) += a_w(m) dM'(n) - e_w(m) df_w(n),  de_w(m) = -sum_n w_w(n) df_w(n),
  //   df_w = dM' M prod_{j != w} f_j (by prefix and suffix products: a factor can be 0).
  // Read: r = w^T M, so dw_r(n) += dr(m) M(n, m) and dM(n, m) += w_r(n) dr(m).
  for (int64_t m = 0; m < M; ++m) {
    const T* __restrict__ column = memory_t + m * N;
    const T* __restrict__ grad_column = grad_new_t + m * N;
    T* __restrict__ out = grad_memory_t + m * N;
    std::fill(kept, kept + N, T(1));
    for (int64_t w = 0; w < W; ++w) {
      const T* __restrict__ weight = write_focus + w * N;
      T* __restrict__ other = others + w * N;
      const T e = erase[w * M + m];
      NTM_SIMD
      for (int64_t n = 0; n < N; ++n) {
        other[n] = kept[n];
        kept[n] *= T(1) - weight[n] * e;
      }
    }
    T* suffix = out;  // the column's output, free until the end of this loop
    std::fill(suffix, suffix + N, T(1));
    for (int64_t w = W - 1; w >= 0; --w) {
      const T* __restrict__ weight = write_focus + w * N;
      T* __restrict__ other = others + w * N;
      const T e = erase[w * M + m];
      NTM_SIMD
      for (int64_t n = 0; n < N; ++n) {
        other[n] *= suffix[n];
        suffix[n] *= T(1) - weight[n] * e;
      }
    }
    for (int64_t w = 0; w < W; ++w) {
      const T* __restrict__ weight = write_focus + w * N;
      const T* __restrict__ other = others + w * N;
      T* __restrict__ grad_weight = grad_focus + (R + w) * N;
      const T a = add[w * M + m], e = erase[w * M + m];
      T grad_a = 0, grad_e = 0;
      NTM_SIMD_SUM(grad_a, grad_e)
      for (int64_t n = 0; n < N; ++n) {
        const T grad_factor = grad_column[n] * column[n] * other[n];
        grad_a += weight[n] * grad_column[n];
        grad_e += weight[n] * grad_factor;
        grad_weight[n] += a * grad_column[n] - e * grad_factor;
      }
      grad_add[w * M + m] = grad_a;
      grad_erase[w * M + m] = -grad_e;
    }
    NTM_SIMD
    for (int64_t n = 0; n < N; ++n) out[n] = grad_column[n] * kept[n];
    for (int64_t r = 0; r < R; ++r) {
      const T grad_read = g.reads[r * M + m];
      const T* __restrict__ weight = p.focus + r * N;
      T* __restrict__ grad_weight = grad_focus + r * N;
      NTM_SIMD
      for (int64_t n = 0; n < N; ++n) {
        grad_weight[n] += grad_read * column[n];
        out[n] += weight[n] * grad_read;
      }
    }
  }
  for (int64_t h = 0; h < H; ++h) {
    const T* focus = p.focus + h * N;
    const T* shifted = p.shifted + h * N;
    const T* log_shifted = p.log_shifted + h * N;
    const T* gated = p.gated + h * N;
    const T* content = p.content + h * N;
    const T* previous = p.previous + h * N;
    const T* sim = p.sim + h * N;
    const T* weights = shift_weights + h * S;
    T* grad_logits = grad_focus + h * N;
    // Sharpen: w = softmax(gamma * log(max(w_s, floor))).
    softmax_backward(focus, grad_logits, N);
    const T gamma = sharpening[h] + T(1);
    T grad_gamma = 0;
    NTM_SIMD_SUM(grad_gamma)
    for (int64_t n = 0; n < N; ++n) {
      grad_gamma += grad_logits[n] * log_shifted[n];
      grad_shifted[n] = shifted[n] >= floor ? grad_logits[n] * gamma / shifted[n] : T(0);
    }
    grad_sharpening[h] = grad_gamma;
    // Shift: w_s(n) = sum_j s(j) w_g(n - (j - K)), so dw_g(i) = sum_j s(j) dw_s(i + j - K) and
    // ds(j) = sum_n dw_s(n) w_g(n - (j - K)).
    std::fill(grad_gated, grad_gated + N, T(0));
    for (int64_t j = 0; j < S; ++j) {
      add_rolled(grad_gated, grad_shifted, weights[j], K - j, N);
      grad_shift_weights[h * S + j] = dot_rolled(grad_shifted, gated, j - K, N);
    }
    // Interpolation: w_g = w_prev + g (w_c - w_prev); the gradient into w_prev is bounded as by
    // addressing.bound_gradient.
    const T gate = gates[h];
    T grad_gate = 0;
    T* grad_content = grad_shifted;  // reused: dw_s is no longer needed
    NTM_SIMD_SUM(grad_gate)
    for (int64_t n = 0; n < N; ++n) {
      grad_content[n] = grad_gated[n] * gate;
      g.previous[h * N + n] = clamp(grad_gated[n] - grad_content[n], bound);
      grad_gate += grad_gated[n] * (content[n] - previous[n]);
    }
    grad_gates[h] = grad_gate;
    // Content: w_c = softmax(beta K), K(n) = dot(n) kn rn(n) with kn = (|k|^2 + eps)^-1/2 and
    // rn(n) = (|M(n)|^2 + eps)^-1/2; d kn / dk = -kn^3 k and d rn(n) / dM(n) = -rn(n)^3 M(n).
    softmax_backward(content, grad_content, N);
    const T beta = strengths[h], key_inv = p.key_inv[h];
    T grad_beta = 0, key_coef = 0;
    NTM_SIMD_SUM(grad_beta, key_coef)
    for (int64_t n = 0; n < N; ++n) {
      grad_beta += grad_content[n] * sim[n];
      const T grad_sim = grad_content[n] * beta;
      grad_dot[n] = grad_sim * key_inv * p.row_inv[n];
      const T weighted = grad_sim * sim[n];
      key_coef += weighted;
      grad_rows[n] += weighted * p.row_inv[n] * p.row_inv[n];
    }
    grad_strengths[h] = grad_beta;
    key_coef *= key_inv * key_inv;
    // dk(m) = sum_n dK(n) M(n, m) - key_coef k(m);  dM(n, m) += dK(n) k(m) (then - rows).
    const T* __restrict__ key = keys + h * M;
    T* __restrict__ grad_key = grad_keys + h * M;
    for (int64_t m = 0; m < M; ++m) {
      const T* __restrict__ column = memory_t + m * N;
      T* __restrict__ out = grad_memory_t + m * N;
      const T key_m = key[m];
      T total = 0;
      NTM_SIMD_SUM(total)
      for (int64_t n = 0; n < N; ++n) {
        total += grad_dot[n] * column[n];
        out[n] += grad_dot[n] * key_m;
      }
      grad_key[m] = total - key_coef * key_m;
    }
  }
  for (int64_t m = 0; m < M; ++m) {
    const T* __restrict__ column = memory_t + m * N;
    T* __restrict__ out = grad_memory_t + m * N;
    NTM_SIMD
    for (int64_t n = 0; n < N; ++n) out[n] = clamp(out[n] - grad_rows[n] * column[n], bound);
  }
  // The activations, then the clip (whose gradient passes where -CLIP <= raw <= CLIP).
  for (int64_t h = 0; h < H; ++h) {
    softmax_backward(shift_weights + h * S, grad_shift_weights + h * S, S);
  }
  for (int64_t i = 0; i < s.P; ++i) {
    const T y = p.act[i];
    T grad = grad_act[i];
    if (i < s.tanh_end) {
      grad *= T(1) - y * y;
    } else if (i < s.sigmoid_end) {
      grad *= (T(1) - y) * y;
    } else if (i < s.softplus_end) {
      const T x = clamp(p.raw[i], clip);
      if (x <= T(20)) {
        const T z = std::exp(x);
        grad *= z / (z + T(1));
      }
    }
    g.raw[i] = std::abs(p.raw[i]) <= clip ? grad : T(0);
  }
}

// -- the whole sequence -------------------------------------------------------------------------

// Runs fn(b) for every sequence b of the batch, on torch's intra-op threads.
template <typename Fn>
void for_each_sequence(int64_t batch, const Fn& fn) {
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) fn(b);
  });
}

// From this batch size on, the controller's activations are ATen calls over the whole batch.
constexpr int64_t kVectorBatch = 4;

// What the forward pass keeps for the backward pass, in the order of `saved` in Python.
enum Saved {
  kMemories,  // (T, B, M, N) memory before each step, transposed
  kRaw,       // (T, B, P)
  kAct,       // (T, B, P)
  kKeyInv,    // (T, B, H)
  kRowInv,    // (T, B, N)
  kSim,       // (T, B, H, N)
  kContent,   // (T, B, H, N)
  kGated,     // (T, B, H, N)
  kShifted,   // (T, B, H, N)
  kLogShifted,  // (T, B, H, N)
  kPrevious,  // (B, H, N) the focus before the first step
  kFixed      // then per layer: joined (T, B, in); LSTM: sig (T, B, 3C), candidate, cell
              // before the step, tanh(cell) (T, B, C); feedforward: hidden (T, B, C)
};

// The pointers of sequence b at step t into the per-step buffers (base[kind], in the order of
// `Saved`), as the forward pass writes them and the backward pass reads them.
template <typename T>
StepPointers<T> step_pointers(const std::vector<T*>& base, const Sizes& s, int64_t t, int64_t b,
                              const T* previous, T* focus, T* reads, T* new_memory) {
  const int64_t tb = t * s.B + b, H = s.H, N = s.N;
  return StepPointers<T>{
      base[kMemories] + tb * N * s.M, previous,
      base[kRaw] + tb * s.P,          base[kAct] + tb * s.P,
      base[kKeyInv] + tb * H,         base[kRowInv] + tb * N,
      base[kSim] + tb * H * N,        base[kContent] + tb * H * N,
      base[kGated] + tb * H * N,      base[kShifted] + tb * H * N,
      base[kLogShifted] + tb * H * N, focus + tb * H * N,
      reads,                          new_memory,
  };
}

std::vector<Tensor> forward(const Tensor& projected, const Tensor& memory0, const Tensor& focus0,
                            const Tensor& reads0, const std::vector<Tensor>& state0,
                            const std::vector<Tensor>& layer_weights, const Tensor& bias,
                            const Tensor& head_weight, const Tensor& head_bias, int64_t hidden,
                            int64_t read_heads, int64_t write_heads, int64_t shifts, bool lstm,
                            std::vector<double> constants) {
  const Constants k{constants[0], constants[1], constants[2], constants[3]};
  const int64_t layers = static_cast<int64_t>(layer_weights.size());
  TORCH_CHECK(projected.dim() == 3 && memory0.dim() == 3 && head_weight.dim() == 2 &&
                  layers >= 1, "ntm kernel: inputs of the wrong rank");
  const Sizes s = sizes_of(projected.size(0), projected.size(1), projected.size(2),
                           memory0.size(1), memory0.size(2), head_weight, layers, hidden,
                           read_heads, write_heads, shifts, lstm);
  check_inputs(s, projected, memory0, focus0, reads0, state0, layer_weights, bias, head_weight,
               head_bias);
  const auto options = projected.options();
  const int64_t T = s.T, B = s.B, C = s.C, H = s.H, N = s.N, M = s.M;

  Tensor outputs = at::empty({T, B, C}, options);
  Tensor all_reads = at::empty({T, B, s.R * M}, options);
  Tensor all_focus = at::empty({T, B, H, N}, options);
  Tensor memories = at::empty({T + 1, B, M, N}, options);  // transposed
  memories[0].copy_(memory0.transpose(1, 2));
  std::vector<Tensor> saved = {
      memories,                             at::empty({T, B, s.P}, options),
      at::empty({T, B, s.P}, options),      at::empty({T, B, H}, options),
      at::empty({T, B, N}, options),        at::empty({T, B, H, N}, options),
      at::empty({T, B, H, N}, options),     at::empty({T, B, H, N}, options),
      at::empty({T, B, H, N}, options),     at::empty({T, B, H, N}, options),
      focus0.contiguous(),
  };
  // Per layer: joined, then LSTM (sig, candidate, cell before, tanh cell) or (hidden).
  std::vector<Tensor> state;
  for (const auto& tensor : state0) state.push_back(tensor.contiguous().clone());
  for (int64_t l = 0; l < layers; ++l) {
    const int64_t inputs = layer_weights[l].size(1);
    saved.push_back(at::empty({T, B, inputs}, options));
    if (lstm) {
      saved.push_back(at::empty({T, B, 3 * C}, options));
      for (int i = 0; i < 3; ++i) saved.push_back(at::empty({T, B, C}, options));
    } else {
      saved.push_back(at::empty({T, B, C}, options));
    }
  }
  const int64_t per_layer = lstm ? 5 : 2;
  Tensor gates = at::empty({B, s.G}, options);
  Tensor reads = reads0.contiguous();
  Tensor focus = focus0.contiguous();

  AT_DISPATCH_FLOATING_TYPES(projected.scalar_type(), "ntm_sequence_forward", [&] {
    using T_ = scalar_t;
    // Base pointers of the per-step buffers (views made per sequence would cost more than
    // the math at batch 32).
    std::vector<T_*> base(kPrevious);
    base[kMemories] = memories.data_ptr<T_>();  // [T + 1, ...]: step t + 1 is the new memory
    for (int i = kRaw; i < kPrevious; ++i) base[i] = saved[i].data_ptr<T_>();
    for (int64_t t = 0; t < T; ++t) {
      // Controller (ntm/controllers.py): layer 0 sees [reads, hidden], later ones the layer below.
      Tensor below = reads;
      for (int64_t l = 0; l < layers; ++l) {
        Tensor joined = saved[kFixed + per_layer * l][t];
        const int64_t below_size = below.size(1);
        const T_* below_data = below.data_ptr<T_>();
        T_* joined_data = joined.data_ptr<T_>();
        const int64_t inputs = joined.size(1);
        for (int64_t b = 0; b < B; ++b) {
          std::copy(below_data + b * below_size, below_data + (b + 1) * below_size,
                    joined_data + b * inputs);
          if (lstm) {
            const T_* hidden_data = state[2 * l].data_ptr<T_>();
            std::copy(hidden_data + b * C, hidden_data + (b + 1) * C,
                      joined_data + b * inputs + below_size);
          }
        }
        const Tensor offset = l == 0 ? projected[t] : bias[l];
        at::addmm_out(gates, offset, joined, layer_weights[l].t());
        const T_* gates_data = gates.data_ptr<T_>();
        Tensor out = l == layers - 1 ? outputs[t] : at::empty({B, C}, options);
        T_* out_data = out.data_ptr<T_>();
        if (lstm) {
          Tensor sig_step = saved[kFixed + per_layer * l + 1][t];
          Tensor candidate_step = saved[kFixed + per_layer * l + 2][t];
          Tensor tanh_cell_step = saved[kFixed + per_layer * l + 4][t];
          T_* sig = sig_step.data_ptr<T_>();
          T_* candidate = candidate_step.data_ptr<T_>();
          T_* cell_before = saved[kFixed + per_layer * l + 3][t].data_ptr<T_>();
          T_* tanh_cell = tanh_cell_step.data_ptr<T_>();
          T_* hidden_state = state[2 * l].data_ptr<T_>();
          T_* cell_state = state[2 * l + 1].data_ptr<T_>();
          // Gates: input, forget, output (sigmoid), candidate (tanh). Over a batch, ATen's
          // vectorised activations beat one scalar exp per unit; for a few sequences, its
          // per-call overhead does not.
          const bool vectorised = B >= kVectorBatch;
          if (vectorised) {
            at::sigmoid_out(sig_step, gates.narrow(1, 0, 3 * C));
            at::tanh_out(candidate_step, gates.narrow(1, 3 * C, C));
          } else {
            for (int64_t b = 0; b < B; ++b) {
              for (int64_t c = 0; c < 3 * C; ++c) sig[b * 3 * C + c] = sigmoid(gates_data[b * s.G + c]);
              for (int64_t c = 0; c < C; ++c) {
                candidate[b * C + c] = std::tanh(gates_data[b * s.G + 3 * C + c]);
              }
            }
          }
          // c' = f c + i candidate.
          for (int64_t b = 0; b < B; ++b) {
            for (int64_t c = 0; c < C; ++c) {
              const int64_t i = b * C + c;
              cell_before[i] = cell_state[i];
              cell_state[i] = sig[b * 3 * C + C + c] * cell_state[i] + sig[b * 3 * C + c] * candidate[i];
            }
          }
          if (vectorised) {
            at::tanh_out(tanh_cell_step, state[2 * l + 1]);
          } else {
            for (int64_t i = 0; i < B * C; ++i) tanh_cell[i] = std::tanh(cell_state[i]);
          }
          // h' = o tanh(c').
          for (int64_t b = 0; b < B; ++b) {
            for (int64_t c = 0; c < C; ++c) {
              const int64_t i = b * C + c;
              hidden_state[i] = sig[b * 3 * C + 2 * C + c] * tanh_cell[i];
              out_data[i] = hidden_state[i];
            }
          }
        } else {
          Tensor hidden_step = saved[kFixed + per_layer * l + 1][t];
          T_* hidden_saved = hidden_step.data_ptr<T_>();
          if (B >= kVectorBatch) {
            at::tanh_out(hidden_step, gates);
          } else {
            for (int64_t i = 0; i < B * C; ++i) hidden_saved[i] = std::tanh(gates_data[i]);
          }
          std::copy(hidden_saved, hidden_saved + B * C, out_data);
        }
        below = out;
      }
      Tensor raw = saved[kRaw][t];
      at::addmm_out(raw, head_bias, outputs[t], head_weight.t());
      const T_* previous_data =
          t == 0 ? focus.data_ptr<T_>() : all_focus.data_ptr<T_>() + (t - 1) * B * H * N;
      for_each_sequence(B, [&](int64_t b) {
        const int64_t tb = t * B + b;
        heads_forward(s, k,
                      step_pointers(base, s, t, b, previous_data + b * H * N,
                                    all_focus.data_ptr<T_>(),
                                    all_reads.data_ptr<T_>() + tb * s.R * M,
                                    base[kMemories] + (tb + B) * N * M));
      });
      Tensor step_reads = all_reads[t];
      reads = step_reads;
    }
  });
  std::vector<Tensor> results = {outputs, all_reads, all_focus,
                                 memories[T].transpose(1, 2).contiguous(),
                                 all_focus[T - 1].clone(), all_reads[T - 1].clone()};
  for (const auto& tensor : state) results.push_back(tensor);
  saved[kMemories] = memories.narrow(0, 0, T);
  results.insert(results.end(), saved.begin(), saved.end());
  return results;
}

std::vector<Tensor> backward(const std::vector<Tensor>& saved, const Tensor& all_focus,
                             const Tensor& outputs, const std::vector<Tensor>& layer_weights,
                             const Tensor& head_weight, const Tensor& grad_outputs,
                             const Tensor& grad_all_reads, const Tensor& grad_memory_in,
                             const Tensor& grad_focus_in, const Tensor& grad_reads_in,
                             const std::vector<Tensor>& grad_state_in, int64_t hidden,
                             int64_t read_heads, int64_t write_heads, int64_t shifts, bool lstm,
                             std::vector<double> constants) {
  const Constants k{constants[0], constants[1], constants[2], constants[3]};
  const int64_t layers = static_cast<int64_t>(layer_weights.size());
  const Tensor& memories = saved[kMemories];
  const int64_t T = memories.size(0), B = memories.size(1);
  // memories: [T, B, M, N] (transposed).
  const Sizes s = sizes_of(T, B, layer_weights[0].size(0), memories.size(3), memories.size(2),
                           head_weight, layers, hidden, read_heads, write_heads, shifts, lstm);
  const auto options = memories.options();
  const int64_t C = s.C, H = s.H, N = s.N, M = s.M, P = s.P;
  const int64_t per_layer = lstm ? 5 : 2;
  const double bound = k.grad_bound;

  Tensor grad_memory = at::empty({B, M, N}, options);  // transposed
  grad_memory.copy_(grad_memory_in.transpose(1, 2));
  Tensor grad_focus = grad_focus_in.contiguous().clone();
  Tensor grad_reads = grad_reads_in.contiguous().clone();
  std::vector<Tensor> grad_state;
  for (const auto& tensor : grad_state_in) grad_state.push_back(tensor.contiguous().clone());
  Tensor next_grad_memory = at::empty_like(grad_memory);
  Tensor next_grad_focus = at::empty_like(grad_focus);
  Tensor grad_raw_all = at::empty({T, B, P}, options);
  Tensor grad_output = at::empty({B, C}, options);
  std::vector<Tensor> grad_gates_all;
  for (int64_t l = 0; l < layers; ++l) {
    grad_gates_all.push_back(at::empty({T, B, s.G}, options));
  }
  Tensor step_reads = at::empty({B, s.R * M}, options);

  AT_DISPATCH_FLOATING_TYPES(memories.scalar_type(), "ntm_sequence_backward", [&] {
    using T_ = scalar_t;
    std::vector<std::vector<T_>> work(at::get_num_threads() + 1);
    std::vector<T_*> base(kPrevious);
    for (int i = kMemories; i < kPrevious; ++i) {
      base[i] = const_cast<T_*>(saved[i].data_ptr<T_>());
    }
    T_* focus_data = const_cast<T_*>(all_focus.data_ptr<T_>());
    for (int64_t t = T - 1; t >= 0; --t) {
      at::add_out(step_reads, grad_reads, grad_all_reads[t]);
      const T_* previous_data = t == 0 ? saved[kPrevious].data_ptr<T_>()
                                       : all_focus.data_ptr<T_>() + (t - 1) * B * H * N;
      Tensor grad_raw = grad_raw_all[t];
      T_* grad_memory_data = grad_memory.data_ptr<T_>();
      T_* grad_focus_data = grad_focus.data_ptr<T_>();
      T_* step_reads_data = step_reads.data_ptr<T_>();
      T_* next_grad_memory_data = next_grad_memory.data_ptr<T_>();
      T_* next_grad_focus_data = next_grad_focus.data_ptr<T_>();
      T_* grad_raw_data = grad_raw.data_ptr<T_>();
      for_each_sequence(B, [&](int64_t b) {
        const StepPointers<T_> p = step_pointers<T_>(base, s, t, b, previous_data + b * H * N,
                                                     focus_data, nullptr, nullptr);
        StepGradients<T_> g{
            grad_memory_data + b * N * M,
            grad_focus_data + b * H * N,
            step_reads_data + b * s.R * M,
            next_grad_memory_data + b * N * M,
            next_grad_focus_data + b * H * N,
            grad_raw_data + b * P,
        };
        heads_backward(s, k, p, g, work[at::get_thread_num()]);
      });
      std::swap(grad_memory, next_grad_memory);
      std::swap(grad_focus, next_grad_focus);
      // dOutput = dOutput(loss) + dRaw W_heads.
      at::addmm_out(grad_output, grad_outputs[t], grad_raw, head_weight);
      // Controller, top layer down.
      Tensor grad_below = grad_output;
      for (int64_t l = layers - 1; l >= 0; --l) {
        const int64_t base = kFixed + per_layer * l;
        Tensor grad_gates = grad_gates_all[l][t];
        T_* dg = grad_gates.data_ptr<T_>();
        const T_* gb = grad_below.data_ptr<T_>();
        if (lstm) {
          const T_* sig = saved[base + 1][t].data_ptr<T_>();
          const T_* candidate = saved[base + 2][t].data_ptr<T_>();
          const T_* cell_before = saved[base + 3][t].data_ptr<T_>();
          const T_* tanh_cell = saved[base + 4][t].data_ptr<T_>();
          T_* grad_hidden_state = grad_state[2 * l].data_ptr<T_>();
          T_* grad_cell_state = grad_state[2 * l + 1].data_ptr<T_>();
          for (int64_t b = 0; b < B; ++b) {
            for (int64_t c = 0; c < C; ++c) {
              const int64_t i = b * C + c;
              const T_ input_gate = sig[b * 3 * C + c];
              const T_ forget_gate = sig[b * 3 * C + C + c];
              const T_ output_gate = sig[b * 3 * C + 2 * C + c];
              const T_ grad_h = gb[i] + grad_hidden_state[i];
              const T_ grad_c = grad_cell_state[i] +
                                grad_h * output_gate * (T_(1) - tanh_cell[i] * tanh_cell[i]);
              T_* row = dg + b * s.G;
              row[c] = grad_c * candidate[i] * (T_(1) - input_gate) * input_gate;
              row[C + c] = grad_c * cell_before[i] * (T_(1) - forget_gate) * forget_gate;
              row[2 * C + c] = grad_h * tanh_cell[i] * (T_(1) - output_gate) * output_gate;
              row[3 * C + c] =
                  grad_c * input_gate * (T_(1) - candidate[i] * candidate[i]);
              grad_cell_state[i] = clamp(grad_c * forget_gate, T_(bound));
            }
          }
          Tensor grad_joined = at::mm(grad_gates, layer_weights[l]);
          const int64_t inputs = grad_joined.size(1) - C;
          grad_state[2 * l].copy_(grad_joined.narrow(1, inputs, C).clamp(-bound, bound));
          grad_below = grad_joined.narrow(1, 0, inputs).contiguous();
        } else {
          const T_* hidden_saved = saved[base + 1][t].data_ptr<T_>();
          for (int64_t i = 0; i < B * C; ++i) {
            dg[i] = gb[i] * (T_(1) - hidden_saved[i] * hidden_saved[i]);
          }
          grad_below = at::mm(grad_gates, layer_weights[l]);
        }
      }
      grad_reads = grad_below.clamp(-bound, bound);
    }
  });
  // Weight gradients: one matrix product over all steps and sequences each.
  std::vector<Tensor> grads = {grad_gates_all[0], grad_memory.transpose(1, 2).contiguous(),
                               grad_focus, grad_reads};
  for (const auto& tensor : grad_state) grads.push_back(tensor);
  Tensor grad_bias = at::zeros({layers, s.G}, options);
  for (int64_t l = 0; l < layers; ++l) {
    const Tensor gates = grad_gates_all[l].reshape({T * B, s.G});
    const Tensor joined = saved[kFixed + per_layer * l];
    grads.push_back(at::mm(gates.t(), joined.reshape({T * B, joined.size(2)})));
    if (l > 0) grad_bias[l].copy_(gates.sum(0));
  }
  grads.push_back(grad_bias);
  const Tensor raws = grad_raw_all.reshape({T * B, P});
  grads.push_back(at::mm(raws.t(), outputs.reshape({T * B, C})));
  grads.push_back(raws.sum(0));
  return grads;
}

// fast_exp or fast_log of every element (for tests/test_kernel.py).
Tensor elementwise(const Tensor& input, bool logarithm) {
  const Tensor x = input.contiguous();
  Tensor y = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ntm_elementwise", [&] {
    const scalar_t* in = x.data_ptr<scalar_t>();
    scalar_t* out = y.data_ptr<scalar_t>();
    for (int64_t i = 0; i < x.numel(); ++i) out[i] = logarithm ? fast_log(in[i]) : fast_exp(in[i]);
  });
  return y;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("exp", [](const Tensor& x) { return elementwise(x, false); }, "the kernel's exp");
  module.def("log", [](const Tensor& x) { return elementwise(x, true); }, "the kernel's log");
  // The GIL is released while a sequence runs (nothing in it touches Python objects), so that
  // other Python threads (data loading, progress, logging) are not held up.
  module.def("forward", &forward, "An NTM sequence, forward (see ntm/kernel.py)",
             pybind11::call_guard<pybind11::gil_scoped_release>());
  module.def("backward", &backward, "An NTM sequence, backward (see ntm/kernel.py)",
             pybind11::call_guard<pybind11::gil_scoped_release>());
}
