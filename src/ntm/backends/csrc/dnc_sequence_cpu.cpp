// The DNC's CPU kernel: a whole DNC sequence (controller, interface, heads and memory), forward
// and backward, in C++ (ntm/backends/dnc_kernel.py builds and calls it).
//
// The plain autograd path records every tensor operation of a step and, at the NTM's sizes,
// spends most of its time in their overhead and in the link matrix's N x N temporaries. Here a step is a few matrix products (ATen) for the controller and the
// interface, and plain loops (dnc_heads_cpu.h) for the memory; the link of every step is kept
// for the backward pass ([T + 1, B, N, N]), which walks back through the steps with the
// gradient of the link carried as one N x N matrix per sequence. The sequences of a batch run
// in parallel on torch's intra-op threads.
//
// Shapes: B batch, T steps, C controller width, G gates of a layer, L layers, R read heads,
// N slots, M width, P interface parameters. The controller is ntm/controllers.py's (LSTM
// gates input, forget, output, candidate; or tanh layers); the gradients carried back along
// the controller's state, the read vectors, the memory, the read weights and the link are
// bounded as by ntm.functional.bound_gradient.

#include <ATen/Parallel.h>

#include "dnc_heads_cpu.h"

namespace dnc_kernel {
namespace {

// From this batch size on, the controller's activations are ATen calls over the whole batch.
constexpr int64_t kVectorBatch = 4;

template <typename Fn>
void for_each_sequence(int64_t batch, const Fn& fn) {
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) fn(b);
  });
}

// What the forward pass keeps, in the order the Python side receives it after the outputs.
enum Saved {
  kMemories,        // (T + 1, B, M, N), transposed: [t] before step t
  kUsages,          // (T + 1, B, N)
  kLinks,           // (T + 1, B, N, N)
  kPrecedences,     // (T + 1, B, N)
  kReadWeights,     // (T + 1, B, R, N)
  kWriteWeights,    // (T + 1, B, N)
  kAllocations,     // (T, B, N)
  kRaw,             // (T, B, P)
  kAct,             // (T, B, P)
  kAux,             // (T, B, Sizes::aux)
  kController       // then per layer: joined (T, B, in); LSTM sig (T, B, 3C), candidate,
                    // cell before the step, tanh(cell) (T, B, C); feedforward hidden (T, B, C)
};

// The step data of sequence b at step t (base: the Saved buffers' data, reads: all_reads').
template <typename T>
StepData<T> step_data(const Sizes& s, const std::vector<T*>& base, T* reads, int64_t t,
                      int64_t b) {
  const int64_t B = s.B, N = s.N, M = s.M, R = s.R, P = s.P;
  const int64_t old = t * B + b, now = (t + 1) * B + b;
  return StepData<T>{
      base[kRaw] + old * P,           base[kAct] + old * P,
      base[kMemories] + old * M * N,  base[kMemories] + now * M * N,
      base[kUsages] + old * N,        base[kUsages] + now * N,
      base[kLinks] + old * N * N,     base[kLinks] + now * N * N,
      base[kPrecedences] + old * N,   base[kPrecedences] + now * N,
      base[kReadWeights] + old * R * N, base[kReadWeights] + now * R * N,
      base[kWriteWeights] + old * N,  base[kWriteWeights] + now * N,
      base[kAllocations] + old * N,   reads == nullptr ? nullptr : reads + old * R * M,
      Aux<T>(base[kAux] + old * s.aux, s),
  };
}

