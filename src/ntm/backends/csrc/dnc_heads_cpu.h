// One time step of the DNC's heads and memory for one sequence of the batch, forward and
// backward (Graves et al. 2016, Methods; the equations of ntm/functional/dnc.py and the order
// of ntm/access/dnc.py's DNCAccess.step): usage, allocation, write by allocation and content,
// link and precedence, forward and backward weightings, read by content and links.
// One write head; any number of read heads; none of Csordas & Schmidhuber's options.
// Used by dnc_sequence_cpu.cpp, which runs it over the steps and the batch.
//
// Shapes: R read heads, N slots, M width, P interface parameters. The memory is kept
// transposed, [M, N] (as in heads_cpu.h): sums over a row's M entries run over the N slots
// as vector operations. The link L is [N, N], L[i, j] at i * N + j.

#pragma once

#include "kernel_math.h"

namespace dnc_kernel {

using at::Tensor;
using ntm_kernel::clamp;
using ntm_kernel::sigmoid;
using ntm_kernel::softmax;
using ntm_kernel::softmax_backward;
using ntm_kernel::softplus;

// The constants of the Python modules (passed in, so that each has one definition).
struct Constants {
  double clip;        // access.dnc.CLIP
  double norm_eps;    // functional.addressing.NORM_EPS
  double alloc_eps;   // functional.dnc.ALLOCATION_EPS
  double grad_bound;  // functional.addressing.CARRY_GRAD_BOUND
};

struct Sizes {
  int64_t T, B, C, G, L, R, N, M, P;
  bool lstm;
  // The interface vector, as access/dnc.py's DNCLayout (options off): read keys (R*M),
  // read strengths (R), write key (M), write strength, erase (M), values (M), free gates (R),
  // allocation gate, write gate, read modes (R*3: backward, forward, content).
  int64_t read_keys, read_strengths, write_key, write_strength, erase, values, free_gates,
      allocation_gate, write_gate, read_modes;
  // The per-step intermediates (`aux`) of one sequence: see Aux.
  int64_t aux;
};

inline Sizes sizes_of(int64_t steps, int64_t batch, int64_t gates, int64_t slots, int64_t width,
                      int64_t params, int64_t layers, int64_t hidden, int64_t read_heads,
                      bool lstm) {
  Sizes s;
  s.T = steps, s.B = batch, s.G = gates, s.N = slots, s.M = width, s.P = params;
  s.L = layers, s.C = hidden, s.R = read_heads, s.lstm = lstm;
  const int64_t R = s.R, M = s.M;
  s.read_keys = 0;
  s.read_strengths = R * M;
  s.write_key = s.read_strengths + R;
  s.write_strength = s.write_key + M;
  s.erase = s.write_strength + 1;
  s.values = s.erase + M;
  s.free_gates = s.values + M;
  s.allocation_gate = s.free_gates + R;
  s.write_gate = s.allocation_gate + 1;
  s.read_modes = s.write_gate + 1;
  TORCH_CHECK(s.read_modes + 3 * R == s.P, "dnc kernel: the interface has ", s.P,
              " parameters, expected ", s.read_modes + 3 * R,
              " (one write head, no content masking, no link sharpness)");
  s.aux = 8 * s.N + 4 * R * s.N + 1 + R;
  return s;
}

// The per-step intermediates of one sequence, laid out in one block of `Sizes::aux` numbers.
template <typename T>
struct Aux {
  T *retention, *order, *sorted, *before;  // (N) psi; the slots by usage; their usages; cumprod
  T *write_content, *write_sim;            // (N)
  T *old_row_inv, *new_row_inv;            // (N) inverse row norms of the memory before, after
  T *forward, *backward, *read_content, *read_sim;  // (R, N)
  T *write_key_inv, *read_key_inv;         // (1), (R)

