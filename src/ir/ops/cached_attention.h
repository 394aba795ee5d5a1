// shardrt.CachedAttention's attributes, read and checked in one place for the schema and
// every backend's kernel (definition in docs/ops.md).
#pragma once
#include <cstdint>
#include <string>

#include "ir/graph.h"

namespace shardrt {

struct CachedAttentionAttrs {
  int64_t num_heads = 0;     // Hq
  int64_t num_kv_heads = 0;  // Hkv
  int64_t head_dim = 0;      // D
  int64_t max_batch = 0;     // cache rows
  int64_t max_seq = 0;       // cache positions
  int64_t layer = 0;         // for messages and inspect only
  float scale = 0.f;         // as given (0: 1/sqrt(D)); see softmax_scale()
  bool interleaved = false;  // rotary pairs (2j, 2j+1) instead of rotate-half

  float softmax_scale() const;
  // Elements of one of the two caches: max_batch · Hkv · max_seq · D.
  int64_t cache_elements() const;
  // The attributes of `n`; "" in `err` when they are valid, else what is wrong (the
  // fields are then unspecified).
  static CachedAttentionAttrs read(const Node& n, std::string& err);
};

}  // namespace shardrt
