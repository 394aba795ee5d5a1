#include "serve/decoder_session.h"

#include <algorithm>
#include <string>

#include "ir/graph.h"
#include "ir/ops/cached_attention.h"
#include "models/decoder.h"

namespace shardrt::serve {

struct DecoderSession::Impl {
  const Engine& engine;
  ExecutionContext ctx;
  int64_t max_batch = 0, max_seq = 0, vocab = 0;
  std::vector<int64_t> lengths;  // per row of the last prefill

  Impl(const Engine& e, const ContextOptions& o) : engine(e), ctx(e, o) {}

  Tensor run(const Tensor& ids, const Tensor& past, const Tensor& last) {
    auto out = ctx.run({{models::kInputIds, ids}, {models::kPastLens, past}, {models::kLastIndex, last}});
    auto it = out.find(models::kLogits);
    if (it == out.end()) throw Error("decoder session: the engine returned no 'logits'");
    return std::move(it->second);
  }

  void check_token(int64_t t, size_t row, const char* what) const {
    if (t < 0 || t >= vocab)
      throw Error(std::string("decoder session: ") + what + " token " + std::to_string(t) + " of row " +
                  std::to_string(row) + " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
  }
};

namespace {

// The KV cache geometry every CachedAttention node of the engine shares.
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
  if (max_batch == 0)
    throw Error("decoder session: the engine has no shardrt.CachedAttention node (not a decoder engine with a KV cache)");
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

}  // namespace

DecoderSession::DecoderSession(const Engine& engine, const ContextOptions& options) {
  int64_t mb = 0, ms = 0;
  cache_geometry(engine, mb, ms);
  const int64_t v = logits_vocab(engine);
  impl_ = std::make_unique<Impl>(engine, options);
  impl_->max_batch = mb;
  impl_->max_seq = ms;
  impl_->vocab = v;
}

DecoderSession::~DecoderSession() = default;

int64_t DecoderSession::max_batch() const { return impl_->max_batch; }
int64_t DecoderSession::max_seq() const { return impl_->max_seq; }
int64_t DecoderSession::vocab() const { return impl_->vocab; }
const std::string& DecoderSession::device() const { return impl_->ctx.device(); }
const std::vector<int64_t>& DecoderSession::lengths() const { return impl_->lengths; }

Tensor DecoderSession::prefill(const std::vector<std::vector<int64_t>>& prompts) {
  Impl& m = *impl_;
  const int64_t rows = int64_t(prompts.size());
  if (rows < 1 || rows > m.max_batch)
    throw Error("decoder session: prefill of " + std::to_string(rows) + " rows; the engine's KV cache holds 1 to " +
                std::to_string(m.max_batch) + " (max_batch)");
  int64_t longest = 0;
  for (size_t b = 0; b < prompts.size(); ++b) {
    const int64_t len = int64_t(prompts[b].size());
    if (len < 1 || len > m.max_seq)
      throw Error("decoder session: prompt of row " + std::to_string(b) + " has " + std::to_string(len) +
                  " tokens; the engine's KV cache holds 1 to " + std::to_string(m.max_seq) + " (max_seq)");
    for (int64_t t : prompts[b]) m.check_token(t, b, "prompt");
    longest = std::max(longest, len);
  }
  // Right-padded: a shorter row's padding writes cache positions beyond its length, which
  // its next decode step overwrites before any read of them.
  Tensor ids(DType::I64, {rows, longest}), past(DType::I64, {rows}), last(DType::I64, {rows});
  for (int64_t b = 0; b < rows; ++b) {
    const auto& p = prompts[size_t(b)];
    std::copy(p.begin(), p.end(), ids.data<int64_t>() + b * longest);
    last.data<int64_t>()[b] = int64_t(p.size()) - 1;
  }
  // A failed prefill may have overwritten the previous rows' caches: forget them.
  m.lengths.clear();
  Tensor logits = m.run(ids, past, last);
  for (const auto& p : prompts) m.lengths.push_back(int64_t(p.size()));
  return logits;
}

Tensor DecoderSession::decode(const std::vector<int64_t>& tokens) {
  Impl& m = *impl_;
  if (m.lengths.empty()) throw Error("decoder session: decode before any prefill");
  const int64_t rows = int64_t(m.lengths.size());
  if (int64_t(tokens.size()) != rows)
    throw Error("decoder session: decode got " + std::to_string(tokens.size()) + " tokens for the " +
                std::to_string(rows) + " rows of the last prefill (one per row)");
  for (int64_t b = 0; b < rows; ++b) {
    m.check_token(tokens[size_t(b)], size_t(b), "decode");
    if (m.lengths[size_t(b)] + 1 > m.max_seq)
      throw Error("decoder session: row " + std::to_string(b) + " holds " + std::to_string(m.lengths[size_t(b)]) +
                  " tokens; one more exceeds the engine's KV cache of " + std::to_string(m.max_seq) + " (max_seq)");
  }
  Tensor ids(DType::I64, {rows, 1}), past(DType::I64, {rows}), last(DType::I64, {rows});
  for (int64_t b = 0; b < rows; ++b) {
    ids.data<int64_t>()[b] = tokens[size_t(b)];
    past.data<int64_t>()[b] = m.lengths[size_t(b)];
  }
  // A failed run leaves the lengths as they were: it wrote only at each row's next
  // position, so running the same step again is harmless.
  Tensor logits = m.run(ids, past, last);
  for (int64_t& l : m.lengths) ++l;
  return logits;
}

}  // namespace shardrt::serve