  Aux(T* base, const Sizes& s) {
    const int64_t N = s.N, RN = s.R * s.N;
    retention = base, order = base + N, sorted = base + 2 * N, before = base + 3 * N;
    write_content = base + 4 * N, write_sim = base + 5 * N;
    old_row_inv = base + 6 * N, new_row_inv = base + 7 * N;
    forward = base + 8 * N, backward = forward + RN, read_content = backward + RN;
    read_sim = read_content + RN;
    write_key_inv = read_sim + RN, read_key_inv = write_key_inv + 1;
  }
};

// Sequence b's data at step t: the state before (`old_*`) and after (`new_*`) the step.
template <typename T>
struct StepData {
  const T* raw;  // (P) interface before the clip
  T* act;        // (P) activated (oneplus strengths, sigmoid gates, softmax modes)
  const T* old_memory;
  T* new_memory;  // (M, N) transposed
  const T* old_usage;
  T* new_usage;  // (N)
  const T* old_link;
  T* new_link;  // (N, N)
  const T* old_precedence;
  T* new_precedence;  // (N)
  const T* old_read_weights;
  T* new_read_weights;  // (R, N)
  const T* old_write_weights;
  T* new_write_weights;  // (N)
  T* allocation;         // (N)
  T* reads;              // (R * M)
  Aux<T> aux;
};

// -- forward ----------------------------------------------------------------------------------

// Clip, then the activations of DNCLayout.activate.
template <typename T>
void activate(const Sizes& s, const Constants& k, const T* raw, T* act) {
  const T clip = T(k.clip);
  for (int64_t i = 0; i < s.P; ++i) {
    const T x = clamp(raw[i], clip);
    const bool strength = (i >= s.read_strengths && i < s.write_key) || i == s.write_strength;
    const bool gate = (i >= s.erase && i < s.values) || (i >= s.free_gates && i < s.read_modes);
    act[i] = strength ? T(1) + softplus(x) : gate ? sigmoid(x) : x;
  }
  for (int64_t r = 0; r < s.R; ++r) softmax(act + s.read_modes + 3 * r, int64_t(3));
}

// 1 / sqrt(|M(n)|^2 + eps) for every row n of a transposed memory.
template <typename T>
void row_inverse_norms(const Sizes& s, const Constants& k, const T* __restrict__ memory,
                       T* __restrict__ row_inv) {
  const int64_t N = s.N;
  std::fill(row_inv, row_inv + N, T(0));
  for (int64_t m = 0; m < s.M; ++m) {
    const T* __restrict__ column = memory + m * N;
    NTM_SIMD
    for (int64_t n = 0; n < N; ++n) row_inv[n] += column[n] * column[n];
  }
  NTM_SIMD
  for (int64_t n = 0; n < N; ++n) row_inv[n] = T(1) / std::sqrt(row_inv[n] + T(k.norm_eps));
}

// Content weights c = softmax(beta K), K(n) = k.M(n) |k|^-1 |M(n)|^-1 (with NORM_EPS).
template <typename T>
void content_forward(const Sizes& s, const Constants& k, const T* __restrict__ memory,
                     const T* key, T beta, const T* __restrict__ row_inv, T* __restrict__ sim,
                     T* __restrict__ content, T* key_inv) {
  const int64_t N = s.N, M = s.M;
  T total = 0;
  for (int64_t m = 0; m < M; ++m) total += key[m] * key[m];
  const T inv = T(1) / std::sqrt(total + T(k.norm_eps));
  *key_inv = inv;
  std::fill(sim, sim + N, T(0));
  for (int64_t m = 0; m < M; ++m) {
    const T* __restrict__ column = memory + m * N;
    const T key_m = key[m];
    NTM_SIMD
    for (int64_t n = 0; n < N; ++n) sim[n] += key_m * column[n];
  }
  NTM_SIMD
  for (int64_t n = 0; n < N; ++n) {
    sim[n] *= inv * row_inv[n];
    content[n] = sim[n] * beta;
  }
  softmax(content, N);
}

// Usage, then allocation (the slots sorted by usage, ties by index; the order is kept).
template <typename T>
void allocate(const Sizes& s, const Constants& k, const StepData<T>& d,
              std::vector<int64_t>& order) {
  const int64_t N = s.N, R = s.R;
  const T* free_gates = d.act + s.free_gates;
  T* psi = d.aux.retention;
  std::fill(psi, psi + N, T(1));
  for (int64_t r = 0; r < R; ++r) {
    const T* w = d.old_read_weights + r * N;
    const T f = free_gates[r];
    for (int64_t n = 0; n < N; ++n) psi[n] *= T(1) - f * w[n];
  }
  const T eps = T(k.alloc_eps);
  T* usage = d.new_usage;
  for (int64_t n = 0; n < N; ++n) {
    const T u = d.old_usage[n];
    usage[n] = (u + (T(1) - u) * d.old_write_weights[n]) * psi[n];
  }
  // The mapped usages, sorted (stable: ties by slot) with NaN last, as torch.sort does.
  T* mapped = d.allocation;  // written below, in the order of the slots
  for (int64_t n = 0; n < N; ++n) mapped[n] = eps + (T(1) - eps) * usage[n];
  order.resize(N);
  for (int64_t n = 0; n < N; ++n) order[n] = n;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return mapped[a] < mapped[b] || (mapped[a] == mapped[a] && mapped[b] != mapped[b]);
  });
  for (int64_t j = 0; j < N; ++j) d.aux.sorted[j] = mapped[order[j]];
  T product = 1;
  for (int64_t j = 0; j < N; ++j) {
    const int64_t n = order[j];
    const T u = d.aux.sorted[j];
    d.aux.order[j] = T(n);
    d.aux.before[j] = product;
    d.allocation[n] = (T(1) - u) * product;
    product *= u;
  }
}

