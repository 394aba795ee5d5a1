// CUDA kernel of shardrt.CachedAttention (the stateful decode attention with a per-context
// KV cache): checks, the cache state, and the choice of path.
//
// - Decode (S < 16): one launch of the split-K kernel (kernels_attention_cached_decode.cu)
//   that also writes this step's k/v into the cache. PastLens is read on the device only,
//   so the step is captured in the executor's CUDA graph and replays with new lengths; when
//   it is a graph input, the kernel reads it and the cached rows before waiting for the
//   previous kernel.
// - Prefill (S >= 16), fp16/bf16 and head sizes the tensor-core flash kernel handles: the
//   lengths are needed on the host (NeedsHostValue: the executor reads them back, and these
//   input shapes run without a CUDA graph). When every row has the same past length P:
//   rotate q into [B, Hq, S, D] and k/v into the caches (prep kernel), copy the caches'
//   first P + S positions into contiguous [B, Hkv, P + S, D] (unless that is the whole
//   cache), run attn::launch_flash with causal offset P, and permute the output back.
// - Otherwise (fp32 prefill, rows of different lengths): prep kernel, then the split-K
//   kernel reading every key from the cache. Correct for every case, not tuned for long S.
// - With an output projection (inputs W, [B]: fuse_attention_linear): a decode step of one
//   row and one token, where plan_decode_deferred and the GEMV accept the shapes, runs the
//   split-K kernel without its merge, then the projection's GEMV, which merges the partials
//   in its prologue and also stores the attention output (gemv.h, GemvAttnMerge); every
//   other case runs the attention as above into the second output, then the registered
//   shardrt.Linear kernel on it.
#include <algorithm>
#include <climits>
#include <cmath>
#include <string>

#include "backends/cuda/attention_cached.cuh"
#include "backends/cuda/attention_common.cuh"
#include "backends/cuda/gemv.h"