// One controller step over the batch (ntm/controllers.py): layer 0 sees [reads, hidden] and
// the projected input, later ones the layer below. Writes the output into `out`.
template <typename T>
void controller_forward(const Sizes& s, int64_t t, const Tensor& projected, const Tensor& reads,
                        std::vector<Tensor>& state, const std::vector<Tensor>& layer_weights,
                        const Tensor& bias, std::vector<Tensor>& saved, Tensor& gates,
                        const Tensor& out) {
  const int64_t B = s.B, C = s.C, per_layer = s.lstm ? 5 : 2;
  Tensor below = reads;
  for (int64_t l = 0; l < s.L; ++l) {
    const int64_t at = kController + per_layer * l;
    Tensor joined = saved[at][t];
    const int64_t below_size = below.size(1), inputs = joined.size(1);
    const T* below_data = below.data_ptr<T>();
    T* joined_data = joined.data_ptr<T>();
    for (int64_t b = 0; b < B; ++b) {
      std::copy(below_data + b * below_size, below_data + (b + 1) * below_size,
                joined_data + b * inputs);
      if (s.lstm) {
        const T* hidden = state[2 * l].data_ptr<T>();
        std::copy(hidden + b * C, hidden + (b + 1) * C, joined_data + b * inputs + below_size);
      }
    }
    at::addmm_out(gates, l == 0 ? projected[t] : bias[l], joined, layer_weights[l].t());
    const T* g = gates.data_ptr<T>();
    Tensor layer_out = l == s.L - 1 ? out : at::empty({B, C}, out.options());
    T* o = layer_out.data_ptr<T>();
    const bool vectorised = B >= kVectorBatch;
    if (s.lstm) {
      Tensor sig_step = saved[at + 1][t], candidate_step = saved[at + 2][t];
      Tensor tanh_step = saved[at + 4][t];
      T* sig = sig_step.data_ptr<T>();
      T* candidate = candidate_step.data_ptr<T>();
      T* cell_before = saved[at + 3][t].data_ptr<T>();
      T* tanh_cell = tanh_step.data_ptr<T>();
      T* hidden = state[2 * l].data_ptr<T>();
      T* cell = state[2 * l + 1].data_ptr<T>();
      if (vectorised) {
        at::sigmoid_out(sig_step, gates.narrow(1, 0, 3 * C));
        at::tanh_out(candidate_step, gates.narrow(1, 3 * C, C));
      } else {
        for (int64_t b = 0; b < B; ++b) {
          for (int64_t c = 0; c < 3 * C; ++c) sig[b * 3 * C + c] = sigmoid(g[b * s.G + c]);
          for (int64_t c = 0; c < C; ++c) candidate[b * C + c] = std::tanh(g[b * s.G + 3 * C + c]);
        }
      }
      for (int64_t b = 0; b < B; ++b) {  // c' = f c + i candidate
        for (int64_t c = 0; c < C; ++c) {
          const int64_t i = b * C + c;
          cell_before[i] = cell[i];
          cell[i] = sig[b * 3 * C + C + c] * cell[i] + sig[b * 3 * C + c] * candidate[i];
        }
      }
      if (vectorised) {
        at::tanh_out(tanh_step, state[2 * l + 1]);
      } else {
        for (int64_t i = 0; i < B * C; ++i) tanh_cell[i] = std::tanh(cell[i]);
      }
      for (int64_t b = 0; b < B; ++b) {  // h' = o tanh(c')
        for (int64_t c = 0; c < C; ++c) {
          const int64_t i = b * C + c;
          hidden[i] = sig[b * 3 * C + 2 * C + c] * tanh_cell[i];
          o[i] = hidden[i];
        }
      }
    } else {
      Tensor hidden_step = saved[at + 1][t];
      T* hidden = hidden_step.data_ptr<T>();
      if (vectorised) {
        at::tanh_out(hidden_step, gates);
      } else {
        for (int64_t i = 0; i < B * C; ++i) hidden[i] = std::tanh(g[i]);
      }
      std::copy(hidden, hidden + B * C, o);
    }
    below = layer_out;
  }
}

void check_inputs(const Sizes& s, const Tensor& projected, const std::vector<Tensor>& access,
                  const Tensor& reads, const std::vector<Tensor>& state,
                  const std::vector<Tensor>& layer_weights, const Tensor& bias,
                  const Tensor& head_weight, const Tensor& head_bias) {
  const auto dtype = projected.scalar_type();
  auto check = [&](const Tensor& tensor, at::IntArrayRef shape, const char* name) {
    TORCH_CHECK(tensor.scalar_type() == dtype, "dnc kernel: ", name, " has dtype ",
                tensor.scalar_type(), ", expected ", dtype);
    TORCH_CHECK(tensor.device().is_cpu(), "dnc kernel: ", name, " is not on the CPU");
    TORCH_CHECK(tensor.sizes() == shape, "dnc kernel: ", name, " has shape ", tensor.sizes(),
                ", expected ", shape);
  };
  const int64_t B = s.B, N = s.N;
  TORCH_CHECK(access.size() == 6, "dnc kernel: the access state has six tensors");
  check(access[0], {B, N, s.M}, "memory");
  check(access[1], {B, N}, "usage");
  check(access[2], {B, N, N}, "link");
  check(access[3], {B, N}, "precedence");
  check(access[4], {B, s.R, N}, "read weights");
  check(access[5], {B, N}, "write weights");
  check(reads, {B, s.R * s.M}, "read vectors");
  TORCH_CHECK(static_cast<int64_t>(state.size()) == (s.lstm ? 2 * s.L : 0),
              "dnc kernel: wrong number of controller state tensors");
  for (const auto& tensor : state) check(tensor, {B, s.C}, "controller state");
  for (int64_t l = 0; l < s.L; ++l) {
    const int64_t below = l == 0 ? s.R * s.M : s.C;
    check(layer_weights[l], {s.G, below + (s.lstm ? s.C : 0)}, "controller weight");
  }
  check(bias, {s.L, s.G}, "controller bias");
  check(head_weight, {s.P, s.C}, "interface weight");
  check(head_bias, {s.P}, "interface bias");
  TORCH_CHECK(s.G == (s.lstm ? 4 : 1) * s.C, "dnc kernel: projected input has ", s.G,
              " gates, expected ", (s.lstm ? 4 : 1) * s.C);
}