// Write weights, then erase and write: M = M' (1 - w e^T) + w v^T; precedence.
template <typename T>
void write(const Sizes& s, const StepData<T>& d) {
  const int64_t N = s.N, M = s.M;
  const T gate_a = d.act[s.allocation_gate], gate_w = d.act[s.write_gate];
  T* __restrict__ w = d.new_write_weights;
  const T* __restrict__ content = d.aux.write_content;
  const T* __restrict__ allocation = d.allocation;
  T total = 0;
  for (int64_t n = 0; n < N; ++n) {
    w[n] = gate_w * (content[n] + gate_a * (allocation[n] - content[n]));
    total += w[n];
  }
  const T* erase = d.act + s.erase;
  const T* values = d.act + s.values;
  for (int64_t m = 0; m < M; ++m) {
    const T* __restrict__ column = d.old_memory + m * N;
    T* __restrict__ out = d.new_memory + m * N;
    const T e = erase[m], v = values[m];
    NTM_SIMD
    for (int64_t n = 0; n < N; ++n) out[n] = column[n] * (T(1) - w[n] * e) + w[n] * v;
  }
  NTM_SIMD
  for (int64_t n = 0; n < N; ++n) {
    d.new_precedence[n] = (T(1) - total) * d.old_precedence[n] + w[n];
  }
}

// L[i,j] = (1 - w[i] - w[j]) L'[i,j] + w[i] p'[j] off the diagonal, 0 on it; with it the
// forward and backward weightings f_r = L w_r', b_r = L^T w_r' in the same pass over L.
template <typename T>
void link(const Sizes& s, const StepData<T>& d) {
  const int64_t N = s.N, R = s.R;
  const T* __restrict__ w = d.new_write_weights;
  const T* __restrict__ p = d.old_precedence;
  std::fill(d.aux.forward, d.aux.forward + R * N, T(0));
  std::fill(d.aux.backward, d.aux.backward + R * N, T(0));
  for (int64_t i = 0; i < N; ++i) {
    const T* __restrict__ old_row = d.old_link + i * N;
    T* __restrict__ row = d.new_link + i * N;
    const T wi = w[i], keep = T(1) - wi;
    NTM_SIMD
    for (int64_t j = 0; j < N; ++j) row[j] = (keep - w[j]) * old_row[j] + wi * p[j];
    row[i] = T(0);
    for (int64_t r = 0; r < R; ++r) {
      const T* __restrict__ previous = d.old_read_weights + r * N;
      T* __restrict__ backward = d.aux.backward + r * N;
      const T previous_i = previous[i];
      T total = 0;
      NTM_SIMD_SUM(total)
      for (int64_t j = 0; j < N; ++j) {
        total += row[j] * previous[j];
        backward[j] += row[j] * previous_i;
      }
      d.aux.forward[r * N + i] = total;
    }
  }
}

