// The LIF time loop of snn2loihi.neuron.fused as one pass over memory (CPU).
//
// Same arithmetic, in the same order, as the PyTorch loop in fused.py (compiled with
// -ffp-contract=off, so no fused multiply-adds change a rounding); tensors are time-major,
// (T, M) contiguous. Each thread takes a range of the M neurons and walks it in blocks
// that stay in cache, stepping t outermost within a block so the inner loop is contiguous.
// The settings that select a branch (reset, fixed point, surrogate, ...) are template
// parameters and the pointers are __restrict__, so each inner loop is branch-free and the
// compiler vectorizes it.
//
// forward:  u = D_i(u) + z[t];  p = D_v(v) + u  (clamped to ±v_limit);  s = p > θ;
//           v = s ? p - θ : p (soft) | s ? 0 : p (hard);
//           D(x) = trunc(x·kS)·invS (fixed point) | x·kS (float)
// backward: the recursion of fused.py's docstring; σ_t either given for all steps or, for
//           the triangle, rectangle and exponential surrogates, evaluated in the loop from p_t.
//
// integer:  the emulator's chunk of steps of Loihi's integer CUBA compartment, exactly
//           snn2loihi.neuron.fixed_point.lif_step applied T times (wraps of u and clips
//           of v counted), on int32 or int64 states updated in place.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

