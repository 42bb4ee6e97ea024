// The LIF time loop of snn2loihi.neuron.fused as one pass over memory (CPU).
//
// Same arithmetic, in the same order, as the PyTorch loop in fused.py (compiled with
// -ffp-contract=off, so no fused multiply-adds change a rounding); tensors are time-major,
// (T, M) contiguous. Each thread takes a range of the M neurons and walks it in blocks
// that stay in cache, stepping t outermost within a block so the inner loop is contiguous.
//
// forward:  u = D_i(u) + z[t];  p = D_v(v) + u  (clamped to ±v_limit);  s = p > θ;
//           v = s ? p - θ : p (soft) | s ? 0 : p (hard);
//           D(x) = trunc(x·kS)·invS (fixed point) | x·kS (float, invS = 0)
// backward: the recursion of fused.py's docstring, given σ_t for all steps.
//
// integer:  the emulator's chunk of steps of Loihi's integer CUBA compartment, exactly
//           snn2loihi.neuron.fixed_point.lif_step applied T times (wraps of u and clips
//           of v counted), on int32 or int64 states updated in place.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

namespace {

constexpr int64_t kBlock = 1024;

template <typename T>
inline T decay(T x, T k_scaled, T inverse) {
  return inverse == T(0) ? x * k_scaled : std::trunc(x * k_scaled) * inverse;
}

template <typename T>
void forward_impl(const T* z, const T* v0, T* pre, bool* fired, T* dts, int64_t steps, int64_t m,
                  bool flush_u, T ki, T kv, T inverse, bool clip, T v_limit, T theta, bool soft,
                  T initial_spike_time) {
  at::parallel_for(0, m, kBlock, [&](int64_t begin, int64_t end) {
    std::vector<T> u(kBlock), v(kBlock), last(kBlock);
    for (int64_t b0 = begin; b0 < end; b0 += kBlock) {
      const int64_t n = std::min(kBlock, end - b0);
      for (int64_t j = 0; j < n; ++j) {
        u[j] = T(0);
        v[j] = v0[b0 + j];
        last[j] = initial_spike_time;
      }
      for (int64_t t = 0; t < steps; ++t) {
        const int64_t row = t * m + b0;
        for (int64_t j = 0; j < n; ++j) {
          const T ut = flush_u ? z[row + j] : decay(u[j], ki, inverse) + z[row + j];
          T p = decay(v[j], kv, inverse) + ut;
          if (clip) p = std::min(std::max(p, -v_limit), v_limit);
          const bool s = p > theta;
          pre[row + j] = p;
          fired[row + j] = s;
          if (dts != nullptr) {
            dts[row + j] = T(t) - last[j];
            if (s) last[j] = T(t);
          }
          u[j] = ut;
          v[j] = s ? (soft ? p - theta : T(0)) : p;
        }
      }
    }
  });
}

template <typename T>
void backward_impl(const T* grad_s, const T* pre, const bool* fired, const T* sigma, T* grad_z,
                   int64_t steps, int64_t m, T ki, T kv, T theta, bool soft, bool detach_reset) {
  at::parallel_for(0, m, kBlock, [&](int64_t begin, int64_t end) {
    std::vector<T> gu(kBlock), gv(kBlock);
    for (int64_t b0 = begin; b0 < end; b0 += kBlock) {
      const int64_t n = std::min(kBlock, end - b0);
      std::fill(gu.begin(), gu.begin() + n, T(0));
      std::fill(gv.begin(), gv.begin() + n, T(0));
      for (int64_t t = steps - 1; t >= 0; --t) {
        const int64_t row = t * m + b0;
        for (int64_t j = 0; j < n; ++j) {
          const T p = pre[row + j];
          const T gs = detach_reset ? grad_s[row + j] : grad_s[row + j] - gv[j] * (soft ? theta : p);
          T gp = gs * sigma[row + j];
          gp += (soft || !fired[row + j]) ? gv[j] : T(0);
          const T out = gp + gu[j];
          grad_z[row + j] = out;
          gu[j] = out * ki;
          gv[j] = gp * kv;
        }
      }
    }
  });
}

inline int64_t decay_int(int64_t x, int64_t d, int64_t unity) {
  return d == unity ? 0 : (d == 0 ? x : x * (unity - d) / unity);  // C++ division truncates
}

// kPlain: integrate-and-fire without overflow checks (i_decay = unity, v_decay = 0,
// may_overflow false), the common case, as a branch-free loop the compiler vectorizes.
template <typename T, typename A, typename S, bool kPlain>
void integer_impl(const A* a, T* u, T* v, const T* bias, S* spikes, int64_t steps, int64_t m, int64_t i_decay,
                  int64_t v_decay, int64_t unity, int64_t act_shift, int64_t vth, bool soft, bool may_overflow,
                  int64_t limit, std::atomic<int64_t>& wraps, std::atomic<int64_t>& clips) {
  at::parallel_for(0, m, kBlock, [&](int64_t begin, int64_t end) {
    int64_t local_wraps = 0, local_clips = 0;
    for (int64_t b0 = begin; b0 < end; b0 += kBlock) {
      const int64_t b1 = std::min(b0 + kBlock, end);
      for (int64_t t = 0; t < steps; ++t) {
        const int64_t row = t * m;
        if (kPlain) {
          const T th = static_cast<T>(vth), reset = soft ? static_cast<T>(vth) : T(0);
          for (int64_t j = b0; j < b1; ++j) {
            const T ut = static_cast<T>(a[row + j]) * (T(1) << act_shift);
            const T vt = v[j] + ut + (bias != nullptr ? bias[j] : T(0));
            const bool s = vt > th;
            spikes[row + j] = static_cast<S>(s);
            u[j] = ut;
            v[j] = s ? (soft ? vt - reset : T(0)) : vt;
          }
          continue;
        }
        for (int64_t j = b0; j < b1; ++j) {
          const int64_t drive = static_cast<int64_t>(a[row + j]) * (int64_t(1) << act_shift);
          int64_t ut = i_decay == unity ? drive : decay_int(u[j], i_decay, unity) + drive;
          if (may_overflow) {
            const int64_t wrapped = ut > limit ? ut - 2 * limit : (ut <= -limit ? ut + 2 * limit : ut);
            local_wraps += wrapped != ut;
            ut = wrapped;
          }
          int64_t vt = decay_int(v[j], v_decay, unity) + ut + (bias != nullptr ? bias[j] : 0);
          if (may_overflow) {
            const int64_t clipped = std::min(std::max(vt, -limit + 1), limit - 1);
            local_clips += clipped != vt;
            vt = clipped;
          }
          const bool s = vt > vth;
          spikes[row + j] = static_cast<S>(s);
          u[j] = static_cast<T>(ut);
          v[j] = static_cast<T>(s ? (soft ? vt - vth : 0) : vt);
        }
      }
    }
    wraps += local_wraps;
    clips += local_clips;
  });
}

void check(const torch::Tensor& x, const char* name) {
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous(), name, " must be a contiguous CPU tensor");
}

}  // namespace