// Read weights w_r = pi_r[0] b_r + pi_r[1] f_r + pi_r[2] c_r, then the reads r = M^T w_r.
template <typename T>
void read(const Sizes& s, const Constants& k, const StepData<T>& d) {
  const int64_t N = s.N, M = s.M;
  row_inverse_norms(s, k, d.new_memory, d.aux.new_row_inv);
  for (int64_t r = 0; r < s.R; ++r) {
    const T* key = d.act + s.read_keys + r * M;
    T* content = d.aux.read_content + r * N;
    content_forward(s, k, d.new_memory, key, d.act[s.read_strengths + r], d.aux.new_row_inv,
                    d.aux.read_sim + r * N, content, d.aux.read_key_inv + r);
    const T* modes = d.act + s.read_modes + 3 * r;
    const T* __restrict__ backward = d.aux.backward + r * N;
    const T* __restrict__ forward = d.aux.forward + r * N;
    T* __restrict__ w = d.new_read_weights + r * N;
    NTM_SIMD
    for (int64_t n = 0; n < N; ++n) {
      w[n] = (modes[0] * backward[n] + modes[1] * forward[n]) + modes[2] * content[n];
    }
    for (int64_t m = 0; m < M; ++m) {
      const T* __restrict__ column = d.new_memory + m * N;
      T total = 0;
      NTM_SIMD_SUM(total)
      for (int64_t n = 0; n < N; ++n) total += w[n] * column[n];
      d.reads[r * M + m] = total;
    }
  }
}

template <typename T>
void step_forward(const Sizes& s, const Constants& k, const StepData<T>& d,
                  std::vector<int64_t>& order) {
  activate(s, k, d.raw, d.act);
  allocate(s, k, d, order);
  row_inverse_norms(s, k, d.old_memory, d.aux.old_row_inv);
  content_forward(s, k, d.old_memory, d.act + s.write_key, d.act[s.write_strength],
                  d.aux.old_row_inv, d.aux.write_sim, d.aux.write_content, d.aux.write_key_inv);
  write(s, d);
  link(s, d);
  read(s, k, d);
}

// -- backward ---------------------------------------------------------------------------------

// The gradients of one sequence at one step: `in_*` of the state after the step (read only),
// `out_*` of the state before it (written), `raw` of the interface before the clip.
template <typename T>
struct StepGradients {
  const T* in_memory;  // (M, N) transposed
  const T* in_usage;   // (N)
  const T* in_link;    // (N, N)
  const T* in_precedence;
  const T* in_read_weights;   // (R, N)
  const T* in_write_weights;  // (N)
  const T* reads;             // (R * M)
  T* out_memory;
  T* out_usage;
  T* out_link;
  T* out_precedence;
  T* out_read_weights;
  T* out_write_weights;
  T* raw;  // (P)
};

// Work space of one thread for one step's backward pass.
template <typename T>
struct Work {
  std::vector<T> data;
  T *act, *read_weights, *grad_forward, *grad_backward, *rows, *write_weights, *row, *column,
      *allocation;

  void reset(const Sizes& s) {
    const int64_t N = s.N, RN = s.R * s.N;
    data.assign(s.P + 3 * RN + 5 * N, T(0));
    act = data.data();                   // (P) gradients of the activated parameters
    read_weights = act + s.P;            // (R, N) of the read weights after the step
    grad_forward = read_weights + RN;    // (R, N) of f
    grad_backward = grad_forward + RN;   // (R, N) of b
    rows = grad_backward + RN;           // (N) row-norm coefficients
    write_weights = rows + N;            // (N)
    row = write_weights + N;             // (N) one row of the link's gradient, and others
    column = row + N;                    // (N)
    allocation = column + N;             // (N)
  }
};