namespace {

constexpr int64_t kBlock = 1024;

// Calls body(std::integral_constant<bool, flag>) so that a runtime flag becomes a template one.
template <typename F>
void with_flag(bool flag, F&& body) {
  if (flag) body(std::true_type{});
  else body(std::false_type{});
}

template <typename T, bool kFixed>
inline T decay(T x, T k_scaled, T inverse) {
  if constexpr (kFixed) return std::trunc(x * k_scaled) * inverse;
  else return x * k_scaled;
}

// One block of n ≤ kBlock neurons starting at b0, all steps. z, pre, spikes, dts: (T, M);
// v0: (M) or null for rest; pre and dts may be null. (A function of plain values rather
// than the body of the parallel_for lambda: through the lambda's by-reference captures the
// compiler gave up vectorizing.)
template <typename T, bool kFlush, bool kFixed, bool kSoft, bool kPre, bool kTimes>
void forward_block(const T* __restrict__ z, const T* __restrict__ v0, T* __restrict__ pre,
                   T* __restrict__ spikes, T* __restrict__ dts, int64_t steps, int64_t m, int64_t b0, int64_t n,
                   T ki, T kv, T inverse, T v_limit, T theta, T initial_spike_time) {
  T u[kBlock], v[kBlock], last[kBlock];
  for (int64_t j = 0; j < n; ++j) {
    u[j] = T(0);
    v[j] = v0 != nullptr ? v0[b0 + j] : T(0);
    last[j] = initial_spike_time;
  }
  for (int64_t t = 0; t < steps; ++t) {
    const int64_t row = t * m + b0;
    for (int64_t j = 0; j < n; ++j) {
      T ut;
      if constexpr (kFlush) ut = z[row + j];
      else ut = decay<T, kFixed>(u[j], ki, inverse) + z[row + j];
      T p = decay<T, kFixed>(v[j], kv, inverse) + ut;
      if constexpr (kFixed) p = std::min(std::max(p, -v_limit), v_limit);
      const bool s = p > theta;
      if constexpr (kPre) pre[row + j] = p;
      spikes[row + j] = s ? T(1) : T(0);
      if constexpr (kTimes) {
        dts[row + j] = T(t) - last[j];
        last[j] = s ? T(t) : last[j];
      }
      u[j] = ut;
      if constexpr (kSoft) v[j] = s ? p - theta : p;
      else v[j] = s ? T(0) : p;
    }
  }
}

template <typename T, bool kFlush, bool kFixed, bool kSoft, bool kPre, bool kTimes>
void forward_impl(const T* z, const T* v0, T* pre, T* spikes, T* dts, int64_t steps, int64_t m, T ki, T kv,
                  T inverse, T v_limit, T theta, T initial_spike_time) {
  at::parallel_for(0, m, kBlock, [&](int64_t begin, int64_t end) {
    for (int64_t b0 = begin; b0 < end; b0 += kBlock) {
      forward_block<T, kFlush, kFixed, kSoft, kPre, kTimes>(z, v0, pre, spikes, dts, steps, m, b0,
                                                            std::min(kBlock, end - b0), ki, kv, inverse, v_limit,
                                                            theta, initial_spike_time);
    }
  });
}

// Surrogate kinds evaluated in the loop (kGiven: σ passed as a tensor).
enum Surrogate : int64_t { kGiven = 0, kTriangle = 1, kRectangle = 2, kExponential = 3 };

// e^x for x ≤ 0 in float32, vectorizable (Cephes' expf: e^x = 2^n·e^r, |r| ≤ ln2/2, degree-6
// polynomial in r): within 1 ulp of the correctly rounded value (largest relative error
// 8.1e-8 over [-87.33, 0]); 0 below -87.33, where e^x is below float32's smallest normal
// number 2^-126 (so 2^n stays a normal number). float64 takes std::exp.
inline float exp_nonpositive(float x) {
  constexpr float kLowest = -87.33f;
  const bool underflow = x < kLowest;
  x = underflow ? kLowest : x;
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;  // ln 2 in two parts, so r is exact
  r = r - n * -2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n ≥ -126
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return underflow ? 0.0f : y * scale;
}

inline double exp_nonpositive(double x) { return std::exp(x); }

// σ at x = p - θ, as surrogate.py's Triangle / Rectangular / Exponential compute it (the
// same operations; the exponential's exp is exp_nonpositive, within 1 ulp of PyTorch's).
// (a, b): triangle (γ, γ²), rectangle (width, width), exponential (-(τ·θ), scale).
template <typename T, int64_t kKind>
inline T slope(T x, T a, T b) {
  T s;
  if constexpr (kKind == kTriangle) s = std::max(-std::abs(x) + a, T(0));
  else if constexpr (kKind == kRectangle) s = std::abs(x) < a / T(2) ? T(1) : T(0);
  else s = exp_nonpositive(std::abs(x) / a);
  if constexpr (kKind == kExponential) return b == T(1) ? s : s * b;
  else return b == T(1) ? s : s / b;
}

// One block of n ≤ kBlock neurons starting at b0, all steps backwards. grad_s, pre, sigma,
// grad_z: (T, M); sigma null unless kKind == kGiven.
template <typename T, int64_t kKind, bool kSoft, bool kDetach>
void backward_block(const T* __restrict__ grad_s, const T* __restrict__ pre, const T* __restrict__ sigma,
                    T* __restrict__ grad_z, int64_t steps, int64_t m, int64_t b0, int64_t n, T ki, T kv, T theta,
                    T a, T b) {
  T gu[kBlock], gv[kBlock];
  std::fill(gu, gu + n, T(0));
  std::fill(gv, gv + n, T(0));
  for (int64_t t = steps - 1; t >= 0; --t) {
    const int64_t row = t * m + b0;
    for (int64_t j = 0; j < n; ++j) {
      const T p = pre[row + j];
      T gs = grad_s[row + j];
      if constexpr (!kDetach) gs = gs - gv[j] * (kSoft ? theta : p);
      T sg;
      if constexpr (kKind == kGiven) sg = sigma[row + j];
      else sg = slope<T, kKind>(p - theta, a, b);
      T gp = gs * sg;
      if constexpr (kSoft) gp += gv[j];
      else gp += p > theta ? T(0) : gv[j];  // fired ⇔ p > θ (the forward's test)
      const T out = gp + gu[j];
      grad_z[row + j] = out;
      gu[j] = out * ki;
      gv[j] = gp * kv;
    }
  }
}

template <typename T, int64_t kKind, bool kSoft, bool kDetach>
void backward_impl(const T* grad_s, const T* pre, const T* sigma, T* grad_z, int64_t steps, int64_t m, T ki, T kv,
                   T theta, T a, T b) {
  at::parallel_for(0, m, kBlock, [&](int64_t begin, int64_t end) {
    for (int64_t b0 = begin; b0 < end; b0 += kBlock) {
      backward_block<T, kKind, kSoft, kDetach>(grad_s, pre, sigma, grad_z, steps, m, b0, std::min(kBlock, end - b0),
                                               ki, kv, theta, a, b);
    }
  });
}

inline int64_t decay_int(int64_t x, int64_t d, int64_t unity) {
  return d == unity ? 0 : (d == 0 ? x : x * (unity - d) / unity);  // C++ division truncates
}

// Integrate-and-fire without overflow checks (i_decay = unity, v_decay = 0, may_overflow
// false), the common case: neurons [b0, b1), all steps, in a branch-free loop the compiler
// vectorizes (a function of plain values, as forward_block). bias may be null.
template <typename T, typename A, typename S, bool kSoft, bool kBias>
void integer_plain_block(const A* __restrict__ a, T* __restrict__ u, T* __restrict__ v, const T* __restrict__ bias,
                         S* __restrict__ spikes, int64_t steps, int64_t m, int64_t b0, int64_t b1, int64_t act_shift,
                         T th) {
  for (int64_t t = 0; t < steps; ++t) {
    const int64_t row = t * m;
    for (int64_t j = b0; j < b1; ++j) {
      const T ut = static_cast<T>(a[row + j]) * (T(1) << act_shift);
      T vt = v[j] + ut;
      if constexpr (kBias) vt += bias[j];
      const bool s = vt > th;
      spikes[row + j] = static_cast<S>(s);
      u[j] = ut;
      if constexpr (kSoft) v[j] = s ? vt - th : vt;
      else v[j] = s ? T(0) : vt;
    }
  }
}

template <typename T, typename A, typename S, bool kSoft, bool kBias>
void integer_plain_impl(const A* a, T* u, T* v, const T* bias, S* spikes, int64_t steps, int64_t m,
                        int64_t act_shift, int64_t vth) {
  at::parallel_for(0, m, kBlock, [&](int64_t begin, int64_t end) {
    for (int64_t b0 = begin; b0 < end; b0 += kBlock) {
      integer_plain_block<T, A, S, kSoft, kBias>(a, u, v, bias, spikes, steps, m, b0, std::min(b0 + kBlock, end),
                                                 act_shift, static_cast<T>(vth));
    }
  });
}

// Any compartment: decays and, where it may overflow, 24-bit wraps of u and clips of v.
template <typename T, typename A, typename S>
void integer_impl(const A* a, T* u, T* v, const T* bias, S* spikes, int64_t steps, int64_t m, int64_t i_decay,
                  int64_t v_decay, int64_t unity, int64_t act_shift, int64_t vth, bool soft, bool may_overflow,
                  int64_t limit, std::atomic<int64_t>& wraps, std::atomic<int64_t>& clips) {
  at::parallel_for(0, m, kBlock, [&](int64_t begin, int64_t end) {
    int64_t local_wraps = 0, local_clips = 0;
    for (int64_t b0 = begin; b0 < end; b0 += kBlock) {
      const int64_t b1 = std::min(b0 + kBlock, end);
      for (int64_t t = 0; t < steps; ++t) {
        const int64_t row = t * m;
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

// z (T, M...), v0 (M...) or an empty tensor for rest: returns (pre, spikes, dts), spikes
// as 0/1 in z's dtype; pre only when keep_pre and dts only when spike_times (else empty).
std::vector<torch::Tensor> lif_forward(torch::Tensor z, torch::Tensor v0, bool flush_u, double ki, double kv,
                                       double inverse, bool fixed_point, double v_limit, double theta, bool soft,
                                       bool keep_pre, bool spike_times, double initial_spike_time) {
  check(z, "z");
  check(v0, "v0");
  const int64_t steps = z.size(0), m = z.numel() / std::max<int64_t>(steps, 1);
  TORCH_CHECK(v0.numel() == 0 || (v0.numel() == m && v0.scalar_type() == z.scalar_type()),
              "v0 must be empty or match one step of z");
  auto pre = keep_pre ? torch::empty_like(z) : torch::empty({0}, z.options());
  auto spikes = torch::empty_like(z);
  auto dts = spike_times ? torch::empty_like(z) : torch::empty({0}, z.options());
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "lif_forward", [&] {
    auto* v0_data = v0.numel() ? v0.data_ptr<scalar_t>() : nullptr;
    auto* pre_data = keep_pre ? pre.data_ptr<scalar_t>() : nullptr;
    auto* dts_data = spike_times ? dts.data_ptr<scalar_t>() : nullptr;
    with_flag(flush_u, [&](auto flush) { with_flag(fixed_point, [&](auto fixed) { with_flag(soft, [&](auto sft) {
      with_flag(keep_pre, [&](auto kept) { with_flag(spike_times, [&](auto times) {
        forward_impl<scalar_t, decltype(flush)::value, decltype(fixed)::value, decltype(sft)::value,
                     decltype(kept)::value, decltype(times)::value>(
            z.data_ptr<scalar_t>(), v0_data, pre_data, spikes.data_ptr<scalar_t>(), dts_data, steps, m, scalar_t(ki),
            scalar_t(kv), scalar_t(inverse), scalar_t(v_limit), scalar_t(theta), scalar_t(initial_spike_time));
      }); });
    }); }); });
  });
  return {pre, spikes, dts};
}

// grad_s, pre (T, M...); sigma (T, M...) when surrogate == 0 (given), else empty and σ is the
// triangle (1), rectangle (2) or exponential (3) of surrogate.py with parameters (a, b).
torch::Tensor lif_backward(torch::Tensor grad_s, torch::Tensor pre, torch::Tensor sigma, int64_t surrogate,
                           double a, double b, double ki, double kv, double theta, bool soft,
                           bool detach_reset) {
  for (auto* x : {&grad_s, &pre, &sigma}) check(*x, "backward inputs");
  TORCH_CHECK(surrogate >= kGiven && surrogate <= kExponential, "unknown surrogate kind ", surrogate);
  TORCH_CHECK((surrogate == kGiven) == (sigma.numel() == pre.numel()), "sigma must be given exactly for kind 0");
  const int64_t steps = pre.size(0), m = pre.numel() / std::max<int64_t>(steps, 1);
  auto grad_z = torch::empty_like(pre);
  AT_DISPATCH_FLOATING_TYPES(pre.scalar_type(), "lif_backward", [&] {
    const auto* sigma_data = surrogate == kGiven ? sigma.data_ptr<scalar_t>() : nullptr;
    auto run = [&](auto kind) {
      with_flag(soft, [&](auto sft) { with_flag(detach_reset, [&](auto detach) {
        backward_impl<scalar_t, decltype(kind)::value, decltype(sft)::value, decltype(detach)::value>(
            grad_s.data_ptr<scalar_t>(), pre.data_ptr<scalar_t>(), sigma_data, grad_z.data_ptr<scalar_t>(), steps, m,
            scalar_t(ki), scalar_t(kv), scalar_t(theta), scalar_t(a), scalar_t(b));
      }); });
    };
    if (surrogate == kTriangle) run(std::integral_constant<int64_t, kTriangle>{});
    else if (surrogate == kRectangle) run(std::integral_constant<int64_t, kRectangle>{});
    else if (surrogate == kExponential) run(std::integral_constant<int64_t, kExponential>{});
    else run(std::integral_constant<int64_t, kGiven>{});
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
    const T* bias_data = bias.numel() ? bias.data_ptr<T>() : nullptr;
    if (!plain) {
      integer_impl<T, A, S>(a.data_ptr<A>(), u.data_ptr<T>(), v.data_ptr<T>(), bias_data, spikes.data_ptr<S>(), steps,
                            m, i_decay, v_decay, unity, act_shift, vth, soft, may_overflow, limit, wraps, clips);
      return;
    }
    with_flag(soft, [&](auto sft) { with_flag(bias_data != nullptr, [&](auto biased) {
      integer_plain_impl<T, A, S, decltype(sft)::value, decltype(biased)::value>(
          a.data_ptr<A>(), u.data_ptr<T>(), v.data_ptr<T>(), bias_data, spikes.data_ptr<S>(), steps, m, act_shift,
          vth);
    }); });
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