// z (T, M...), v0 (M...): returns (pre, fired, dts or an empty tensor).
std::vector<torch::Tensor> lif_forward(torch::Tensor z, torch::Tensor v0, bool flush_u, double ki, double kv,
                                       double inverse, bool clip, double v_limit, double theta, bool soft,
                                       bool spike_times, double initial_spike_time) {
  check(z, "z");
  check(v0, "v0");
  const int64_t steps = z.size(0), m = z.numel() / std::max<int64_t>(steps, 1);
  TORCH_CHECK(v0.numel() == m && v0.scalar_type() == z.scalar_type(), "v0 must match one step of z");
  auto pre = torch::empty_like(z);
  auto fired = torch::empty(z.sizes(), z.options().dtype(torch::kBool));
  auto dts = spike_times ? torch::empty_like(z) : torch::empty({0}, z.options());
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "lif_forward", [&] {
    forward_impl<scalar_t>(z.data_ptr<scalar_t>(), v0.data_ptr<scalar_t>(), pre.data_ptr<scalar_t>(),
                           fired.data_ptr<bool>(), spike_times ? dts.data_ptr<scalar_t>() : nullptr, steps, m,
                           flush_u, scalar_t(ki), scalar_t(kv), scalar_t(inverse), clip, scalar_t(v_limit),
                           scalar_t(theta), soft, scalar_t(initial_spike_time));
  });
  return {pre, fired, dts};
}