std::vector<Tensor> forward(const Tensor& projected, const std::vector<Tensor>& access,
                            const Tensor& reads0, const std::vector<Tensor>& state0,
                            const std::vector<Tensor>& layer_weights, const Tensor& bias,
                            const Tensor& head_weight, const Tensor& head_bias, int64_t hidden,
                            int64_t read_heads, bool lstm, std::vector<double> constants,
                            const std::vector<Tensor>& reuse) {
  const Constants k{constants[0], constants[1], constants[2], constants[3]};
  const int64_t layers = static_cast<int64_t>(layer_weights.size());
  TORCH_CHECK(projected.dim() == 3 && access.size() == 6 && access[0].dim() == 3 &&
                  head_weight.dim() == 2 && layers >= 1, "dnc kernel: inputs of the wrong rank");
  const Sizes s = sizes_of(projected.size(0), projected.size(1), projected.size(2),
                           access[0].size(1), access[0].size(2), head_weight.size(0), layers,
                           hidden, read_heads, lstm);
  check_inputs(s, projected, access, reads0, state0, layer_weights, bias, head_weight,
               head_bias);
  const auto options = projected.options();
  const int64_t T = s.T, B = s.B, C = s.C, N = s.N, M = s.M, R = s.R, P = s.P;
  Tensor outputs = at::empty({T, B, C}, options);
  Tensor all_reads = at::empty({T, B, R * M}, options);
  // The buffers of an earlier call are reused where they fit: a fresh buffer's first touch
  // (a page fault per 4 KiB) costs more than all the writes into it.
  auto buffer = [&, next = size_t(0)](at::IntArrayRef shape) mutable {
    const size_t i = next++;
    if (i < reuse.size() && reuse[i].sizes() == shape && reuse[i].is_contiguous() &&
        reuse[i].scalar_type() == projected.scalar_type() && reuse[i].device().is_cpu()) {
      return reuse[i];
    }
    return at::empty(shape, options);
  };
  std::vector<Tensor> saved = {
      buffer({T + 1, B, M, N}), buffer({T + 1, B, N}), buffer({T + 1, B, N, N}),
      buffer({T + 1, B, N}),    buffer({T + 1, B, R, N}), buffer({T + 1, B, N}),
      buffer({T, B, N}),        buffer({T, B, P}),       buffer({T, B, P}),
      buffer({T, B, s.aux}),
  };
  saved[kMemories][0].copy_(access[0].transpose(1, 2));
  for (int i = 1; i < 6; ++i) saved[i][0].copy_(access[i]);
  for (int64_t l = 0; l < layers; ++l) {
    saved.push_back(buffer({T, B, layer_weights[l].size(1)}));
    if (lstm) {
      saved.push_back(buffer({T, B, 3 * C}));
      for (int i = 0; i < 3; ++i) saved.push_back(buffer({T, B, C}));
    } else {
      saved.push_back(buffer({T, B, C}));
    }
  }
  std::vector<Tensor> state;
  for (const auto& tensor : state0) state.push_back(tensor.contiguous().clone());
  const Tensor weights_t = head_weight.t();
  Tensor gates = at::empty({B, s.G}, options);
  Tensor reads = reads0.contiguous();
  AT_DISPATCH_FLOATING_TYPES(projected.scalar_type(), "dnc_sequence_forward", [&] {
    using T_ = scalar_t;
    std::vector<T_*> base(kController);
    for (int i = 0; i < kController; ++i) base[i] = saved[i].data_ptr<T_>();
    std::vector<std::vector<int64_t>> orders(at::get_num_threads() + 1);
    for (int64_t t = 0; t < T; ++t) {
      controller_forward<T_>(s, t, projected, reads, state, layer_weights, bias, saved, gates,
                             outputs[t]);
      Tensor raw = saved[kRaw][t];
      at::addmm_out(raw, head_bias, outputs[t], weights_t);
      T_* reads_data = all_reads.data_ptr<T_>();
      for_each_sequence(B, [&](int64_t b) {
        step_forward(s, k, step_data<T_>(s, base, reads_data, t, b),
                     orders[at::get_thread_num()]);
      });
      reads = all_reads[t];
    }
  });
  std::vector<Tensor> results = {outputs, all_reads};
  results.insert(results.end(), saved.begin(), saved.end());
  for (const auto& tensor : state) results.push_back(tensor);
  return results;
}

