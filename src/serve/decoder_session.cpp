#include "serve/decoder_session.h"

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>

#include "ir/graph.h"
#include "ir/ops/cached_attention.h"
#include "models/decoder.h"
#include "models/decoder_common.h"
#include "serve/past_present.h"
#include "serve/sampler.h"

namespace shardrt::serve {

namespace {

// The KV cache geometry every CachedAttention node of the engine shares (0, 0: none).
void cache_geometry(const Engine& engine, int64_t& max_batch, int64_t& max_seq) {
  max_batch = max_seq = 0;
  for (auto& n : engine.graph().nodes) {
    if (n->dead || n->op != "shardrt.CachedAttention") continue;
    std::string err;
    CachedAttentionAttrs a = CachedAttentionAttrs::read(*n, err);
    if (!err.empty()) throw Error("decoder session: " + n->describe() + ": " + err);
    if (max_batch == 0) {
      max_batch = a.max_batch;
      max_seq = a.max_seq;
    } else if (a.max_batch != max_batch || a.max_seq != max_seq) {
      throw Error("decoder session: the engine's CachedAttention nodes disagree on the KV cache size (" +
                  n->describe() + " has max_batch " + std::to_string(a.max_batch) + ", max_seq " +
                  std::to_string(a.max_seq) + "; an earlier one " + std::to_string(max_batch) + ", " +
                  std::to_string(max_seq) + ")");
    }
  }
}

int64_t logits_vocab(const Engine& engine) {
  for (const char* name : {models::kInputIds, models::kPastLens, models::kLastIndex}) {
    bool found = false;
    for (const Binding& b : engine.inputs()) found |= b.name == name;
    if (!found) throw Error(std::string("decoder session: the engine has no input '") + name + "'");
  }
  for (const Binding& b : engine.outputs()) {
    if (b.name != models::kLogits) continue;
    if (b.dims.size() != 2) throw Error("decoder session: output 'logits' is not [B, V]");
    try {
      size_t used = 0;
      int64_t v = std::stoll(b.dims[1], &used);
      if (used == b.dims[1].size() && v > 0) return v;
    } catch (const std::exception&) {
    }
    throw Error("decoder session: output 'logits' has vocabulary dim '" + b.dims[1] + "', not a fixed size");
  }
  throw Error("decoder session: the engine has no output 'logits'");
}

bool has_next_token_output(const Engine& engine) {
  for (const Binding& b : engine.outputs())
    if (b.name == models::kNextToken && b.dtype == DType::I64 && b.dims.size() == 1) return true;
  return false;
}

bool host_argmax_forced() {
  const char* s = std::getenv("SHARDRT_HOST_ARGMAX");
  return s && *s && std::string(s) != "0";
}

}  // namespace

struct DecoderSession::Impl {
  const Engine& engine;
  ExecutionContext ctx;
  int64_t max_batch = 0, max_seq = 0, vocab = 0;
  std::vector<int64_t> lengths;  // per row of the last prefill
  bool has_next_token = false, use_device_argmax = false;
  std::vector<int64_t> chosen;  // the greedy steps' result
  std::map<std::string, Tensor> in;  // the step's inputs; decode steps rewrite them in place
  const std::vector<std::string> fetch_logits{models::kLogits}, fetch_token{models::kNextToken};

  // Past/present layout only.
  std::optional<PastPresentLayout> pp;
  std::vector<std::string> pp_fetch;  // logits, then every present in layout order
  std::vector<Tensor> cache;          // per layer: key, value [rows, Hkv, positions, D]
  int64_t positions = 0;              // cache positions of every row (left padding included)
  std::vector<int64_t> pads;          // left padding per row

  Impl(const Engine& e, const ContextOptions& o) : engine(e), ctx(e, o) {}