torch::Tensor lif_backward(torch::Tensor grad_s, torch::Tensor pre, torch::Tensor fired, torch::Tensor sigma,
                           double ki, double kv, double theta, bool soft, bool detach_reset) {
  for (auto* x : {&grad_s, &pre, &fired, &sigma}) check(*x, "backward inputs");
  const int64_t steps = pre.size(0), m = pre.numel() / std::max<int64_t>(steps, 1);
  auto grad_z = torch::empty_like(pre);
  AT_DISPATCH_FLOATING_TYPES(pre.scalar_type(), "lif_backward", [&] {
    backward_impl<scalar_t>(grad_s.data_ptr<scalar_t>(), pre.data_ptr<scalar_t>(), fired.data_ptr<bool>(),
                            sigma.data_ptr<scalar_t>(), grad_z.data_ptr<scalar_t>(), steps, m, scalar_t(ki),
                            scalar_t(kv), scalar_t(theta), soft, detach_reset);
  });
  return grad_z;
}

// a (T, M) synaptic input, integers (also as exact float32/float64 values, straight from a
// matmul); u, v (M) int32/int64 states, updated in place; bias (M) already << 6, or empty.
// Writes the spikes as 0/1 into spikes (T, M), uint8 or float32 (what the next synapse
// reads); returns (current wraps, voltage clips).
std::tuple<int64_t, int64_t> lif_integer(torch::Tensor a, torch::Tensor u, torch::Tensor v, torch::Tensor bias,
                                         torch::Tensor spikes, int64_t i_decay, int64_t v_decay, int64_t unity,
                                         int64_t act_shift, int64_t vth, bool soft, bool may_overflow, int64_t limit) {
  for (auto* x : {&a, &u, &v, &bias, &spikes}) check(*x, "integer LIF inputs");
  TORCH_CHECK(spikes.sizes() == a.sizes() &&
                  (spikes.scalar_type() == torch::kByte || spikes.scalar_type() == torch::kFloat),
              "spikes must be a uint8 or float32 tensor shaped like a");
  const int64_t steps = a.size(0), m = a.numel() / std::max<int64_t>(steps, 1);
  TORCH_CHECK(u.numel() == m && v.numel() == m && (bias.numel() == 0 || bias.numel() == m),
              "u, v and bias must hold one step of a");
  const auto state = u.scalar_type();
  TORCH_CHECK((state == torch::kInt || state == torch::kLong) && v.scalar_type() == state &&
              (bias.numel() == 0 || bias.scalar_type() == state), "u, v and bias must be int32 or int64 alike");
  std::atomic<int64_t> wraps{0}, clips{0};
  const bool plain = i_decay == unity && v_decay == 0 && !may_overflow;
  auto run_as = [&](auto state_zero, auto input_zero, auto spike_zero) {
    using T = decltype(state_zero);
    using A = decltype(input_zero);
    using S = decltype(spike_zero);
    (plain ? integer_impl<T, A, S, true> : integer_impl<T, A, S, false>)(
        a.data_ptr<A>(), u.data_ptr<T>(), v.data_ptr<T>(), bias.numel() ? bias.data_ptr<T>() : nullptr,
        spikes.data_ptr<S>(), steps, m, i_decay, v_decay, unity, act_shift, vth, soft, may_overflow, limit, wraps,
        clips);
  };
  auto run = [&](auto state_zero, auto input_zero) {
    if (spikes.scalar_type() == torch::kByte) run_as(state_zero, input_zero, uint8_t(0));
    else run_as(state_zero, input_zero, float(0));
  };
  auto with_input = [&](auto state_zero) {
    switch (a.scalar_type()) {
      case torch::kInt: run(state_zero, int32_t(0)); break;
      case torch::kLong: run(state_zero, int64_t(0)); break;
      case torch::kFloat: run(state_zero, float(0)); break;
      case torch::kDouble: run(state_zero, double(0)); break;
      default: TORCH_CHECK(false, "synaptic input must be int32, int64, float32 or float64");
    }
  };
  if (state == torch::kInt) with_input(int32_t(0)); else with_input(int64_t(0));
  return {wraps.load(), clips.load()};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("lif_forward", &lif_forward, "LIF time loop, forward (time-major)");
  module.def("lif_backward", &lif_backward, "LIF time loop, BPTT backward (time-major)");
  module.def("lif_integer", &lif_integer, "Loihi integer CUBA steps, in place (time-major)");
}
