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
//
// Sequences of different lengths (ntm/lengths.py) run as a PackedSequence does: the batch is
// sorted longest first and `batch_sizes[t]` says how many sequences are still running at step
// t (empty: all B at every step). Step t touches only those; an ended sequence's state stays
// as it was at its end, its outputs past the end are zero, and in the backward pass the
// gradient of its final state waits, untouched, until the steps reach its end.
//
// Files: kernel_math.h (sizes, scalar math, vectorised loops), heads_cpu.h (one step of the
// heads and the memory), this file (the sequence: controller, steps, batch, bindings).

#include <ATen/Parallel.h>

#include "heads_cpu.h"

namespace ntm_kernel {
namespace {  // internal linkage: the bindings below are the only users

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

// The sequences running at step t: a prefix of the batch (see the top of this file).
inline int64_t active_at(const std::vector<int64_t>& batch_sizes, int64_t t, int64_t batch) {
  return batch_sizes.empty() ? batch : batch_sizes[t];
}

void check_batch_sizes(const std::vector<int64_t>& batch_sizes, int64_t steps, int64_t batch) {
  if (batch_sizes.empty()) return;
  TORCH_CHECK(static_cast<int64_t>(batch_sizes.size()) == steps, "ntm kernel: ",
              batch_sizes.size(), " batch sizes for ", steps, " steps");
  for (int64_t t = 0; t < steps; ++t) {
    TORCH_CHECK(batch_sizes[t] >= 0 && batch_sizes[t] <= (t == 0 ? batch : batch_sizes[t - 1]),
                "ntm kernel: batch sizes must not increase and lie in 0..", batch);
  }
}

// The first `active` rows of a [B, ...] tensor: the tensor itself when all are (a view costs
// an allocation, which at batch 1 is a measurable part of a step).
inline Tensor rows(const Tensor& tensor, int64_t active) {
  return active == tensor.size(0) ? tensor : tensor.narrow(0, 0, active);
}

// Zero rows active.. of a [B, ...] step of a buffer: nothing past a sequence's end is read.
inline void zero_rows(const Tensor& step, int64_t active) {
  const int64_t batch = step.size(0);
  if (active < batch) step.narrow(0, active, batch - active).zero_();
}

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
                            std::vector<double> constants, std::vector<int64_t> batch_sizes) {
  const Constants k{constants[0], constants[1], constants[2], constants[3]};
  const int64_t layers = static_cast<int64_t>(layer_weights.size());
  TORCH_CHECK(projected.dim() == 3 && memory0.dim() == 3 && head_weight.dim() == 2 &&
                  layers >= 1, "ntm kernel: inputs of the wrong rank");
  const Sizes s = sizes_of(projected.size(0), projected.size(1), projected.size(2),
                           memory0.size(1), memory0.size(2), head_weight, layers, hidden,
                           read_heads, write_heads, shifts, lstm);
  check_inputs(s, projected, memory0, focus0, reads0, state0, layer_weights, bias, head_weight,
               head_bias);
  check_batch_sizes(batch_sizes, s.T, s.B);
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
      const int64_t Bt = active_at(batch_sizes, t, B);  // the sequences running at this step
      // Controller (ntm/controllers.py): layer 0 sees [reads, hidden], later ones the layer below.
      Tensor below = reads;
      for (int64_t l = 0; l < layers; ++l) {
        Tensor joined = saved[kFixed + per_layer * l][t];
        const int64_t below_size = below.size(1);
        const T_* below_data = below.data_ptr<T_>();
        T_* joined_data = joined.data_ptr<T_>();
        const int64_t inputs = joined.size(1);
        for (int64_t b = 0; b < Bt; ++b) {
          std::copy(below_data + b * below_size, below_data + (b + 1) * below_size,
                    joined_data + b * inputs);
          if (lstm) {
            const T_* hidden_data = state[2 * l].data_ptr<T_>();
            std::copy(hidden_data + b * C, hidden_data + (b + 1) * C,
                      joined_data + b * inputs + below_size);
          }
        }
        const Tensor offset = l == 0 ? rows(projected[t], Bt) : bias[l];
        Tensor step_gates = rows(gates, Bt);
        at::addmm_out(step_gates, offset, rows(joined, Bt), layer_weights[l].t());
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
          const bool vectorised = Bt >= kVectorBatch;
          if (vectorised) {
            Tensor sig_rows = rows(sig_step, Bt);
            Tensor candidate_rows = rows(candidate_step, Bt);
            at::sigmoid_out(sig_rows, step_gates.narrow(1, 0, 3 * C));
            at::tanh_out(candidate_rows, step_gates.narrow(1, 3 * C, C));
          } else {
            for (int64_t b = 0; b < Bt; ++b) {
              for (int64_t c = 0; c < 3 * C; ++c) {
                sig[b * 3 * C + c] = sigmoid(gates_data[b * s.G + c]);
              }
              for (int64_t c = 0; c < C; ++c) {
                candidate[b * C + c] = std::tanh(gates_data[b * s.G + 3 * C + c]);
              }
            }
          }
          // c' = f c + i candidate.
          for (int64_t b = 0; b < Bt; ++b) {
            for (int64_t c = 0; c < C; ++c) {
              const int64_t i = b * C + c;
              cell_before[i] = cell_state[i];
              cell_state[i] =
                  sig[b * 3 * C + C + c] * cell_state[i] + sig[b * 3 * C + c] * candidate[i];
            }
          }
          if (vectorised) {
            Tensor tanh_cell_rows = rows(tanh_cell_step, Bt);
            at::tanh_out(tanh_cell_rows, rows(state[2 * l + 1], Bt));
          } else {
            for (int64_t i = 0; i < Bt * C; ++i) tanh_cell[i] = std::tanh(cell_state[i]);
          }
          // h' = o tanh(c').
          for (int64_t b = 0; b < Bt; ++b) {
            for (int64_t c = 0; c < C; ++c) {
              const int64_t i = b * C + c;
              hidden_state[i] = sig[b * 3 * C + 2 * C + c] * tanh_cell[i];
              out_data[i] = hidden_state[i];
            }
          }
        } else {
          Tensor hidden_step = saved[kFixed + per_layer * l + 1][t];
          T_* hidden_saved = hidden_step.data_ptr<T_>();
          if (Bt >= kVectorBatch) {
            Tensor hidden_rows = rows(hidden_step, Bt);
            at::tanh_out(hidden_rows, step_gates);
          } else {
            for (int64_t i = 0; i < Bt * C; ++i) hidden_saved[i] = std::tanh(gates_data[i]);
          }
          std::copy(hidden_saved, hidden_saved + Bt * C, out_data);
        }
        zero_rows(out, Bt);
        below = out;
      }
      Tensor raw = rows(saved[kRaw][t], Bt);
      at::addmm_out(raw, head_bias, rows(outputs[t], Bt), head_weight.t());
      const T_* previous_data =
          t == 0 ? focus.data_ptr<T_>() : all_focus.data_ptr<T_>() + (t - 1) * B * H * N;
      for_each_sequence(Bt, [&](int64_t b) {
        const int64_t tb = t * B + b;
        heads_forward(s, k,
                      step_pointers(base, s, t, b, previous_data + b * H * N,
                                    all_focus.data_ptr<T_>(),
                                    all_reads.data_ptr<T_>() + tb * s.R * M,
                                    base[kMemories] + (tb + B) * N * M));
      });
      Tensor step_reads = all_reads[t];
      if (Bt < B) {  // nothing past a sequence's end is read; zeros make the buffers definite
        zero_rows(step_reads, Bt);
        zero_rows(all_focus[t], Bt);
        zero_rows(memories[t + 1], Bt);
        for (int i = kRaw; i < kPrevious; ++i) zero_rows(saved[i][t], Bt);
        for (size_t i = kFixed; i < saved.size(); ++i) zero_rows(saved[i][t], Bt);
      }
      reads = step_reads;
    }
  });
  std::vector<Tensor> results = {outputs, all_reads, all_focus};
  if (batch_sizes.empty()) {
    results.push_back(memories[T].transpose(1, 2).contiguous());
    results.push_back(all_focus[T - 1].clone());
    results.push_back(all_reads[T - 1].clone());
  } else {  // each sequence's state after its own last step (memory0... for length 0)
    Tensor memory = at::empty({B, M, N}, options);  // transposed
    Tensor final_focus = at::empty({B, H, N}, options);
    Tensor final_reads = at::empty({B, s.R * M}, options);
    for (int64_t b = 0, length = T; b < B; ++b) {
      while (length > 0 && batch_sizes[length - 1] <= b) --length;
      memory[b].copy_(memories[length][b]);
      final_focus[b].copy_(length == 0 ? focus[b] : all_focus[length - 1][b]);
      final_reads[b].copy_(length == 0 ? reads0[b] : all_reads[length - 1][b]);
    }
    results.push_back(memory.transpose(1, 2).contiguous());
    results.push_back(final_focus);
    results.push_back(final_reads);
  }
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
                             std::vector<double> constants, std::vector<int64_t> batch_sizes) {
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
  check_batch_sizes(batch_sizes, T, B);

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
      // Sequences from Bt on have ended before step t: their gradients (of their final state)
      // are left as they are, and their rows of the per-step gradients stay zero.
      const int64_t Bt = active_at(batch_sizes, t, B);
      at::add_out(step_reads, grad_reads, grad_all_reads[t]);
      const T_* previous_data = t == 0 ? saved[kPrevious].data_ptr<T_>()
                                       : all_focus.data_ptr<T_>() + (t - 1) * B * H * N;
      Tensor grad_raw = grad_raw_all[t];
      zero_rows(grad_raw, Bt);
      T_* grad_memory_data = grad_memory.data_ptr<T_>();
      T_* grad_focus_data = grad_focus.data_ptr<T_>();
      T_* step_reads_data = step_reads.data_ptr<T_>();
      T_* next_grad_memory_data = next_grad_memory.data_ptr<T_>();
      T_* next_grad_focus_data = next_grad_focus.data_ptr<T_>();
      T_* grad_raw_data = grad_raw.data_ptr<T_>();
      for_each_sequence(Bt, [&](int64_t b) {
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
      if (Bt < B) {  // the ended sequences' gradients carry on unchanged
        next_grad_memory.narrow(0, Bt, B - Bt).copy_(grad_memory.narrow(0, Bt, B - Bt));
        next_grad_focus.narrow(0, Bt, B - Bt).copy_(grad_focus.narrow(0, Bt, B - Bt));
      }
      std::swap(grad_memory, next_grad_memory);
      std::swap(grad_focus, next_grad_focus);
      // dOutput = dOutput(loss) + dRaw W_heads.
      Tensor grad_output_rows = rows(grad_output, Bt);
      at::addmm_out(grad_output_rows, rows(grad_outputs[t], Bt), rows(grad_raw, Bt),
                    head_weight);
      // Controller, top layer down.
      Tensor grad_below = grad_output_rows;
      for (int64_t l = layers - 1; l >= 0; --l) {
        const int64_t base = kFixed + per_layer * l;
        Tensor grad_gates_step = grad_gates_all[l][t];
        zero_rows(grad_gates_step, Bt);
        Tensor grad_gates = rows(grad_gates_step, Bt);
        T_* dg = grad_gates.data_ptr<T_>();
        const T_* gb = grad_below.data_ptr<T_>();
        if (lstm) {
          const T_* sig = saved[base + 1][t].data_ptr<T_>();
          const T_* candidate = saved[base + 2][t].data_ptr<T_>();
          const T_* cell_before = saved[base + 3][t].data_ptr<T_>();
          const T_* tanh_cell = saved[base + 4][t].data_ptr<T_>();
          T_* grad_hidden_state = grad_state[2 * l].data_ptr<T_>();
          T_* grad_cell_state = grad_state[2 * l + 1].data_ptr<T_>();
          for (int64_t b = 0; b < Bt; ++b) {
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
          rows(grad_state[2 * l], Bt).copy_(
              grad_joined.narrow(1, inputs, C).clamp(-bound, bound));
          grad_below = grad_joined.narrow(1, 0, inputs).contiguous();
        } else {
          const T_* hidden_saved = saved[base + 1][t].data_ptr<T_>();
          for (int64_t i = 0; i < Bt * C; ++i) {
            dg[i] = gb[i] * (T_(1) - hidden_saved[i] * hidden_saved[i]);
          }
          grad_below = at::mm(grad_gates, layer_weights[l]);
        }
      }
      if (Bt == B) {
        grad_reads = grad_below.clamp(-bound, bound);
      } else {  // in place: the ended sequences' rows stay
        rows(grad_reads, Bt).copy_(grad_below.clamp(-bound, bound));
      }
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
}  // namespace ntm_kernel

using ntm_kernel::Tensor;

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("exp", [](const Tensor& x) { return ntm_kernel::elementwise(x, false); },
             "the kernel's exp");
  module.def("log", [](const Tensor& x) { return ntm_kernel::elementwise(x, true); },
             "the kernel's log");
  // The GIL is released while a sequence runs (nothing in it touches Python objects), so that
  // other Python threads (data loading, progress, logging) are not held up.
  module.def("forward", &ntm_kernel::forward, "An NTM sequence, forward (see ntm/kernel.py)",
             pybind11::call_guard<pybind11::gil_scoped_release>());
  module.def("backward", &ntm_kernel::backward, "An NTM sequence, backward (see ntm/kernel.py)",
             pybind11::call_guard<pybind11::gil_scoped_release>());
}