namespace shardrt::cuda {

namespace {

// The caches of one node in one execution context, created (zeroed) by the first, eager,
// run; never resized (their size comes from the node's attributes).
struct CacheState {
  DType dtype = DType::Undefined;
  void* k = nullptr;
  void* v = nullptr;
  // Completion counters of the split-K kernel (zero between launches: the kernel resets
  // them). Grown, outside capture only, when a shape needs more; an outgrown buffer stays
  // allocated (with the context) because a captured graph may still use it.
  int* counters = nullptr;
  int64_t n_counters = 0;
};

constexpr int64_t kFusedMaxS = 16;  // S below this: the single fused launch
constexpr int64_t kFlashMinS = 16;  // S from this on (fp16/bf16): the flash prefill path

bool flash_applies(DType t, int64_t B, int64_t Hq, int64_t S, int64_t D) {
  // As attn::launch_flash accepts (it re-checks, and may still decline: then the general
  // path runs).
  return (t == DType::F16 || t == DType::BF16) && S >= kFlashMinS && D % 8 == 0 && D <= 160 && Hq <= 65535 &&
         B <= 65535;
}

size_t round256(size_t x) { return (x + 255) / 256 * 256; }

// The attention into y. With `proj` (the node's output projection into c.out[0]): returns
// true when it ran the deferred decode pair (attention partials, then the GEMV that merges
// them and projects); false when y holds the attention and the projection is still to run.
bool attention(KernelCtx& c, DevTensor* y, bool proj) {
  const DevTensor* qkv = c.input(0);
  const DevTensor* past = c.input(1);
  const DevTensor* invf = c.input(2);
  if (!qkv || !past || !y) c.fail("QKV, PastLens and the output are required");
  const DType t = qkv->dtype;
  if (t != DType::F32 && t != DType::F16 && t != DType::BF16)
    c.fail(std::string("QKV has type ") + dtype_name(t) + "; the CUDA kernel supports fp32, fp16 and bf16");
  const int64_t Hq = c.node.attr_i("num_heads"), Hkv = c.node.attr_i("num_kv_heads"), D = c.node.attr_i("head_dim");
  const int64_t max_batch = c.node.attr_i("max_batch"), max_seq = c.node.attr_i("max_seq");
  const int64_t inter = c.node.attr_i("rotary_interleaved", 0);
  if (Hq <= 0 || Hkv <= 0 || D <= 0 || max_batch <= 0 || max_seq <= 0 || Hq % Hkv != 0)
    c.fail("num_heads, num_kv_heads, head_dim, max_batch and max_seq must be > 0 with num_heads % num_kv_heads == 0");
  for (int64_t v : {Hq + 2 * Hkv, D, max_seq, max_batch})
    if (v > INT_MAX) c.fail("an attribute exceeds 2^31 - 1");
  if (qkv->rank() != 3 || qkv->dim(2) != (Hq + 2 * Hkv) * D)
    c.fail("QKV must be [B, S, (num_heads + 2 num_kv_heads) * head_dim], got " + dims_str(qkv->dims));
  const int64_t B = qkv->dim(0), S = qkv->dim(1);
  if (past->dtype != DType::I64 || past->dims != Dims{B}) c.fail("PastLens must be int64 [B]");
  int64_t half = 0;
  if (invf) {
    if (invf->dtype != DType::F32 || invf->rank() != 1) c.fail("InvFreq must be fp32 [R/2]");
    half = invf->dim(0);
    if (2 * half > D) c.fail("InvFreq has " + std::to_string(half) + " entries; at most head_dim/2 rotate");
  }
  if (y->dtype != t || y->dims != Dims{B, S, Hq * D}) c.fail("output must be [B, S, num_heads * head_dim] in QKV's dtype");
  if (B > max_batch)
    c.fail("batch " + std::to_string(B) + " exceeds max_batch " + std::to_string(max_batch) + " (the cache's rows)");
  if (S > INT_MAX || B > INT_MAX) c.fail("a dimension exceeds 2^31 - 1");

  // Prefill that the flash kernel could run: the lengths are needed on the host (not a
  // graph-replayed hot path). Asked before anything is enqueued, as NeedsHostValue requires.
  const int64_t* host_lens = nullptr;
  if (flash_applies(t, B, Hq, S, D) && B > 0) host_lens = c.host_value(1, "PastLens").data<int64_t>();

  const size_t cache_bytes = size_t(max_batch) * size_t(Hkv) * size_t(max_seq) * size_t(D) * dtype_size(t);
  CacheState& st = c.res.node_state<CacheState>(c.node, [&]() {
    if (c.res.capturing())
      c.fail("internal: the KV cache is created by the eager run that precedes graph capture, not during it");
    auto s = std::make_shared<CacheState>();
    s->dtype = t;
    s->k = c.res.alloc_persistent(cache_bytes);
    s->v = c.res.alloc_persistent(cache_bytes);
    // Zero-filled as the op defines (all-zero bits are 0.0 in every float dtype).
    SHARDRT_CUDA_CHECK(cudaMemsetAsync(s->k, 0, cache_bytes, c.stream()));
    SHARDRT_CUDA_CHECK(cudaMemsetAsync(s->v, 0, cache_bytes, c.stream()));
    return s;
  });
  if (st.dtype != t) c.fail("QKV's dtype differs from the one the cache was created with");
  if (y->numel() == 0) return false;  // B == 0 or S == 0: nothing to write or read

  cached::Params p;
  p.qkv = qkv->data;
  p.past = past->as<int64_t>();
  p.inv_freq = half > 0 ? invf->as<float>() : nullptr;
  p.kc = st.k;
  p.vc = st.v;
  p.out = y->data;
  p.B = int(B);
  p.S = int(S);
  p.Hq = int(Hq);
  p.Hkv = int(Hkv);
  p.D = int(D);
  p.G = int(Hq / Hkv);
  p.half = int(half);
  p.interleaved = inter != 0;
  p.max_seq = int(max_seq);
  float scale = c.node.attr_f("scale", 0.f);
  if (scale == 0.f) scale = 1.0f / std::sqrt(float(D));
  p.scale_log2 = scale * cached::kLog2e;
  const size_t esz = dtype_size(t);
  cudaStream_t stream = c.stream();

  bool prepped = false;  // the caches already hold this run's k/v
  if (host_lens) {
    const int64_t* pv = host_lens;
    const int64_t P = pv[0];
    bool equal = true;
    for (int64_t b = 1; b < B; ++b) equal = equal && pv[b] == P;
    if (equal && P >= 0 && P + S <= max_seq) {
      const int64_t skv = P + S;
      const bool whole = skv == max_seq;  // the caches' first B rows are the [B, Hkv, skv, D] view
      const size_t q_bytes = round256(size_t(B * Hq * S * D) * esz);
      const size_t kv_bytes = whole ? 0 : round256(size_t(B * Hkv * skv * D) * esz);
      char* ws = static_cast<char*>(c.res.workspace(2 * q_bytes + 2 * kv_bytes));
      void* qbuf = ws;
      void* obuf = ws + q_bytes;
      void* kbuf = whole ? st.k : ws + 2 * q_bytes;
      void* vbuf = whole ? st.v : ws + 2 * q_bytes + kv_bytes;
      cached::launch_prep(p, t, qbuf, stream);
      prepped = true;
      if (!whole) {
        const size_t row = size_t(skv * D) * esz, pitch = size_t(max_seq * D) * esz;
        SHARDRT_CUDA_CHECK(cudaMemcpy2DAsync(kbuf, row, st.k, pitch, row, size_t(B * Hkv), cudaMemcpyDeviceToDevice, stream));
        SHARDRT_CUDA_CHECK(cudaMemcpy2DAsync(vbuf, row, st.v, pitch, row, size_t(B * Hkv), cudaMemcpyDeviceToDevice, stream));
      }
      attn::Params ap;
      ap.q = qbuf;
      ap.k = kbuf;
      ap.v = vbuf;
      ap.o = obuf;
      ap.B = int(B);
      ap.Hq = int(Hq);
      ap.Hkv = int(Hkv);
      ap.Sq = int(S);
      ap.Skv = int(skv);
      ap.D = int(D);
      ap.Dv = int(D);
      ap.group = int(Hq / Hkv);
      ap.scale_log2 = p.scale_log2;
      ap.causal = 1;
      ap.causal_off = P;  // token s sees positions <= P + s
      if (attn::launch_flash(ap, t, stream)) {
        cached::launch_unpermute(p, t, obuf, stream);
        return false;
      }
    }
    // Different lengths, or flash declined: the general path below.
  }

  // PastLens without a producer node is a graph input (as in the decoder engines) or a
  // constant: no kernel of this run writes it (the executor copies graph inputs in before
  // the run's first kernel; eval_node uploads them synchronously), so the fused launch may
  // read it, and the cache rows below it, before its PDL wait.
  const bool past_settled = c.node.inputs.size() > 1 && c.node.inputs[1] && !c.node.inputs[1]->producer;
  if (proj && !prepped && B == 1 && S == 1) {
    const cached::DecodePlan dplan = cached::plan_decode_deferred(p, t, c.res.props());
    const DevTensor* W = c.input(3);
    const DevTensor* bias = c.input(4);
    DevTensor* out = c.out[0];
    const int64_t K = Hq * D;
    const int64_t N = out->dim(-1);
    if (dplan.smem && c.node.attr_i("trans_b", 0) == 1 && W->dtype == t && W->dims == Dims{N, K} &&
        (!bias || (bias->dtype == t && bias->numel() == N))) {
      float* ws = static_cast<float*>(c.res.workspace(dplan.ws_floats * sizeof(float)));
      gemm::GemvAttnMerge m;
      m.acc = ws;
      m.ml = ws + size_t(Hkv) * dplan.nsplit * dplan.qt * dplan.dp;
      m.attn = y->data;
      m.nsplit = dplan.nsplit;
      m.hq = int(Hq);
      m.hkv = int(Hkv);
      m.qt = dplan.qt;
      m.d = int(D);
      if (gemm::gemv_attn_merge_applies(t, 1, N, K, m, W->data)) {
        cached::launch_decode(p, t, dplan, 1, past_settled, ws, nullptr, stream);
        if (!gemm::launch_gemv_attn_merge(t, 1, N, K, m, W->data, bias ? bias->data : nullptr, out->data,
                                          c.host_input(3) != nullptr, stream))
          c.fail("internal: the attention-merge GEMV refused a case it had accepted");
        return true;
      }
    }
  }

  const cached::DecodePlan plan = cached::plan_decode(p, t, c.res.props());
  if (plan.smem == 0)
    c.fail("head_dim " + std::to_string(D) + " needs more shared memory than this GPU gives one block");
  if (plan.ntile > 65535) c.fail("too many query rows (num_heads / num_kv_heads x S) for one launch");
  if (st.n_counters < plan.counters) {
    if (c.res.capturing()) c.fail("internal: the split-K counters must grow in the eager run, not during capture");
    const int64_t n = std::max<int64_t>(plan.counters, max_batch * Hkv * 2);
    st.counters = static_cast<int*>(c.res.alloc_persistent(size_t(n) * sizeof(int)));
    SHARDRT_CUDA_CHECK(cudaMemsetAsync(st.counters, 0, size_t(n) * sizeof(int), stream));
    st.n_counters = n;
  }
  float* ws = static_cast<float*>(c.res.workspace(plan.ws_floats * sizeof(float)));
  const bool fused = !prepped && S < kFusedMaxS;
  if (!fused && !prepped) cached::launch_prep(p, t, nullptr, stream);
  cached::launch_decode(p, t, plan, fused ? 1 : 0, past_settled, ws, st.counters, stream);
  return false;
}

void cached_attention_kernel(KernelCtx& c) {
  const DevTensor* W = c.input(3);
  if (!W) {
    attention(c, c.out.empty() ? nullptr : c.out[0], false);
    return;
  }
  if (c.out.size() < 2 || !c.out[0] || !c.out[1])
    c.fail("with an output projection (W) both outputs (the projection and the attention) are required");
  if (attention(c, c.out[1], true)) return;
  // The unfused pair's second launch: shardrt.Linear reads trans_b (and activation: none)
  // from this node and takes W's host copy as the sign of a constant weight.
  const Kernel* lin = find_kernel("shardrt.Linear");
  if (!lin) c.fail("internal: no CUDA kernel for shardrt.Linear");
  KernelCtx lc{c.node, {c.out[1], W, c.input(4)}, {nullptr, c.host_input(3), c.host_input(4)}, {c.out[0]}, c.res,
               c.comm, c.dcomm};
  (*lin)(lc);
}

}  // namespace

void register_cached_attention_kernel() { register_kernel("shardrt.CachedAttention", cached_attention_kernel); }

}  // namespace shardrt::cuda
