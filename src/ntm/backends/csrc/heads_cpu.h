// One time step of the heads and the memory for one sequence of the batch, forward and
// backward: addressing (content, interpolation, shift, sharpening), reading, erasing and adding.
// Used by sequence_cpu.cpp, which runs it over the steps and the batch.

#pragma once

#include "kernel_math.h"

namespace ntm_kernel {

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

}  // namespace ntm_kernel
