// Choosing the next token from a row of logits: greedy (argmax), or sampling after the
// warpers Hugging Face transformers applies, in its order: temperature, then top-k, then
// top-p (nucleus). The random numbers come from std::mt19937_64, whose output sequence the
// C++ standard fixes, turned into uniforms by hand (not std::uniform_real_distribution,
// whose algorithm is left to the library), so a seed gives the same tokens everywhere.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace shardrt::serve {

struct SamplingParams {
  float temperature = 0.f;  // 0: greedy
  int64_t top_k = 0;        // 0: off; 1: greedy
  float top_p = 1.f;        // 1: off; in (0, 1]
  // Greedy when temperature is 0 or top-k is 1 (sampling would always pick the argmax).
  bool greedy() const { return temperature == 0.f || top_k == 1; }
};

// Throws Error naming the option (--temperature, --top-k, --top-p) for values out of range.
void validate(const SamplingParams& p);

// Index of the largest logit; the first one on ties (as torch.argmax). NaN never wins
// unless every logit is NaN (then 0).
int64_t argmax(const float* logits, int64_t n);

// The probabilities sampling draws from (size n, zero outside the kept set): softmax of
// logits / temperature over the tokens top-k and top-p keep. For tests and for sample().
//   top-k: keeps the tokens whose logit is >= the k-th largest (ties at the k-th value are
//          all kept, as transformers' TopKLogitsWarper does).
//   top-p: of the tokens left, sorted by probability (descending; ties by lower id), keeps
//          the smallest prefix whose probability sum is >= top_p, at least one token
//          (transformers' TopPLogitsWarper). The kept probabilities are renormalised.
std::vector<double> sampling_distribution(const float* logits, int64_t n, const SamplingParams& p);

// A uniform double in [0, 1) from 53 bits of one mt19937_64 draw.
double uniform01(std::mt19937_64& rng);

// The next token: argmax when p.greedy() (the rng is not advanced), else one draw from
// sampling_distribution (exactly one rng draw per call).
int64_t sample_token(const float* logits, int64_t n, const SamplingParams& p, std::mt19937_64& rng);

// The generator of prompt `prompt_index` under `seed`: a prompt's tokens depend only on
// (seed, prompt index, its logits), never on how prompts are batched or split between ranks.
std::mt19937_64 prompt_rng(uint64_t seed, uint64_t prompt_index);

}  // namespace shardrt::serve
