// Schema of shardrt.CachedAttention: attention of a decoder step over a KV cache that the
// node keeps per execution context, optionally followed by its output projection (inputs W,
// [B]; the fuse_attention_linear pass adds them; definition in docs/ops.md). Also what the
// cache costs, for inspect and the model loaders.
#include <cmath>
#include <map>
#include <sstream>
#include <string>

#include "ir/op_schema.h"
#include "ir/ops/cached_attention.h"
#include "ir/ops/ops.h"

namespace shardrt {

namespace {

constexpr const char* kOp = "shardrt.CachedAttention";

bool ca_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// An int attribute: required ones must be present; every one must be an int.
bool read_int(const Node& n, const char* k, bool required, int64_t dflt, int64_t& out, std::string& err) {
  auto it = n.attrs.find(k);
  if (it == n.attrs.end()) {
    if (required) err = std::string(kOp) + " needs attribute '" + k + "'";
    out = dflt;
    return !required;
  }
  if (it->second.kind != Attr::Int) {
    err = std::string(kOp) + " attribute '" + k + "' must be an int";
    return false;
  }
  out = it->second.i;
  return true;
}

}  // namespace

float CachedAttentionAttrs::softmax_scale() const {
  if (scale != 0.f) return scale;
  return head_dim > 0 ? 1.0f / std::sqrt(float(head_dim)) : 1.0f;
}

int64_t CachedAttentionAttrs::cache_elements() const { return max_batch * num_kv_heads * max_seq * head_dim; }

CachedAttentionAttrs CachedAttentionAttrs::read(const Node& n, std::string& err) {
  CachedAttentionAttrs a;
  err.clear();
  int64_t inter = 0;
  if (!read_int(n, "num_heads", true, 0, a.num_heads, err) || !read_int(n, "num_kv_heads", true, 0, a.num_kv_heads, err) ||
      !read_int(n, "head_dim", true, 0, a.head_dim, err) || !read_int(n, "max_batch", true, 0, a.max_batch, err) ||
      !read_int(n, "max_seq", true, 0, a.max_seq, err) || !read_int(n, "layer", false, 0, a.layer, err) ||
      !read_int(n, "rotary_interleaved", false, 0, inter, err))
    return a;
  auto positive = [&](const char* k, int64_t v) {
    if (v > 0 || !err.empty()) return;
    err = std::string(kOp) + " " + k + " must be > 0, got " + std::to_string(v);
  };
  positive("num_heads", a.num_heads);
  positive("num_kv_heads", a.num_kv_heads);
  positive("head_dim", a.head_dim);
  positive("max_batch", a.max_batch);
  positive("max_seq", a.max_seq);
  if (!err.empty()) return a;
  if (a.num_heads % a.num_kv_heads != 0) {
    err = std::string(kOp) + " num_heads (" + std::to_string(a.num_heads) + ") is not a multiple of num_kv_heads (" +
          std::to_string(a.num_kv_heads) + ")";
    return a;
  }
  if (a.layer < 0) {
    err = std::string(kOp) + " layer must be >= 0, got " + std::to_string(a.layer);
    return a;
  }
  if (inter != 0 && inter != 1) {
    err = std::string(kOp) + " rotary_interleaved must be 0 or 1, got " + std::to_string(inter);
    return a;
  }
  a.interleaved = inter == 1;
  auto sit = n.attrs.find("scale");
  if (sit != n.attrs.end()) {
    if (sit->second.kind != Attr::Float) {
      err = std::string(kOp) + " attribute 'scale' must be a float";
      return a;
    }
    a.scale = sit->second.f;
    if (!std::isfinite(a.scale)) {
      err = std::string(kOp) + " scale must be finite";
      return a;
    }
  }
  // The caches must be addressable: 2 · elements · 4 bytes (fp32) within int64.
  int64_t e = a.max_batch, hd = 0;
  if (__builtin_mul_overflow(a.num_kv_heads, a.head_dim, &hd) || __builtin_mul_overflow(e, hd, &e) ||
      __builtin_mul_overflow(e, a.max_seq, &e) || e > (int64_t(1) << 60)) {
    err = std::string(kOp) + " cache of [" + std::to_string(a.max_batch) + ", " + std::to_string(a.num_kv_heads) + ", " +
          std::to_string(a.max_seq) + ", " + std::to_string(a.head_dim) + "] elements is too large";
    return a;
  }
  int64_t width = 0;
  if (__builtin_mul_overflow(a.num_heads + 2 * a.num_kv_heads, a.head_dim, &width)) {
    err = std::string(kOp) + " (num_heads + 2·num_kv_heads)·head_dim overflows";
    return a;
  }
  return a;
}

namespace {

void cached_attention() {
  OpSchema s;
  s.name = kOp;
  s.min_inputs = 2;
  s.max_inputs = 5;
  s.max_outputs = 2;
  s.attrs = {"num_heads", "num_kv_heads", "head_dim", "scale", "max_batch", "max_seq", "rotary_interleaved", "layer",
             "trans_b"};
  s.stateful = true;
  s.infer = [](InferCtx& c) {
    std::string err;
    CachedAttentionAttrs a = CachedAttentionAttrs::read(c.node, err);
    if (!err.empty()) c.fail(err);
    const int64_t Hq = a.num_heads, Hkv = a.num_kv_heads, D = a.head_dim;
    if (!ca_float(c.in_types[0]))
      c.fail(std::string("QKV has type ") + dtype_name(c.in_types[0]) + ", expected fp32, fp16 or bf16");
    const Shape& qkv = c.in_shapes[0];
    if (qkv.size() != 3) c.fail("QKV must be 3-D [B, S, (Hq + 2·Hkv)·D], got " + shape_str(qkv));
    const int64_t width = (Hq + 2 * Hkv) * D;
    if (qkv[2].known() && qkv[2].value != width)
      c.fail("QKV's last dim is " + qkv[2].str() + ", expected (num_heads + 2·num_kv_heads)·head_dim = (" +
             std::to_string(Hq) + " + 2·" + std::to_string(Hkv) + ")·" + std::to_string(D) + " = " + std::to_string(width));
    if (qkv[0].known() && qkv[0].value > a.max_batch)
      c.fail("batch " + qkv[0].str() + " exceeds max_batch " + std::to_string(a.max_batch));
    if (qkv[1].known() && qkv[1].value > a.max_seq)
      c.fail("sequence length " + qkv[1].str() + " exceeds max_seq " + std::to_string(a.max_seq));

    if (!c.has(1)) c.fail("PastLens (input 1) is required");
    if (c.in_types[1] != DType::I64) c.fail(std::string("PastLens has type ") + dtype_name(c.in_types[1]) + ", expected int64");
    const Shape& pl = c.in_shapes[1];
    if (pl.size() != 1) c.fail("PastLens must be 1-D [B], got " + shape_str(pl));
    if (pl[0].known() && qkv[0].known() && pl[0].value != qkv[0].value)
      c.fail("PastLens has " + pl[0].str() + " rows, QKV's batch is " + qkv[0].str());

    if (c.has(2)) {
      if (c.in_types[2] != DType::F32) c.fail(std::string("InvFreq has type ") + dtype_name(c.in_types[2]) + ", expected fp32");
      const Shape& f = c.in_shapes[2];
      if (f.size() != 1) c.fail("InvFreq must be 1-D [R/2], got " + shape_str(f));
      if (f[0].known() && 2 * f[0].value > D)
        c.fail("InvFreq has " + f[0].str() + " frequencies: rotary width 2·" + f[0].str() + " exceeds head_dim " +
               std::to_string(D));
    }
    const Shape attn{qkv[0], qkv[1], Dim(Hq * D)};
    if (!c.has(3)) {
      if (c.has(4)) c.fail("B (input 4) is given without W (input 3)");
      c.set(0, c.in_types[0], attn);
      return;
    }
    // With the output projection: Y = Attn · W (trans_b: W as [N, K]) + B, and the second
    // output is Attn itself (written too, as the unfused pair would store it).
    c.set(0, c.in_types[0], linear_output_shape(c, attn, c.in_types[0], 3, 4));
    c.set(1, c.in_types[0], attn);
  };
  s.validate = [](const Node& n) -> std::string {
    std::string err;
    CachedAttentionAttrs::read(n, err);
    if (!err.empty()) return err;
    const int64_t tb = n.attr_i("trans_b", 0);
    if (tb != 0 && tb != 1) return std::string(kOp) + " trans_b must be 0 or 1";
    const bool proj = n.inputs.size() > 3 && n.inputs[3];
    if (proj && (n.outputs.size() < 2 || !n.outputs[1]))
      return std::string(kOp) + " with an output projection (W) needs its second output (the attention)";
    if (!proj && n.outputs.size() > 1 && n.outputs[1])
      return std::string(kOp) + " has a second output (the attention) only with an output projection (W)";
    return "";
  };
  register_schema(std::move(s));
}

}  // namespace

void register_cached_attention_schemas() { cached_attention(); }

size_t cached_attention_state_bytes(const Graph& g) {
  size_t total = 0;
  for (auto& n : g.nodes) {
    if (n->dead || n->op != kOp || !n->in(0)) continue;
    std::string err;
    CachedAttentionAttrs a = CachedAttentionAttrs::read(*n, err);
    if (!err.empty()) continue;  // the build refuses such a node anyway
    total += 2 * size_t(a.cache_elements()) * dtype_size(n->in(0)->dtype);
  }
  return total;
}

std::string cached_attention_state_summary(const Graph& g) {
  // Layers grouped by cache geometry and dtype (one group for an ordinary decoder).
  std::map<std::string, int> groups;
  for (auto& n : g.nodes) {
    if (n->dead || n->op != kOp || !n->in(0)) continue;
    std::string err;
    CachedAttentionAttrs a = CachedAttentionAttrs::read(*n, err);
    if (!err.empty()) continue;
    groups["[" + std::to_string(a.max_batch) + ", " + std::to_string(a.num_kv_heads) + ", " + std::to_string(a.max_seq) +
           ", " + std::to_string(a.head_dim) + "] " + dtype_name(n->in(0)->dtype)]++;
  }
  size_t bytes = cached_attention_state_bytes(g);
  if (groups.empty() || bytes == 0) return "";
  std::ostringstream o;
  if (bytes >= 1000000) {
    o.setf(std::ios::fixed);
    o.precision(1);
  } else {
    o.precision(3);  // small caches (tests, toy models): significant digits, not "0.0"
  }
  o << "KV cache: " << double(bytes) / 1e6 << " MB per execution context (";
  bool first = true;
  for (auto& [geom, count] : groups) {
    o << (first ? "" : " + ") << count << (count == 1 ? " layer" : " layers") << " × 2 × " << geom;
    first = false;
  }
  o << ")";
  return o.str();
}

}  // namespace shardrt