  void check_token(int64_t t, size_t row, const char* what) const {
    if (t < 0 || t >= vocab)
      throw Error(std::string("decoder session: ") + what + " token " + std::to_string(t) + " of row " +
                  std::to_string(row) + " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
  }

  void check_prefill(const std::vector<std::vector<int64_t>>& prompts, int64_t& longest) const {
    const int64_t rows = int64_t(prompts.size());
    if (rows < 1 || rows > max_batch)
      throw Error("decoder session: prefill of " + std::to_string(rows) + " rows; the engine's KV cache holds 1 to " +
                  std::to_string(max_batch) + " (max_batch)");
    longest = 0;
    for (size_t b = 0; b < prompts.size(); ++b) {
      const int64_t len = int64_t(prompts[b].size());
      if (len < 1 || len > max_seq)
        throw Error("decoder session: prompt of row " + std::to_string(b) + " has " + std::to_string(len) +
                    " tokens; the engine's KV cache holds 1 to " + std::to_string(max_seq) + " (max_seq)");
      for (int64_t t : prompts[b]) check_token(t, b, "prompt");
      longest = std::max(longest, len);
    }
  }

  void check_decode(const std::vector<int64_t>& tokens) const {
    if (lengths.empty()) throw Error("decoder session: decode before any prefill");
    const int64_t rows = int64_t(lengths.size());
    if (int64_t(tokens.size()) != rows)
      throw Error("decoder session: decode got " + std::to_string(tokens.size()) + " tokens for the " +
                  std::to_string(rows) + " rows of the last prefill (one per row)");
    for (int64_t b = 0; b < rows; ++b) {
      check_token(tokens[size_t(b)], size_t(b), "decode");
      const int64_t used = pp ? positions : lengths[size_t(b)];
      if (used + 1 > max_seq)
        throw Error("decoder session: row " + std::to_string(b) + " holds " + std::to_string(used) +
                    (pp ? " positions (left padding included)" : " tokens") +
                    "; one more exceeds the engine's KV cache of " + std::to_string(max_seq) + " (max_seq)");
    }
  }

  // An int64 input of `dims` in `in`, reused when the last step's has the same shape.
  int64_t* input_i64(const char* name, const Dims& dims) {
    Tensor& t = in[name];
    if (!t.defined() || t.dims() != dims) t = Tensor(DType::I64, dims);
    return t.data<int64_t>();
  }

  // ---- native: the cache is in the context ----

  // Runs the inputs in `in`; returns the logits, or (greedy) fills `chosen`.
  Tensor run_native(bool greedy) {
    ctx.set_inputs(in);
    ctx.execute();
    const bool tokens = greedy && use_device_argmax;
    auto out = ctx.outputs(tokens ? fetch_token : fetch_logits);
    Tensor& t = out.begin()->second;
    if (tokens) {
      chosen.assign(t.data<int64_t>(), t.data<int64_t>() + t.numel());
      return {};
    }
    if (greedy) argmax_rows(t);
    return std::move(t);
  }

  void argmax_rows(const Tensor& logits) {
    const int64_t rows = logits.dim(0), v = logits.dim(1);
    chosen.resize(size_t(rows));
    for (int64_t b = 0; b < rows; ++b) chosen[size_t(b)] = argmax(logits.data<float>() + b * v, v);
  }

  Tensor prefill_native(const std::vector<std::vector<int64_t>>& prompts, bool greedy) {
    int64_t longest = 0;
    check_prefill(prompts, longest);
    const int64_t rows = int64_t(prompts.size());
    // Right-padded: a shorter row's padding writes cache positions beyond its length, which
    // its next decode step overwrites before any read of them.
    int64_t* ids = input_i64(models::kInputIds, {rows, longest});
    int64_t* past = input_i64(models::kPastLens, {rows});
    int64_t* last = input_i64(models::kLastIndex, {rows});
    std::fill(ids, ids + rows * longest, 0);
    for (int64_t b = 0; b < rows; ++b) {
      const auto& p = prompts[size_t(b)];
      std::copy(p.begin(), p.end(), ids + b * longest);
      past[b] = 0;
      last[b] = int64_t(p.size()) - 1;
    }
    // A failed prefill may have overwritten the previous rows' caches: forget them.
    lengths.clear();
    Tensor logits = run_native(greedy);
    for (const auto& p : prompts) lengths.push_back(int64_t(p.size()));
    return logits;
  }

  Tensor decode_native(const std::vector<int64_t>& tokens, bool greedy) {
    check_decode(tokens);
    const int64_t rows = int64_t(lengths.size());
    int64_t* ids = input_i64(models::kInputIds, {rows, 1});
    int64_t* past = input_i64(models::kPastLens, {rows});
    int64_t* last = input_i64(models::kLastIndex, {rows});
    for (int64_t b = 0; b < rows; ++b) {
      ids[b] = tokens[size_t(b)];
      past[b] = lengths[size_t(b)];
      last[b] = 0;
    }
    // A failed run leaves the lengths as they were: it wrote only at each row's next
    // position, so running the same step again is harmless.
    Tensor logits = run_native(greedy);
    for (int64_t& l : lengths) ++l;
    return logits;
  }

  // ---- past/present: the cache is in the bindings ----

  void init_past_present() {
    for (auto& l : pp->layers) {
      pp_fetch.push_back(l.present_key);
      pp_fetch.push_back(l.present_value);
    }
    pp_fetch.push_back(models::kLogits);
  }

  // One step over [rows, S] tokens `ids` at cache positions [positions, positions + S);
  // the mask and positions come from `pads`. Returns the logits of the last token (fp32
  // [rows, V]) when `want_logits`, and moves the presents into `cache`.
  Tensor run_past_present(const std::vector<int64_t>& ids, int64_t rows, int64_t S, bool want_logits) {
    const PastPresentLayout& L = *pp;
    const int64_t total = positions + S;
    std::copy(ids.begin(), ids.end(), input_i64(models::kInputIds, {rows, S}));
    if (!L.attention_mask.empty()) {
      Tensor& m = in[L.attention_mask];
      if (!m.defined() || m.dims() != Dims{rows, total}) m = Tensor(L.mask_dtype, {rows, total});
      for (int64_t b = 0; b < rows; ++b)
        for (int64_t j = 0; j < total; ++j) m.set_f(b * total + j, j >= pads[size_t(b)] ? 1.0 : 0.0);
    }
    if (!L.position_ids.empty()) {
      // transformers' positions for generation: cumsum(mask) - 1, and 1 on the padding.
      int64_t* pos = input_i64(L.position_ids.c_str(), {rows, S});
      for (int64_t b = 0; b < rows; ++b)
        for (int64_t s = 0; s < S; ++s) {
          const int64_t j = positions + s;
          pos[b * S + s] = j < pads[size_t(b)] ? 1 : j - pads[size_t(b)];
        }
    }
    for (size_t l = 0; l < L.layers.size(); ++l) {
      in[L.layers[l].past_key] = cache[2 * l];
      in[L.layers[l].past_value] = cache[2 * l + 1];
    }
    ctx.set_inputs(in);
    ctx.execute();
    auto out = ctx.outputs(pp_fetch);
    for (size_t l = 0; l < L.layers.size(); ++l) {
      for (int k = 0; k < 2; ++k) {
        const std::string& name = k ? L.layers[l].present_value : L.layers[l].present_key;
        Tensor& t = out.at(name);
        const auto& lay = L.layers[l];
        if (t.dims() != Dims{rows, lay.kv_heads, total, lay.head_dim})
          throw Error("decoder session: output '" + name + "' is " + dims_str(t.dims()) + " after a step of " +
                      std::to_string(S) + " token(s) over " + std::to_string(positions) + " cached; expected " +
                      dims_str({rows, lay.kv_heads, total, lay.head_dim}) + " (the pasts grown by the step's tokens)");
        cache[2 * l + size_t(k)] = std::move(t);
      }
    }
    positions = total;
    if (!want_logits) return {};
    const Tensor& lg = out.at(models::kLogits);
    if (lg.rank() != 3 || lg.dim(0) != rows || lg.dim(1) != S || lg.dim(2) != vocab)
      throw Error("decoder session: output 'logits' is " + dims_str(lg.dims()) + ", expected " +
                  dims_str({rows, S, vocab}));
    Tensor r(DType::F32, {rows, vocab});
    const size_t es = dtype_size(lg.dtype());
    for (int64_t b = 0; b < rows; ++b)
      models::convert_elements(static_cast<const char*>(lg.raw()) + size_t((b * S + S - 1) * vocab) * es, lg.dtype(),
                               r.data<float>() + b * vocab, DType::F32, vocab);
    return r;
  }

  Tensor prefill_past_present(const std::vector<std::vector<int64_t>>& prompts) {
    int64_t longest = 0;
    check_prefill(prompts, longest);
    const int64_t rows = int64_t(prompts.size());
    if (!pp->can_pad())
      for (const auto& p : prompts)
        if (int64_t(p.size()) != longest)
          throw Error("decoder session: prompts of different lengths in one batch need the engine inputs "
                      "attention_mask and position_ids");
    lengths.clear();
    pads.assign(size_t(rows), 0);
    std::vector<int64_t> padded(size_t(rows * longest), 0);  // left-padded; the padding is masked out
    for (int64_t b = 0; b < rows; ++b) {
      const auto& p = prompts[size_t(b)];
      pads[size_t(b)] = longest - int64_t(p.size());
      std::copy(p.begin(), p.end(), padded.begin() + b * longest + pads[size_t(b)]);
    }
    cache.clear();
    for (auto& l : pp->layers)
      for (int k = 0; k < 2; ++k) cache.emplace_back(pp->cache_dtype, Dims{rows, l.kv_heads, 0, l.head_dim});
    positions = 0;
    Tensor logits;
    std::vector<int64_t> chunk;
    for (int64_t c0 = 0; c0 < longest; c0 += pp->max_chunk) {
      const int64_t S = std::min(pp->max_chunk, longest - c0);
      chunk.resize(size_t(rows * S));
      for (int64_t b = 0; b < rows; ++b)
        std::copy(padded.begin() + b * longest + c0, padded.begin() + b * longest + c0 + S, chunk.begin() + b * S);
      logits = run_past_present(chunk, rows, S, c0 + S == longest);
    }
    for (const auto& p : prompts) lengths.push_back(int64_t(p.size()));
    return logits;
  }

  Tensor decode_past_present(const std::vector<int64_t>& tokens) {
    check_decode(tokens);
    Tensor logits = run_past_present(tokens, int64_t(tokens.size()), 1, true);
    for (int64_t& l : lengths) ++l;
    return logits;
  }
};

DecoderSession::DecoderSession(const Engine& engine, const ContextOptions& options) {
  int64_t mb = 0, ms = 0, v = 0;
  cache_geometry(engine, mb, ms);
  std::optional<PastPresentLayout> pp;
  if (mb == 0) {
    std::vector<std::string> names;
    for (const Binding& b : engine.inputs()) names.push_back(b.name);
    if (!has_past_inputs(names))
      throw Error("decoder session: the engine has no shardrt.CachedAttention node and no past_key_values.N.key/.value "
                  "inputs (not a decoder engine with a KV cache)");
    pp = read_past_present_layout(engine);
    mb = pp->max_batch;
    ms = pp->max_seq;
    v = pp->vocab;
  } else {
    v = logits_vocab(engine);
  }
  impl_ = std::make_unique<Impl>(engine, options);
  impl_->max_batch = mb;
  impl_->max_seq = ms;
  impl_->vocab = v;
  impl_->pp = std::move(pp);
  if (impl_->pp) impl_->init_past_present();
  impl_->has_next_token = !impl_->pp && has_next_token_output(engine);
  impl_->use_device_argmax = impl_->has_next_token && !host_argmax_forced();
}

DecoderSession::~DecoderSession() = default;

int64_t DecoderSession::max_batch() const { return impl_->max_batch; }
int64_t DecoderSession::max_seq() const { return impl_->max_seq; }
int64_t DecoderSession::vocab() const { return impl_->vocab; }
const std::string& DecoderSession::device() const { return impl_->ctx.device(); }
bool DecoderSession::past_present() const { return impl_->pp.has_value(); }
const std::vector<int64_t>& DecoderSession::lengths() const { return impl_->lengths; }
bool DecoderSession::device_argmax() const { return impl_->use_device_argmax; }
void DecoderSession::set_device_argmax(bool on) { impl_->use_device_argmax = on && impl_->has_next_token; }

Tensor DecoderSession::prefill(const std::vector<std::vector<int64_t>>& prompts) {
  return impl_->pp ? impl_->prefill_past_present(prompts) : impl_->prefill_native(prompts, false);
}

Tensor DecoderSession::decode(const std::vector<int64_t>& tokens) {
  return impl_->pp ? impl_->decode_past_present(tokens) : impl_->decode_native(tokens, false);
}

const std::vector<int64_t>& DecoderSession::prefill_greedy(const std::vector<std::vector<int64_t>>& prompts) {
  if (impl_->pp) impl_->argmax_rows(impl_->prefill_past_present(prompts));
  else impl_->prefill_native(prompts, true);
  return impl_->chosen;
}

const std::vector<int64_t>& DecoderSession::decode_greedy(const std::vector<int64_t>& tokens) {
  if (impl_->pp) impl_->argmax_rows(impl_->decode_past_present(tokens));
  else impl_->decode_native(tokens, true);
  return impl_->chosen;
}

}  // namespace shardrt::serve