// One controller step backwards (top layer down), from d output in `grad_below`; fills the
// step's gate gradients and returns d reads (bounded), updating grad_state (bounded).
template <typename T>
Tensor controller_backward(const Sizes& s, const Constants& k, int64_t t,
                           const std::vector<Tensor>& saved,
                           const std::vector<Tensor>& layer_weights, Tensor grad_below,
                           std::vector<Tensor>& grad_state, std::vector<Tensor>& grad_gates_all) {
  const int64_t B = s.B, C = s.C, per_layer = s.lstm ? 5 : 2;
  const T bound = T(k.grad_bound);
  for (int64_t l = s.L - 1; l >= 0; --l) {
    const int64_t at = kController + per_layer * l;
    Tensor grad_gates = grad_gates_all[l][t];
    T* dg = grad_gates.data_ptr<T>();
    const T* gb = grad_below.data_ptr<T>();
    if (s.lstm) {
      const T* sig = saved[at + 1][t].data_ptr<T>();
      const T* candidate = saved[at + 2][t].data_ptr<T>();
      const T* cell_before = saved[at + 3][t].data_ptr<T>();
      const T* tanh_cell = saved[at + 4][t].data_ptr<T>();
      T* grad_hidden_state = grad_state[2 * l].data_ptr<T>();
      T* grad_cell_state = grad_state[2 * l + 1].data_ptr<T>();
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t c = 0; c < C; ++c) {
          const int64_t i = b * C + c;
          const T input_gate = sig[b * 3 * C + c];
          const T forget_gate = sig[b * 3 * C + C + c];
          const T output_gate = sig[b * 3 * C + 2 * C + c];
          const T grad_h = gb[i] + grad_hidden_state[i];
          const T grad_c =
              grad_cell_state[i] + grad_h * output_gate * (T(1) - tanh_cell[i] * tanh_cell[i]);
          T* row = dg + b * s.G;
          row[c] = grad_c * candidate[i] * (T(1) - input_gate) * input_gate;
          row[C + c] = grad_c * cell_before[i] * (T(1) - forget_gate) * forget_gate;
          row[2 * C + c] = grad_h * tanh_cell[i] * (T(1) - output_gate) * output_gate;
          row[3 * C + c] = grad_c * input_gate * (T(1) - candidate[i] * candidate[i]);
          grad_cell_state[i] = clamp(grad_c * forget_gate, bound);
        }
      }
      Tensor grad_joined = at::mm(grad_gates, layer_weights[l]);
      const int64_t inputs = grad_joined.size(1) - C;
      grad_state[2 * l].copy_(grad_joined.narrow(1, inputs, C).clamp(-k.grad_bound, k.grad_bound));
      grad_below = grad_joined.narrow(1, 0, inputs).contiguous();
    } else {
      const T* hidden = saved[at + 1][t].data_ptr<T>();
      for (int64_t i = 0; i < B * C; ++i) dg[i] = gb[i] * (T(1) - hidden[i] * hidden[i]);
      grad_below = at::mm(grad_gates, layer_weights[l]);
    }
  }
  return grad_below.clamp(-k.grad_bound, k.grad_bound);
}