// The backward pass of content_forward, given dc in `grad` (overwritten): adds to the memory's
// gradient and to `rows` (applied by finish_rows), returns dk in grad_key and d beta.
template <typename T>
T content_backward(const Sizes& s, const T* __restrict__ memory, const T* key, T beta,
                   T key_inv, const T* __restrict__ row_inv, const T* __restrict__ sim,
                   const T* content, T* __restrict__ grad, T* __restrict__ grad_memory,
                   T* __restrict__ rows, T* grad_key) {
  const int64_t N = s.N, M = s.M;
  softmax_backward(content, grad, N);
  T grad_beta = 0, key_coef = 0;
  NTM_SIMD_SUM(grad_beta, key_coef)
  for (int64_t n = 0; n < N; ++n) {
    grad_beta += grad[n] * sim[n];
    const T grad_sim = grad[n] * beta;
    grad[n] = grad_sim * key_inv * row_inv[n];  // now d dot(n)
    const T weighted = grad_sim * sim[n];
    key_coef += weighted;
    rows[n] += weighted * row_inv[n] * row_inv[n];
  }
  key_coef *= key_inv * key_inv;
  for (int64_t m = 0; m < M; ++m) {
    const T* __restrict__ column = memory + m * N;
    T* __restrict__ out = grad_memory + m * N;
    const T key_m = key[m];
    T total = 0;
    NTM_SIMD_SUM(total)
    for (int64_t n = 0; n < N; ++n) {
      total += grad[n] * column[n];
      out[n] += grad[n] * key_m;
    }
    grad_key[m] = total - key_coef * key_m;
  }
  return grad_beta;
}

// dM(n, m) -= rows(n) M(n, m): the row norms' part of the content backward; rows reset.
template <typename T>
void finish_rows(const Sizes& s, const T* __restrict__ memory, T* __restrict__ grad_memory,
                 T* __restrict__ rows) {
  const int64_t N = s.N;
  for (int64_t m = 0; m < s.M; ++m) {
    const T* __restrict__ column = memory + m * N;
    T* __restrict__ out = grad_memory + m * N;
    NTM_SIMD
    for (int64_t n = 0; n < N; ++n) out[n] -= rows[n] * column[n];
  }
  std::fill(rows, rows + N, T(0));
}

// Reads, read weights and read content, backwards: the gradient of the memory after the step
// (complete) in g.out_memory, d f and d b (each (R, N)) in grad_forward and grad_backward.
template <typename T>
void read_backward(const Sizes& s, const StepData<T>& d, const StepGradients<T>& g,
                   Work<T>& work, T* grad_forward, T* grad_backward) {
  const int64_t N = s.N, M = s.M, R = s.R;
  T* grad_memory = g.out_memory;
  std::copy(g.in_memory, g.in_memory + M * N, grad_memory);
  std::copy(g.in_read_weights, g.in_read_weights + R * N, work.read_weights);
  for (int64_t r = 0; r < R; ++r) {
    const T* __restrict__ w = d.new_read_weights + r * N;
    T* __restrict__ grad_w = work.read_weights + r * N;
    // r = M^T w: dw(n) += sum_m dr(m) M(n, m), dM(n, m) += w(n) dr(m).
    for (int64_t m = 0; m < M; ++m) {
      const T* __restrict__ column = d.new_memory + m * N;
      T* __restrict__ out = grad_memory + m * N;
      const T grad_read = g.reads[r * M + m];
      NTM_SIMD
      for (int64_t n = 0; n < N; ++n) {
        grad_w[n] += grad_read * column[n];
        out[n] += w[n] * grad_read;
      }
    }
    const T* modes = d.act + s.read_modes + 3 * r;
    T* grad_modes = work.act + s.read_modes + 3 * r;
    const T* backward = d.aux.backward + r * N;
    const T* forward = d.aux.forward + r * N;
    const T* content = d.aux.read_content + r * N;
    T grad_b = 0, grad_f = 0, grad_c = 0;
    T* grad_content = grad_forward + r * N;  // borrowed until the end of this head
    for (int64_t n = 0; n < N; ++n) {
      grad_b += grad_w[n] * backward[n];
      grad_f += grad_w[n] * forward[n];
      grad_c += grad_w[n] * content[n];
      grad_content[n] = modes[2] * grad_w[n];
    }
    grad_modes[0] = grad_b, grad_modes[1] = grad_f, grad_modes[2] = grad_c;
    work.act[s.read_strengths + r] = content_backward(
        s, d.new_memory, d.act + s.read_keys + r * M, d.act[s.read_strengths + r],
        d.aux.read_key_inv[r], d.aux.new_row_inv, d.aux.read_sim + r * N, content,
        grad_content, grad_memory, work.rows, work.act + s.read_keys + r * M);
    for (int64_t n = 0; n < N; ++n) {
      grad_backward[r * N + n] = modes[0] * grad_w[n];
      grad_forward[r * N + n] = modes[1] * grad_w[n];
    }
  }
  finish_rows(s, d.new_memory, grad_memory, work.rows);
}

