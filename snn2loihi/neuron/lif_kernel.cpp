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
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
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

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("lif_forward", &lif_forward, "LIF time loop, forward (time-major)");
  module.def("lif_backward", &lif_backward, "LIF time loop, BPTT backward (time-major)");
}
