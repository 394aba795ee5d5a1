// CPU kernel of shardrt.CachedAttention (definition in docs/ops.md): the node's K and V
// caches live in the execution context's NodeStates; a run first writes every token's k
// (rotated) and v at its position, then every token's query attends over its row's cache
// positions 0..p in fp32. With an output projection (inputs W, [B]) the attention goes to
// the second output and the registered shardrt.Linear kernel projects it into the first.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "backends/cpu/float_rows.h"
#include "backends/cpu/cpu_kernels.h"
#include "ir/ops/cached_attention.h"

namespace shardrt::cpu {

namespace {

// One node's caches, [max_batch, Hkv, max_seq, D] each, zero-filled when created.
struct KvCache {
  Tensor k, v;
};

// x rounded to the dtype (the op defines rotated q and k as values of the dtype).
inline float round_to(DType t, float x) {
  switch (t) {
    case DType::F32: return x;
    case DType::F16: return half_to_float(float_to_half(x));
    default: return bf16_to_float(float_to_bf16(x));
  }
}

// Rotary embedding at position p over the first 2·nf dims of x (fp32, in place).
void rotate(float* x, int64_t p, const float* inv_freq, int64_t nf, bool interleaved) {
  for (int64_t j = 0; j < nf; ++j) {
    const float ang = float(p) * inv_freq[j];
    const float c = std::cos(ang), sn = std::sin(ang);
    const int64_t a = interleaved ? 2 * j : j, b = interleaved ? 2 * j + 1 : j + nf;
    const float x0 = x[a], x1 = x[b];
    x[a] = x0 * c - x1 * sn;
    x[b] = x1 * c + x0 * sn;
  }
}

void attention(KernelCtx& c, Tensor& y) {
  if (!c.state) c.fail("needs an execution context (it keeps a KV cache)");
  std::string err;
  const CachedAttentionAttrs a = CachedAttentionAttrs::read(c.node, err);
  if (!err.empty()) c.fail(err);
  const Tensor& qkv = *c.input(0);
  const Tensor& past = *c.input(1);
  const Tensor* inv = c.input(2);
  const DType t = qkv.dtype();
  if (t != DType::F32 && t != DType::F16 && t != DType::BF16) c.fail(std::string("unsupported type ") + dtype_name(t));
  const int64_t Hq = a.num_heads, Hkv = a.num_kv_heads, D = a.head_dim, group = Hq / Hkv;
  const int64_t W = (Hq + 2 * Hkv) * D;
  if (qkv.rank() != 3 || qkv.dim(2) != W) c.fail("QKV " + dims_str(qkv.dims()) + " is not [B, S, " + std::to_string(W) + "]");
  const int64_t B = qkv.dim(0), S = qkv.dim(1);
  if (past.dtype() != DType::I64 || past.rank() != 1 || past.dim(0) != B)
    c.fail("PastLens " + std::string(dtype_name(past.dtype())) + dims_str(past.dims()) + " is not int64 [" +
           std::to_string(B) + "]");
  const int64_t nf = inv ? inv->numel() : 0;
  if (inv && (inv->dtype() != DType::F32 || 2 * nf > D)) c.fail("InvFreq is not fp32 [R/2] with R <= head_dim");

  // The run-time contract, checked before anything is written (the kernel must not fail
  // half-way through its writes, nor throw inside a parallel loop).
  const std::string where = " (layer " + std::to_string(a.layer) + ")";
  if (B > a.max_batch)
    c.fail("batch " + std::to_string(B) + " exceeds max_batch " + std::to_string(a.max_batch) + where);
  const int64_t* pl = past.data<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    if (pl[b] < 0) c.fail("row " + std::to_string(b) + ": past length " + std::to_string(pl[b]) + " is negative" + where);
    if (pl[b] > a.max_seq - S)
      c.fail("row " + std::to_string(b) + ": past length " + std::to_string(pl[b]) + " + " + std::to_string(S) +
             " new tokens exceeds max_seq " + std::to_string(a.max_seq) + where);
  }

  KvCache& kv = c.state->get<KvCache>(c.node, [&] {
    auto s = std::make_shared<KvCache>();
    const Dims cd{a.max_batch, Hkv, a.max_seq, D};
    s->k = Tensor(t, cd);  // zero-filled
    s->v = Tensor(t, cd);
    return s;
  });
  if (kv.k.dtype() != t) c.fail(std::string("QKV is ") + dtype_name(t) + ", the cache holds " + dtype_name(kv.k.dtype()));
  if (B == 0 || S == 0) return;

  const size_t es = dtype_size(t);
  const float* freq = inv ? inv->data<float>() : nullptr;
  char* kc = static_cast<char*>(kv.k.raw());
  char* vc = static_cast<char*>(kv.v.raw());
  const char* src = static_cast<const char*>(qkv.raw());
  // Element offset of cache row (b, g, p).
  auto cache_off = [&](int64_t b, int64_t g, int64_t p) { return ((b * Hkv + g) * a.max_seq + p) * D; };