std::vector<Tensor> backward(const std::vector<Tensor>& saved, const Tensor& outputs,
                             const std::vector<Tensor>& layer_weights, const Tensor& head_weight,
                             const Tensor& grad_outputs, const Tensor& grad_all_reads,
                             const std::vector<Tensor>& grad_access, const Tensor& grad_reads_in,
                             const std::vector<Tensor>& grad_state_in, int64_t hidden,
                             int64_t read_heads, bool lstm, std::vector<double> constants) {
  const Constants k{constants[0], constants[1], constants[2], constants[3]};
  const int64_t layers = static_cast<int64_t>(layer_weights.size());
  const Tensor& memories = saved[kMemories];
  const int64_t T = memories.size(0) - 1, B = memories.size(1);
  const Sizes s = sizes_of(T, B, layer_weights[0].size(0), memories.size(3), memories.size(2),
                           head_weight.size(0), layers, hidden, read_heads, lstm);
  const auto options = memories.options();
  const int64_t C = s.C, N = s.N, M = s.M, R = s.R, P = s.P;
  TORCH_CHECK(grad_access.size() == 6, "dnc kernel: six gradients of the access state");
  // The gradients carried back: [0] of the state after the step, [1] before it (swapped).
  std::vector<Tensor> carried[2];
  carried[0] = {grad_access[0].transpose(1, 2).contiguous()};
  for (int i = 1; i < 6; ++i) carried[0].push_back(grad_access[i].contiguous().clone());
  for (int i = 0; i < 6; ++i) carried[1].push_back(at::empty_like(carried[0][i]));
  Tensor grad_reads = grad_reads_in.contiguous().clone();
  std::vector<Tensor> grad_state;
  for (const auto& tensor : grad_state_in) grad_state.push_back(tensor.contiguous().clone());
  Tensor grad_raw_all = at::empty({T, B, P}, options);
  std::vector<Tensor> grad_gates_all;
  for (int64_t l = 0; l < layers; ++l) grad_gates_all.push_back(at::empty({T, B, s.G}, options));
  Tensor step_reads = at::empty({B, R * M}, options);
  Tensor grad_output = at::empty({B, C}, options);
  AT_DISPATCH_FLOATING_TYPES(memories.scalar_type(), "dnc_sequence_backward", [&] {
    using T_ = scalar_t;
    std::vector<T_*> base(kController);
    for (int i = 0; i < kController; ++i) base[i] = const_cast<T_*>(saved[i].data_ptr<T_>());
    std::vector<Work<T_>> work(at::get_num_threads() + 1);
    for (int64_t t = T - 1; t >= 0; --t) {
      at::add_out(step_reads, grad_reads, grad_all_reads[t]);
      std::vector<T_*> in(6), out(6);
      for (int i = 0; i < 6; ++i) {
        in[i] = carried[0][i].data_ptr<T_>();
        out[i] = carried[1][i].data_ptr<T_>();
      }
      T_* raw_data = grad_raw_all[t].data_ptr<T_>();
      const T_* reads_data = step_reads.data_ptr<T_>();
      for_each_sequence(B, [&](int64_t b) {
        const StepData<T_> d = step_data<T_>(s, base, nullptr, t, b);
        const int64_t per[6] = {M * N, N, N * N, N, R * N, N};
        StepGradients<T_> g{in[0] + b * per[0], in[1] + b * per[1], in[2] + b * per[2],
                            in[3] + b * per[3], in[4] + b * per[4], in[5] + b * per[5],
                            reads_data + b * R * M,
                            out[0] + b * per[0], out[1] + b * per[1], out[2] + b * per[2],
                            out[3] + b * per[3], out[4] + b * per[4], out[5] + b * per[5],
                            raw_data + b * P};
        step_backward(s, k, d, g, work[at::get_thread_num()]);
      });
      std::swap(carried[0], carried[1]);
      // d output = d output (loss) + d raw W_interface.
      at::addmm_out(grad_output, grad_outputs[t], grad_raw_all[t], head_weight);
      grad_reads = controller_backward<T_>(s, k, t, saved, layer_weights, grad_output,
                                           grad_state, grad_gates_all);
    }
  });
  // Weight gradients: one matrix product over all steps and sequences each.
  std::vector<Tensor> grads = {grad_gates_all[0], carried[0][0].transpose(1, 2).contiguous()};
  for (int i = 1; i < 6; ++i) grads.push_back(carried[0][i]);
  grads.push_back(grad_reads);
  for (const auto& tensor : grad_state) grads.push_back(tensor);
  const int64_t per_layer = lstm ? 5 : 2;
  Tensor grad_bias = at::zeros({layers, s.G}, options);
  for (int64_t l = 0; l < layers; ++l) {
    const Tensor gates = grad_gates_all[l].reshape({T * B, s.G});
    const Tensor& joined = saved[kController + per_layer * l];
    grads.push_back(at::mm(gates.t(), joined.reshape({T * B, joined.size(2)})));
    if (l > 0) grad_bias[l].copy_(gates.sum(0));
  }
  grads.push_back(grad_bias);
  const Tensor raws = grad_raw_all.reshape({T * B, P});
  grads.push_back(at::mm(raws.t(), outputs.reshape({T * B, C})));
  grads.push_back(raws.sum(0));
  return grads;
}

}  // namespace
}  // namespace dnc_kernel

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  // The GIL is released while a sequence runs (nothing in it touches Python objects).
  module.def("forward", &dnc_kernel::forward, "A DNC sequence, forward (ntm/backends/dnc_kernel.py)",
             pybind11::call_guard<pybind11::gil_scoped_release>());
  module.def("backward", &dnc_kernel::backward,
             "A DNC sequence, backward (ntm/backends/dnc_kernel.py)",
             pybind11::call_guard<pybind11::gil_scoped_release>());
}