// Directional weights, link and precedence, backwards, one row of L at a time:
//   dL += df_r w_r'^T + w_r' db_r^T (then 0 on the diagonal),
//   dw_r'(j) += sum_i L(i,j) df_r(i),  dw_r'(i) += sum_j L(i,j) db_r(j),
//   dw(i) += sum_j dL(i,j) (p'(j) - L'(i,j)),  dw(j) -= sum_i dL(i,j) L'(i,j),
//   dp'(j) += sum_i dL(i,j) w(i),  dL'(i,j) = (1 - w(i) - w(j)) dL(i,j), bounded;
//   precedence: dp' += (1 - sum w) dp,  dw += dp - dp.p'.
template <typename T>
void link_backward(const Sizes& s, const Constants& k, const StepData<T>& d,
                   const StepGradients<T>& g, Work<T>& work, const T* grad_forward,
                   const T* grad_backward) {
  const int64_t N = s.N, R = s.R;
  const T bound = T(k.grad_bound);
  const T* __restrict__ w = d.new_write_weights;
  const T* __restrict__ p = d.old_precedence;
  T* __restrict__ grad_w = work.write_weights;
  T* __restrict__ grad_p = g.out_precedence;
  T* __restrict__ column = work.column;
  T* __restrict__ grad_row = work.row;
  T* grad_previous = g.out_read_weights;  // the read weights before the step, not yet bounded
  T total = 0, dot = 0;
  for (int64_t n = 0; n < N; ++n) total += w[n];
  for (int64_t n = 0; n < N; ++n) dot += g.in_precedence[n] * p[n];
  for (int64_t n = 0; n < N; ++n) {
    grad_p[n] = (T(1) - total) * g.in_precedence[n];
    grad_w[n] = g.in_write_weights[n] + (g.in_precedence[n] - dot);
    column[n] = T(0);
  }
  std::fill(grad_previous, grad_previous + R * N, T(0));
  for (int64_t i = 0; i < N; ++i) {
    const T* __restrict__ row = d.new_link + i * N;
    const T* __restrict__ old_row = d.old_link + i * N;
    const T* __restrict__ in_row = g.in_link + i * N;
    T* __restrict__ out_row = g.out_link + i * N;
    std::copy(in_row, in_row + N, grad_row);
    for (int64_t r = 0; r < R; ++r) {
      const T* __restrict__ previous = d.old_read_weights + r * N;
      const T* __restrict__ grad_b = grad_backward + r * N;
      T* __restrict__ grad_prev = grad_previous + r * N;
      const T grad_f_i = grad_forward[r * N + i], previous_i = previous[i];
      T total_b = 0;
      NTM_SIMD_SUM(total_b)
      for (int64_t j = 0; j < N; ++j) {
        grad_row[j] += grad_f_i * previous[j] + previous_i * grad_b[j];
        grad_prev[j] += row[j] * grad_f_i;
        total_b += row[j] * grad_b[j];
      }
      grad_prev[i] += total_b;
    }
    grad_row[i] = T(0);  // the diagonal is masked
    const T wi = w[i], keep = T(1) - wi;
    T grad_wi = 0;
    NTM_SIMD_SUM(grad_wi)
    for (int64_t j = 0; j < N; ++j) {
      const T grad = grad_row[j];
      grad_wi += grad * (p[j] - old_row[j]);
      column[j] += grad * old_row[j];
      grad_p[j] += grad * wi;
      out_row[j] = clamp((keep - w[j]) * grad, bound);
    }
    grad_w[i] += grad_wi;
  }
  for (int64_t n = 0; n < N; ++n) grad_w[n] -= column[n];
}

