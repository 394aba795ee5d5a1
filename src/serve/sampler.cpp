#include "serve/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "shardrt/engine.h"  // shardrt::Error

namespace shardrt::serve {

void validate(const SamplingParams& p) {
  if (!(p.temperature >= 0.f) || !std::isfinite(p.temperature))
    throw Error("--temperature takes a finite value >= 0 (0: greedy), got " + std::to_string(p.temperature));
  if (p.top_k < 0) throw Error("--top-k takes a count >= 0 (0: off), got " + std::to_string(p.top_k));
  if (!(p.top_p > 0.f && p.top_p <= 1.f))
    throw Error("--top-p takes a probability in (0, 1] (1: off), got " + std::to_string(p.top_p));
}

int64_t argmax(const float* logits, int64_t n) {
  int64_t best = -1;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isnan(logits[i]) && (best < 0 || logits[i] > logits[best])) best = i;
  return best < 0 ? 0 : best;
}

std::vector<double> sampling_distribution(const float* logits, int64_t n, const SamplingParams& p) {
  std::vector<double> prob(static_cast<size_t>(n), 0.0);
  if (n == 0) return prob;
  if (p.greedy()) {
    prob[size_t(argmax(logits, n))] = 1.0;
    return prob;
  }
  // Temperature first: the warpers after it see the scaled logits (top-k's choice is the
  // same either way; top-p's is not). NaN logits are never kept.
  const double inv_t = 1.0 / double(p.temperature);
  std::vector<double> z(static_cast<size_t>(n));
  const double ninf = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) z[size_t(i)] = std::isnan(logits[i]) ? ninf : double(logits[i]) * inv_t;

  std::vector<char> keep(static_cast<size_t>(n), 1);
  if (p.top_k > 0 && p.top_k < n) {
    std::vector<double> s = z;
    std::nth_element(s.begin(), s.begin() + (p.top_k - 1), s.end(), std::greater<double>());
    double kth = s[size_t(p.top_k - 1)];
    for (int64_t i = 0; i < n; ++i) keep[size_t(i)] = z[size_t(i)] >= kth;
  }
  for (int64_t i = 0; i < n; ++i)
    if (z[size_t(i)] == ninf) keep[size_t(i)] = 0;

  double mx = ninf;
  for (int64_t i = 0; i < n; ++i)
    if (keep[size_t(i)]) mx = std::max(mx, z[size_t(i)]);
  if (mx == ninf) {  // nothing finite to sample from (all -inf or NaN): fall back to argmax
    prob[size_t(argmax(logits, n))] = 1.0;
    return prob;
  }
  double sum = 0;
  for (int64_t i = 0; i < n; ++i)
    if (keep[size_t(i)]) sum += (prob[size_t(i)] = std::exp(z[size_t(i)] - mx));
  for (auto& x : prob) x /= sum;

  if (p.top_p < 1.f) {
    std::vector<int64_t> order;
    for (int64_t i = 0; i < n; ++i)
      if (keep[size_t(i)]) order.push_back(i);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return prob[size_t(a)] > prob[size_t(b)]; });
    // Keep the smallest prefix whose mass reaches top_p (at least one token).
    double mass = 0;
    size_t m = 0;
    while (m < order.size() && (m == 0 || mass < double(p.top_p))) mass += prob[size_t(order[m++])];
    for (size_t j = m; j < order.size(); ++j) prob[size_t(order[j])] = 0.0;
    for (size_t j = 0; j < m; ++j) prob[size_t(order[j])] /= mass;
  }
  return prob;
}

double uniform01(std::mt19937_64& rng) { return double(rng() >> 11) * 0x1.0p-53; }

int64_t sample_token(const float* logits, int64_t n, const SamplingParams& p, std::mt19937_64& rng) {
  if (p.greedy()) return argmax(logits, n);
  std::vector<double> prob = sampling_distribution(logits, n, p);
  double total = std::accumulate(prob.begin(), prob.end(), 0.0);
  double u = uniform01(rng) * total;
  double acc = 0;
  int64_t last = -1;
  for (int64_t i = 0; i < n; ++i) {
    if (prob[size_t(i)] <= 0) continue;
    acc += prob[size_t(i)];
    last = i;
    if (u < acc) return i;
  }
  return last < 0 ? argmax(logits, n) : last;  // u rounded up to the total: the last kept token
}

std::mt19937_64 prompt_rng(uint64_t seed, uint64_t prompt_index) {
  // std::seed_seq's mixing is specified by the standard, so this is portable.
  std::seed_seq seq{uint32_t(seed), uint32_t(seed >> 32), uint32_t(prompt_index), uint32_t(prompt_index >> 32)};
  return std::mt19937_64(seq);
}

}  // namespace shardrt::serve
