#include "ddim.h"

#include <cmath>
#include <string>

#include "shardrt/engine.h"

namespace sd_example {

Ddim::Ddim(int steps, int train_steps, float beta_start, float beta_end) : train_steps_(train_steps) {
  // With steps_offset 1 the first timestep is (steps - 1)·(T / steps) + 1, which must stay
  // below T.
  if (steps < 1 || steps >= train_steps)
    throw shardrt::Error("--steps must be in [1, " + std::to_string(train_steps - 1) + "], got " + std::to_string(steps));
  // scaled_linear: betas = linspace(sqrt(start), sqrt(end), T)^2; alphas_cumprod = cumprod(1 - betas).
  const float a = std::sqrt(beta_start), b = std::sqrt(beta_end);
  float prod = 1.f;
  for (int i = 0; i < train_steps; ++i) {
    const float s = train_steps == 1 ? a : a + (b - a) * float(i) / float(train_steps - 1);
    prod *= 1.f - s * s;
    alphas_cumprod_.push_back(prod);
  }
  // set_alpha_to_one false: the step past the last one uses alphas_cumprod[0].
  final_alpha_cumprod_ = alphas_cumprod_[0];
  // "leading" spacing with steps_offset 1.
  step_ratio_ = train_steps / steps;
  for (int i = steps - 1; i >= 0; --i) timesteps_.push_back(int64_t(i) * step_ratio_ + 1);
}

void Ddim::step(int64_t t, const float* eps, float* x, int64_t n) const {
  const int64_t prev = t - step_ratio_;
  const float at = alphas_cumprod_[size_t(t)];
  const float ap = prev >= 0 ? alphas_cumprod_[size_t(prev)] : final_alpha_cumprod_;
  const float sqrt_at = std::sqrt(at), sqrt_bt = std::sqrt(1.f - at);
  const float sqrt_ap = std::sqrt(ap), dir = std::sqrt(1.f - ap);  // eta = 0: no noise term
  for (int64_t i = 0; i < n; ++i) {
    const float x0 = (x[i] - sqrt_bt * eps[i]) / sqrt_at;  // predicted x_0
    x[i] = sqrt_ap * x0 + dir * eps[i];
  }
}

}  // namespace sd_example
