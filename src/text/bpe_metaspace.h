// The SentencePiece-style layout of tokenizer.json (Llama-2, Mistral): which normalizer,
// pre-tokenizer, model options and decoder it takes (bpe_metaspace.cpp).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "text/bpe_tokenizer.h"

namespace shardrt::text {

// A tokenizer.json component's "type" ("none" for null, "?" for an object without one).
inline std::string type_of(const nlohmann::json& j) { return j.is_object() ? j.value("type", std::string("?")) : "none"; }

// True when tokenizer.json `j` is laid out SentencePiece-style (a normalizer, a Metaspace
// pre-tokenizer, or none at all); its settings then go to `ms` (unk_id excepted: the caller
// looks the unknown token up once the vocabulary is read). Parts it does not run throw
// Error naming `file` and the part.
bool read_metaspace_layout(const nlohmann::json& j, const std::string& file, BpeTokenizer::Metaspace& ms);

}  // namespace shardrt::text