// Erase and write, write weights and write content, backwards: dM' in g.out_memory (still
// to be bounded); d allocation in work.allocation.
template <typename T>
void write_backward(const Sizes& s, const StepData<T>& d, const StepGradients<T>& g,
                    Work<T>& work) {
  const int64_t N = s.N, M = s.M;
  const T* __restrict__ w = d.new_write_weights;
  T* __restrict__ grad_w = work.write_weights;
  T* grad_memory = g.out_memory;
  // M = M' (1 - w e^T) + w v^T: dv(m) = sum_n w(n) dM(n, m), de(m) = -sum_n dM M' w,
  // dw(n) += sum_m dM(n, m) (v(m) - M'(n, m) e(m)), dM' = dM (1 - w e^T).
  for (int64_t m = 0; m < M; ++m) {
    const T* __restrict__ column = d.old_memory + m * N;
    T* __restrict__ out = grad_memory + m * N;
    const T e = d.act[s.erase + m], v = d.act[s.values + m];
    T grad_v = 0, grad_e = 0;
    NTM_SIMD_SUM(grad_v, grad_e)
    for (int64_t n = 0; n < N; ++n) {
      const T grad = out[n];
      grad_v += w[n] * grad;
      grad_e += grad * column[n] * w[n];
      grad_w[n] += grad * (v - column[n] * e);
      out[n] = grad * (T(1) - w[n] * e);
    }
    work.act[s.values + m] = grad_v;
    work.act[s.erase + m] = -grad_e;
  }
  // w = g^w (c + g^a (a - c)).
  const T gate_a = d.act[s.allocation_gate], gate_w = d.act[s.write_gate];
  const T* content = d.aux.write_content;
  T* grad_content = work.row;
  T grad_gate_w = 0, grad_gate_a = 0;
  for (int64_t n = 0; n < N; ++n) {
    const T difference = d.allocation[n] - content[n];
    grad_gate_w += grad_w[n] * (content[n] + gate_a * difference);
    const T grad_mixed = gate_w * grad_w[n];
    grad_gate_a += grad_mixed * difference;
    work.allocation[n] = gate_a * grad_mixed;
    grad_content[n] = (T(1) - gate_a) * grad_mixed;
  }
  work.act[s.write_gate] = grad_gate_w;
  work.act[s.allocation_gate] = grad_gate_a;
  work.act[s.write_strength] = content_backward(
      s, d.old_memory, d.act + s.write_key, d.act[s.write_strength], *d.aux.write_key_inv,
      d.aux.old_row_inv, d.aux.write_sim, content, grad_content, grad_memory, work.rows,
      work.act + s.write_key);
  finish_rows(s, d.old_memory, grad_memory, work.rows);
}

