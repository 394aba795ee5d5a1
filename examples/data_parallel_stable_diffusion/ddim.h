// The DDIM sampler (Song et al., "Denoising Diffusion Implicit Models", 2020, eq. 12 with
// eta = 0), with Stable Diffusion 1.5's noise schedule, as diffusers' DDIMScheduler computes
// it with SD-1.5's scheduler config: "scaled_linear" betas from 0.00085 to 0.012 over 1000
// training steps, set_alpha_to_one false, steps_offset 1, "leading" timestep spacing,
// epsilon prediction, no sample clipping. Arithmetic in fp32 as diffusers' is.
#pragma once
#include <cstdint>
#include <vector>

namespace sd_example {

class Ddim {
 public:
  explicit Ddim(int steps, int train_steps = 1000, float beta_start = 0.00085f, float beta_end = 0.012f);
  // The timesteps to visit, first (noisiest) first: 981, 961, ..., 1 for 50 steps.
  const std::vector<int64_t>& timesteps() const { return timesteps_; }
  // One step from timestep t: x (n values) becomes x_{t - 1000/steps} in place, given the
  // predicted noise eps (n values).
  void step(int64_t t, const float* eps, float* x, int64_t n) const;

 private:
  int train_steps_, step_ratio_;
  std::vector<float> alphas_cumprod_;
  float final_alpha_cumprod_;
  std::vector<int64_t> timesteps_;
};

}  // namespace sd_example