  // Writes: every (b, s, g) of this run, k rotated at its position.
  parallel_for(B * S * Hkv, std::max<int64_t>(1, 4096 / std::max<int64_t>(D, 1)), [&](int64_t lo, int64_t hi) {
    std::vector<float> row(static_cast<size_t>(D));
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t g = i % Hkv, bs = i / Hkv, s = bs % S, b = bs / S;
      const int64_t p = pl[b] + s;
      const int64_t tok = bs * W;  // element offset of token (b, s) in QKV
      const int64_t ko = tok + (Hq + g) * D, vo = tok + (Hq + Hkv + g) * D;
      if (freq) {
        load_row(t, src, ko, D, row.data());
        rotate(row.data(), p, freq, nf, a.interleaved);
        store_row(t, kc, cache_off(b, g, p), D, row.data());
      } else {
        std::memcpy(kc + cache_off(b, g, p) * es, src + ko * es, size_t(D) * es);
      }
      std::memcpy(vc + cache_off(b, g, p) * es, src + vo * es, size_t(D) * es);
    }
  });

  // Reads: every (b, s, h) attends over its row's positions 0..p.
  const float scale = a.softmax_scale();
  const void* ykc = kc;
  const void* yvc = vc;
  // Grain from the work per item (positions read × D): a decode step of a few heads over a
  // long cache is still spread over the cores.
  int64_t longest = 0;
  for (int64_t b = 0; b < B; ++b) longest = std::max(longest, pl[b] + S);
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, longest * D));
  parallel_for(B * S * Hq, grain, [&](int64_t lo, int64_t hi) {
    std::vector<float> q(static_cast<size_t>(D)), acc(static_cast<size_t>(D)), kr(static_cast<size_t>(D));
    std::vector<float> sc;
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t h = i % Hq, bs = i / Hq, s = bs % S, b = bs / S;
      const int64_t g = h / group;
      const int64_t p = pl[b] + s;
      load_row(t, src, bs * W + h * D, D, q.data());
      if (freq) {
        rotate(q.data(), p, freq, nf, a.interleaved);
        for (int64_t d = 0; d < 2 * nf; ++d) q[size_t(d)] = round_to(t, q[size_t(d)]);
      }
      const int64_t n = p + 1;
      sc.resize(static_cast<size_t>(n));
      const int64_t base = cache_off(b, g, 0);
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < n; ++j) {
        const float* kp;
        if (t == DType::F32) {
          kp = static_cast<const float*>(ykc) + base + j * D;
        } else {
          load_row(t, ykc, base + j * D, D, kr.data());
          kp = kr.data();
        }
        float dot = 0.f;
        for (int64_t d = 0; d < D; ++d) dot += q[size_t(d)] * kp[d];
        sc[size_t(j)] = dot * scale;
        mx = std::max(mx, sc[size_t(j)]);
      }
      float sum = 0.f;
      for (int64_t j = 0; j < n; ++j) {
        sc[size_t(j)] = std::exp(sc[size_t(j)] - mx);  // max subtracted: no overflow
        sum += sc[size_t(j)];
      }
      const float inv_sum = 1.0f / sum;
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t j = 0; j < n; ++j) {
        const float w = sc[size_t(j)] * inv_sum;
        if (t == DType::F32) {
          const float* vp = static_cast<const float*>(yvc) + base + j * D;
          for (int64_t d = 0; d < D; ++d) acc[size_t(d)] += w * vp[d];
        } else {
          load_row(t, yvc, base + j * D, D, kr.data());
          for (int64_t d = 0; d < D; ++d) acc[size_t(d)] += w * kr[size_t(d)];
        }
      }
      store_row(t, y.raw(), bs * Hq * D + h * D, D, acc.data());
    }
  });
}

void cached_attention_kernel(KernelCtx& c) {
  if (!c.input(3)) {
    attention(c, *c.out[0]);
    return;
  }
  if (c.out.size() < 2 || !c.out[1]) c.fail("with an output projection (W) the second output (the attention) is required");
  attention(c, *c.out[1]);
  const Kernel* lin = find_kernel("shardrt.Linear");
  if (!lin) c.fail("internal: no CPU kernel for shardrt.Linear");
  // shardrt.Linear reads trans_b (and activation: none) from this node.
  KernelCtx lc{c.node, {c.out[1], c.input(3), c.input(4)}, {c.out[0]}, c.comm, c.state};
  (*lin)(lc);
}

}  // namespace

void register_cached_attention_kernels() { register_kernel("shardrt.CachedAttention", cached_attention_kernel); }

}  // namespace shardrt::cpu