// Allocation and usage, backwards. With s_j the sorted mapped usages and c_j = prod_{l<j} s_l,
// a_j = (1 - s_j) c_j: ds_j = c_j (S_j - da_j), S_j = sum_{k>j} da_k (1 - s_k) prod_{j<l<k} s_l
// (no division: a usage may be tiny). Then u = (u' + (1 - u') w') psi, psi = prod_r (1 - f_r
// w_r'). The read weights' gradient is complete after this: it is bounded here.
template <typename T>
void usage_backward(const Sizes& s, const Constants& k, const StepData<T>& d,
                    const StepGradients<T>& g, Work<T>& work) {
  const int64_t N = s.N, R = s.R;
  T* grad_u = work.row;
  std::copy(g.in_usage, g.in_usage + N, grad_u);
  const T scale = T(1) - T(k.alloc_eps);
  T later = 0;
  for (int64_t j = N - 1; j >= 0; --j) {
    const int64_t n = static_cast<int64_t>(d.aux.order[j]);
    const T grad_a = work.allocation[n], sorted = d.aux.sorted[j];
    grad_u[n] += scale * d.aux.before[j] * (later - grad_a);
    later = grad_a * (T(1) - sorted) + sorted * later;
  }
  const T* psi = d.aux.retention;
  T* grad_psi = work.column;
  for (int64_t n = 0; n < N; ++n) {
    const T u = d.old_usage[n], w = d.old_write_weights[n];
    const T grad_kept = grad_u[n] * psi[n];
    grad_psi[n] = grad_u[n] * (u + (T(1) - u) * w);
    g.out_usage[n] = grad_kept * (T(1) - w);
    g.out_write_weights[n] = grad_kept * (T(1) - u);
  }
  // psi = prod_r phi_r, phi_r = 1 - f_r w_r': d phi_r = d psi prod_{q != r} phi_q (the
  // product of the others, not psi / phi_r: a factor may be 0).
  const T* free_gates = d.act + s.free_gates;
  const T bound = T(k.grad_bound);
  for (int64_t r = 0; r < R; ++r) {
    const T* w = d.old_read_weights + r * N;
    T* grad_prev = g.out_read_weights + r * N;
    const T f = free_gates[r];
    T grad_f = 0;
    for (int64_t n = 0; n < N; ++n) {
      T others = 1;
      for (int64_t q = 0; q < R; ++q) {
        if (q != r) others *= T(1) - free_gates[q] * d.old_read_weights[q * N + n];
      }
      const T grad_factor = grad_psi[n] * others;
      grad_f -= grad_factor * w[n];
      grad_prev[n] = clamp(grad_prev[n] - grad_factor * f, bound);
    }
    work.act[s.free_gates + r] = grad_f;
  }
}

// The activations, then the clip (whose gradient passes where -CLIP <= raw <= CLIP).
template <typename T>
void activate_backward(const Sizes& s, const Constants& k, const T* raw, const T* act,
                       T* grad_act, T* grad_raw) {
  const T clip = T(k.clip);
  for (int64_t r = 0; r < s.R; ++r) {
    const int64_t at = s.read_modes + 3 * r;
    softmax_backward(act + at, grad_act + at, int64_t(3));
  }
  for (int64_t i = 0; i < s.P; ++i) {
    const T x = clamp(raw[i], clip);
    const bool strength = (i >= s.read_strengths && i < s.write_key) || i == s.write_strength;
    const bool gate = (i >= s.erase && i < s.values) || (i >= s.free_gates && i < s.read_modes);
    T grad = grad_act[i];
    if (strength) {
      if (x <= T(20)) {
        const T z = std::exp(x);
        grad *= z / (z + T(1));
      }
    } else if (gate) {
      grad *= (T(1) - act[i]) * act[i];
    }
    grad_raw[i] = std::abs(raw[i]) <= clip ? grad : T(0);
  }
}

template <typename T>
void step_backward(const Sizes& s, const Constants& k, const StepData<T>& d,
                   const StepGradients<T>& g, Work<T>& work) {
  work.reset(s);
  read_backward(s, d, g, work, work.grad_forward, work.grad_backward);
  link_backward(s, k, d, g, work, work.grad_forward, work.grad_backward);
  write_backward(s, d, g, work);
  const T bound = T(k.grad_bound);
  for (int64_t i = 0; i < s.M * s.N; ++i) g.out_memory[i] = clamp(g.out_memory[i], bound);
  usage_backward(s, k, d, g, work);
  activate_backward(s, k, d.raw, d.act, work.act, g.raw);
}

}  // namespace dnc_kernel
