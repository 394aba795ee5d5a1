#include "serve/past_present.h"

#include <algorithm>
#include <array>

#include "ir/graph.h"

namespace shardrt::serve {

namespace {

// "past_key_values.12.key" -> (12, "key"); false for any other name.
bool parse_layer_name(const std::string& name, const std::string& prefix, int64_t& layer, std::string& kind) {
  if (name.compare(0, prefix.size(), prefix) != 0) return false;
  size_t at = prefix.size(), dot = name.find('.', at);
  if (dot == std::string::npos || dot == at || dot - at > 6) return false;
  for (size_t i = at; i < dot; ++i)
    if (name[i] < '0' || name[i] > '9') return false;
  kind = name.substr(dot + 1);
  if (kind != "key" && kind != "value") return false;
  layer = std::stoll(name.substr(at, dot - at));
  return true;
}

// The largest (or smallest) value dim `d` of binding `b` takes: its profile's, else its
// fixed size; -1 when neither says.
int64_t dim_bound(const Binding& b, size_t d, bool max) {
  if (b.profile) return max ? b.profile->max[d] : b.profile->min[d];
  try {
    size_t used = 0;
    int64_t v = std::stoll(b.dims[d], &used);
    if (used == b.dims[d].size()) return v;
  } catch (const std::exception&) {
  }
  return -1;
}

// A dim that must be one fixed size (kv heads, head dim, vocabulary).
int64_t fixed_dim(const Binding& b, size_t d, const char* what) {
  int64_t lo = dim_bound(b, d, false), hi = dim_bound(b, d, true);
  if (lo < 1 || lo != hi)
    throw Error("ONNX decoder: " + std::string(b.is_input ? "input" : "output") + " '" + b.name + "' has " + what +
                " dim '" + b.dims[d] + "'; it must be one fixed size");
  return lo;
}

std::string dims_text(const Binding& b) {
  std::string s = "[";
  for (size_t i = 0; i < b.dims.size(); ++i) s += (i ? ", " : "") + b.dims[i];
  return s + "]";
}

}  // namespace

bool has_past_inputs(const std::vector<std::string>& names) {
  int64_t layer = 0;
  std::string kind;
  for (const std::string& n : names)
    if (parse_layer_name(n, kPastPrefix, layer, kind)) return true;
  return false;
}

PastPresentLayout read_past_present_layout(const Engine& engine) {
  PastPresentLayout L;
  const Binding* ids = nullptr;
  std::map<int64_t, std::map<std::string, const Binding*>> past, present;
  int64_t layer = 0;
  std::string kind;
  for (const Binding& b : engine.inputs()) {
    if (b.name == "input_ids") {
      ids = &b;
    } else if (b.name == "attention_mask") {
      L.attention_mask = b.name;
      L.mask_dtype = b.dtype;
      if (b.dims.size() != 2) throw Error("ONNX decoder: input 'attention_mask' is " + dims_text(b) + ", not [batch, past + seq]");
      if (b.dtype != DType::I64 && b.dtype != DType::I32 && b.dtype != DType::Bool && b.dtype != DType::F32)
        throw Error(std::string("ONNX decoder: input 'attention_mask' is ") + dtype_name(b.dtype) +
                    "; the host loop fills int64, int32, bool or fp32 masks");
    } else if (b.name == "position_ids") {
      L.position_ids = b.name;
      if (b.dims.size() != 2 || b.dtype != DType::I64)
        throw Error("ONNX decoder: input 'position_ids' must be int64 [batch, seq], not " + std::string(dtype_name(b.dtype)) +
                    " " + dims_text(b));
    } else if (parse_layer_name(b.name, kPastPrefix, layer, kind)) {
      past[layer][kind] = &b;
    } else {
      throw Error("ONNX decoder: the engine has input '" + b.name + "', which the generation loop cannot fill (it fills "
                  "input_ids, attention_mask, position_ids and past_key_values.N.key/.value)");
    }
  }
  for (const Binding& b : engine.outputs())
    if (parse_layer_name(b.name, kPresentPrefix, layer, kind)) present[layer][kind] = &b;
  if (!ids || ids->dims.size() != 2 || ids->dtype != DType::I64)
    throw Error("ONNX decoder: the engine needs an int64 input 'input_ids' [batch, seq]");
  if (past.empty()) throw Error("ONNX decoder: the engine has no past_key_values.N.key/.value inputs");

  const Binding* logits = nullptr;
  for (const Binding& b : engine.outputs())
    if (b.name == "logits") logits = &b;
  if (!logits) throw Error("ONNX decoder: the engine has no output 'logits'");
  if (logits->dims.size() != 3)
    throw Error("ONNX decoder: output 'logits' is " + dims_text(*logits) + ", not [batch, seq, vocab]");
  if (logits->dtype != DType::F32 && logits->dtype != DType::F16 && logits->dtype != DType::BF16)
    throw Error(std::string("ONNX decoder: output 'logits' is ") + dtype_name(logits->dtype) + ", not fp32/fp16/bf16");
  L.logits_dtype = logits->dtype;
  L.vocab = fixed_dim(*logits, 2, "vocabulary");

  int64_t expect = 0, past_max = -1;
  for (auto& [n, kinds] : past) {
    if (n != expect)
      throw Error("ONNX decoder: past_key_values layers must be numbered 0, 1, ...; layer " + std::to_string(expect) +
                  " is missing");
    ++expect;
    PastPresentLayout::Layer lay;
    for (const char* k : {"key", "value"}) {
      std::string pname = kPastPrefix + std::to_string(n) + "." + k;
      std::string oname = kPresentPrefix + std::to_string(n) + "." + k;
      auto it = kinds.find(k);
      if (it == kinds.end()) throw Error("ONNX decoder: input '" + pname + "' is missing (its layer has only the other)");
      auto pit = present.find(n);
      if (pit == present.end() || !pit->second.count(k))
        throw Error("ONNX decoder: input '" + pname + "' has no matching output '" + oname + "'");
      const Binding& b = *it->second;
      const Binding& o = *pit->second.at(k);
      if (b.dims.size() != 4 || o.dims.size() != 4)
        throw Error("ONNX decoder: '" + pname + "' and '" + oname + "' must be [batch, kv_heads, length, head_dim]");
      if (b.dtype != o.dtype)
        throw Error("ONNX decoder: '" + pname + "' is " + dtype_name(b.dtype) + " but '" + oname + "' is " +
                    dtype_name(o.dtype));
      if (n == 0 && std::string(k) == "key") L.cache_dtype = b.dtype;
      if (b.dtype != L.cache_dtype)
        throw Error("ONNX decoder: '" + pname + "' is " + dtype_name(b.dtype) + ", the first layer's cache " +
                    dtype_name(L.cache_dtype));
      const int64_t h = fixed_dim(b, 1, "kv-heads"), d = fixed_dim(b, 3, "head");
      if (std::string(k) == "value" && (h != lay.kv_heads || d != lay.head_dim))
        throw Error("ONNX decoder: '" + pname + "' has " + std::to_string(h) + " heads of " + std::to_string(d) +
                    ", its key " + std::to_string(lay.kv_heads) + " of " + std::to_string(lay.head_dim));
      lay.kv_heads = h;
      lay.head_dim = d;
      if (dim_bound(b, 2, false) != 0)
        throw Error("ONNX decoder: input '" + pname + "' has length dim '" + b.dims[2] +
                    "' whose smallest value is not 0: the prompt's step starts from an empty cache (build with a "
                    "profile from 0)");
      const int64_t mx = dim_bound(b, 2, true);
      past_max = past_max < 0 ? mx : std::min(past_max, mx);
      (std::string(k) == "key" ? lay.past_key : lay.past_value) = pname;
      (std::string(k) == "key" ? lay.present_key : lay.present_value) = oname;
    }
    L.layers.push_back(lay);
  }
  L.max_batch = dim_bound(*ids, 0, true);
  L.max_chunk = dim_bound(*ids, 1, true);
  if (L.max_batch < 1 || L.max_chunk < 1)
    throw Error("ONNX decoder: input 'input_ids' " + dims_text(*ids) + " has no usable batch and sequence range");
  L.max_seq = past_max + 1;
  if (!L.attention_mask.empty())
    for (const Binding& b : engine.inputs())
      if (b.name == L.attention_mask) L.max_seq = std::min(L.max_seq, dim_bound(b, 1, true));
  if (L.max_seq < 1) throw Error("ONNX decoder: the past_key_values length range leaves no room for a token");
  if (!L.can_pad()) L.max_batch = 1;
  return L;
}

std::map<std::string, ShapeProfile> past_present_profiles(const Graph& g, int64_t max_batch, int64_t max_seq,
                                                          int64_t chunk) {
  std::map<std::string, ShapeProfile> out;
  const int64_t opt_past = std::max<int64_t>(0, max_seq / 2);
  for (const Value* v : g.inputs) {
    // Per dim: (min, opt, max) for a symbolic dim of this role.
    std::vector<std::array<int64_t, 3>> roles;
    int64_t layer = 0;
    std::string kind;
    const std::array<int64_t, 3> batch{1, max_batch, max_batch};
    if (v->name == "input_ids" || v->name == "position_ids") {
      roles = {batch, {1, 1, chunk}};
    } else if (v->name == "attention_mask") {
      roles = {batch, {1, opt_past + 1, max_seq}};
    } else if (parse_layer_name(v->name, kPastPrefix, layer, kind)) {
      roles = {batch, {0, 0, 0}, {0, opt_past, max_seq - 1}, {0, 0, 0}};
    } else {
      throw Error("ONNX decoder: input '" + v->name + "' is not one the generation loop fills (input_ids, "
                  "attention_mask, position_ids, past_key_values.N.key/.value)");
    }
    if (v->shape.size() != roles.size())
      throw Error("ONNX decoder: input '" + v->name + "' has shape " + shape_str(v->shape) + ", expected rank " +
                  std::to_string(roles.size()));
    ShapeProfile p;
    for (size_t d = 0; d < roles.size(); ++d) {
      const Dim& dim = v->shape[d];
      if (dim.known()) {
        p.min.push_back(dim.value);
        p.opt.push_back(dim.value);
        p.max.push_back(dim.value);
        continue;
      }
      if (roles[d][2] == 0)
        throw Error("ONNX decoder: input '" + v->name + "' has symbolic dim " + std::to_string(d) + " ('" + dim.str() +
                    "'); the kv heads and head dim must be fixed sizes");
      p.min.push_back(roles[d][0]);
      p.opt.push_back(roles[d][1]);
      p.max.push_back(roles[d][2]);
    }
    out[v->name] = p;
  }
  return out;
}

}  // namespace shardrt::serve
