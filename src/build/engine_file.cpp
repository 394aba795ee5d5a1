#include "build/engine_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ir/checked_size.h"
#include "runtime/host_memory.h"
#include "util/hash.h"

namespace shardrt {

using json = nlohmann::json;

namespace {

constexpr char kMagic[8] = {'S', 'H', 'R', 'D', 'R', 'T', 'E', 'N'};
constexpr size_t kFixedHeader = 64;
constexpr size_t kWeightAlign = 64;
constexpr size_t kPage = 4096;

std::string to_hex(const void* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s(n * 2, '0');
  auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) { s[2 * i] = d[b[i] >> 4]; s[2 * i + 1] = d[b[i] & 15]; }
  return s;
}
void from_hex(const std::string& s, void* p, size_t n, const std::string& what) {
  if (s.size() != 2 * n) throw Error(what + ": attribute tensor has the wrong size");
  auto v = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    throw Error(what + ": bad hex in attribute tensor");
  };
  auto* b = static_cast<unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) b[i] = uint8_t(v(s[2 * i]) << 4 | v(s[2 * i + 1]));
}
uint32_t fbits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
float bitsf(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

// Numbers read from the header: JSON numbers may be floats of any size, and converting
// one out of range to an integer type is undefined behaviour, so each is checked first.
int64_t int_of(const json& j) {
  if (!j.is_number_integer()) throw Error(std::string("expected an integer, got a JSON ") + j.type_name());
  return j.get<int64_t>();
}
uint64_t size_of(const json& j) {
  if (!j.is_number_unsigned()) throw Error(std::string("expected a non-negative integer, got a JSON ") + j.type_name());
  return j.get<uint64_t>();
}
uint32_t u32_of(const json& j) {
  uint64_t v = size_of(j);
  if (v > 0xffffffffu) throw Error("expected a 32-bit value, got " + std::to_string(v));
  return uint32_t(v);
}
std::vector<int64_t> ints_of(const json& a) {
  if (!a.is_array()) throw Error(std::string("expected a list of integers, got a JSON ") + a.type_name());
  std::vector<int64_t> v;
  for (auto& x : a) v.push_back(int_of(x));
  return v;
}

json shape_json(const Shape& s) {
  json a = json::array();
  for (auto& d : s) a.push_back(d.known() ? json(d.value) : json(d.sym.empty() ? "?" : d.sym));
  return a;
}
Shape shape_from(const json& a) {
  if (!a.is_array()) throw Error("a shape is not a list");
  Shape s;
  for (auto& d : a) {
    if (d.is_number()) {
      int64_t v = int_of(d);
      if (v < 0) throw Error("negative dimension " + std::to_string(v) + " in a shape");
      s.push_back(Dim(v));
    } else {
      s.push_back(Dim::symbol(d.get<std::string>()));
    }
  }
  return s;
}

json attr_json(const Attr& a) {
  switch (a.kind) {
    case Attr::Int: return {{"i", a.i}};
    case Attr::Float: return {{"fb", fbits(a.f)}};
    case Attr::String: return {{"s", a.s}};
    case Attr::Ints: return {{"ints", a.ints}};
    case Attr::Floats: {
      json v = json::array();
      for (float f : a.floats) v.push_back(fbits(f));
      return {{"floatsb", v}};
    }
    case Attr::Strings: return {{"strings", a.strings}};
    case Attr::TensorV:
      return {{"t", {{"dtype", dtype_name(a.t->dtype())}, {"dims", a.t->dims()}, {"hex", to_hex(a.t->raw(), a.t->nbytes())}}}};
  }
  return {};
}
Attr attr_from(const json& j, const std::string& what) {
  if (j.contains("i")) return Attr::of(int_of(j["i"]));
  if (j.contains("fb")) return Attr::of(bitsf(u32_of(j["fb"])));
  if (j.contains("s")) return Attr::of(j["s"].get<std::string>());
  if (j.contains("ints")) return Attr::of(ints_of(j["ints"]));
  if (j.contains("floatsb")) {
    std::vector<float> v;
    for (auto& b : j["floatsb"]) v.push_back(bitsf(u32_of(b)));
    return Attr::of(v);
  }
  if (j.contains("strings")) return Attr::of_strings(j["strings"].get<std::vector<std::string>>());
  if (j.contains("t")) {
    auto& t = j.at("t");
    DType dt = dtype_from_name(t.at("dtype").get<std::string>());
    Dims dims = ints_of(t.at("dims"));
    const std::string& hex = t.at("hex").get_ref<const std::string&>();
    // The hex text bounds the size: checked before allocating what the dims ask for.
    if (checked_nbytes(dt, dims, what + ": attribute tensor") * 2 != hex.size())
      throw Error(what + ": attribute tensor has the wrong size");
    Tensor x(dt, std::move(dims));
    from_hex(hex, x.raw(), x.nbytes(), what);
    return Attr::of(std::move(x));
  }
  throw Error(what + ": unknown attribute encoding");
}

json profile_json(const ShapeProfile& p) { return {{"min", p.min}, {"opt", p.opt}, {"max", p.max}}; }

json binding_json(const Binding& b) {
  json j = {{"name", b.name}, {"dtype", dtype_name(b.dtype)}, {"dims", b.dims}};
  if (b.profile) j["profile"] = profile_json(*b.profile);
  return j;
}
Binding binding_from(const json& j, bool is_input) {
  Binding b;
  b.name = j.at("name").get<std::string>();
  b.dtype = dtype_from_name(j.at("dtype").get<std::string>());
  b.dims = j.at("dims").get<std::vector<std::string>>();
  b.is_input = is_input;
  if (j.contains("profile")) {
    auto& p = j["profile"];
    b.profile = ShapeProfile{ints_of(p.at("min")), ints_of(p.at("opt")), ints_of(p.at("max"))};
  }
  return b;
}

size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

void put64(unsigned char* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint64_t get64(const unsigned char* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }

}  // namespace

void save_engine_file(const Engine::Impl& e, const std::string& path) {
  const Graph& g = *e.graph;
  json values = json::array();
  std::vector<const Tensor*> blobs;
  size_t woff = 0;
  for (auto& v : g.values) {
    json jv = {{"name", v->name}, {"dtype", dtype_name(v->dtype)}, {"shape", shape_json(v->shape)}};
    if (v->constant) {
      woff = align_up(woff, kWeightAlign);
      jv["const"] = {{"offset", woff}, {"bytes", v->constant->nbytes()}, {"dims", v->constant->dims()},
                     {"dtype", dtype_name(v->constant->dtype())}};
      blobs.push_back(v->constant.get());
      woff += v->constant->nbytes();
    }
    values.push_back(jv);
  }
  json nodes = json::array();
  for (auto& n : g.nodes) {
    json ins = json::array(), outs = json::array(), attrs = json::object();
    for (Value* v : n->inputs) ins.push_back(v ? json(v->name) : json(nullptr));
    for (Value* v : n->outputs) outs.push_back(v ? json(v->name) : json(nullptr));
    for (auto& [k, a] : n->attrs) attrs[k] = attr_json(a);
    json jn = {{"op", n->op}, {"name", n->name}, {"in", ins}, {"out", outs}, {"attrs", attrs}};
    if (n->opset) jn["opset"] = n->opset;
    if (!n->fused_from.empty()) jn["fused_from"] = n->fused_from;
    nodes.push_back(jn);
  }
  json gin = json::array(), gout = json::array();
  for (Value* v : g.inputs) gin.push_back(v->name);
  for (Value* v : g.outputs) gout.push_back(v->name);
  json slots = json::object();
  for (auto& [k, s] : e.memory.slots) slots[k] = {s.offset, s.bytes};
  json bi = json::array(), bo = json::array();
  for (auto& b : e.inputs) bi.push_back(binding_json(b));
  for (auto& b : e.outputs) bo.push_back(binding_json(b));
  json hdr = {
      {"format_version", kEngineFormatVersion},
      {"producer", "shardrt 0.1.0"},
      {"build", e.build_settings},
      {"bindings", {{"inputs", bi}, {"outputs", bo}}},
      {"graph", {{"name", g.name}, {"values", values}, {"nodes", nodes}, {"inputs", gin}, {"outputs", gout}}},
      {"memory", {{"arena_bytes", e.memory.arena_bytes}, {"slots", slots}, {"aliases", e.memory.aliases},
                  {"unplanned_bytes", e.memory.unplanned_bytes_sum}}},
  };
  std::string hj = hdr.dump();
  size_t weights_offset = align_up(kFixedHeader + hj.size(), kPage);
  // Assemble the weights blob once to checksum and write it.
  std::string weights(woff, '\0');
  {
    size_t o = 0;
    for (const Tensor* t : blobs) {
      o = align_up(o, kWeightAlign);
      if (t->nbytes()) std::memcpy(weights.data() + o, t->raw(), t->nbytes());
      o += t->nbytes();
    }
  }
  uint64_t sum = hash64(weights.data(), weights.size(), hash64(hj.data(), hj.size()));
  unsigned char fixed[kFixedHeader] = {};
  std::memcpy(fixed, kMagic, 8);
  uint32_t ver = kEngineFormatVersion, flags = 0;
  std::memcpy(fixed + 8, &ver, 4);
  std::memcpy(fixed + 12, &flags, 4);
  put64(fixed + 16, hj.size());
  put64(fixed + 24, weights_offset);
  put64(fixed + 32, weights.size());
  put64(fixed + 40, sum);
  std::string tmp = path + ".partial";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw Error("cannot write engine file '" + path + "'");
    f.write(reinterpret_cast<const char*>(fixed), kFixedHeader);
    f.write(hj.data(), std::streamsize(hj.size()));
    std::string pad(weights_offset - kFixedHeader - hj.size(), '\0');
    f.write(pad.data(), std::streamsize(pad.size()));
    f.write(weights.data(), std::streamsize(weights.size()));
    if (!f.flush()) throw Error("error writing engine file '" + path + "' (disk full?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error("cannot move engine file into '" + path + "'");
}

std::unique_ptr<Engine::Impl> load_engine_file(const std::string& path, bool verify_checksum) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw Error("cannot open engine file '" + path + "': " + std::strerror(errno));
  struct stat st {};
  ::fstat(fd, &st);
  size_t size = size_t(st.st_size);
  if (size < kFixedHeader) {
    ::close(fd);
    throw Error("engine file '" + path + "' is not usable: truncated (" + std::to_string(size) +
                " bytes, the fixed header alone is 64)");
  }
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int map_errno = errno;
  ::close(fd);
  if (m == MAP_FAILED) {
    if (map_errno == ENOMEM)
      throw Error("cannot map engine file '" + path + "': " +
                  host_oom_message("the mapping of its weights", size));
    throw Error("cannot map engine file '" + path + "': " + std::strerror(map_errno));
  }
  std::shared_ptr<void> mapping(m, [size](void* p) { ::munmap(p, size); });
  return load_engine_bytes(mapping, size, path, verify_checksum);
}

std::unique_ptr<Engine::Impl> load_engine_bytes(std::shared_ptr<void> mapping, size_t size, const std::string& path,
                                                bool verify_checksum) {
  auto bad = [&](const std::string& why) -> Error { return Error("engine file '" + path + "' is not usable: " + why); };
  if (size < kFixedHeader) throw bad("truncated (" + std::to_string(size) + " bytes, the fixed header alone is 64)");
  auto* b = static_cast<const unsigned char*>(mapping.get());
  if (std::memcmp(b, kMagic, 8) != 0) throw bad("magic check failed (not a shardrt engine)");
  uint32_t ver;
  std::memcpy(&ver, b + 8, 4);
  if (ver != kEngineFormatVersion)
    throw bad("format version check failed: file has version " + std::to_string(ver) + ", this shardrt reads version " + std::to_string(kEngineFormatVersion));
  uint64_t hlen = get64(b + 16), woffset = get64(b + 24), wsize = get64(b + 32), sum = get64(b + 40);
  if (hlen > size - kFixedHeader || woffset < kFixedHeader + hlen || woffset > size || wsize > size - woffset)
    throw bad("size check failed: header or weights extend past the end of the file (truncated?)");
  if (verify_checksum) {
    uint64_t h = hash64(b + woffset, wsize, hash64(b + kFixedHeader, hlen));
    if (h != sum) throw bad("checksum check failed (the file is corrupted)");
  }
  json hdr;
  try {
    hdr = json::parse(b + kFixedHeader, b + kFixedHeader + hlen);
  } catch (const std::exception& ex) {
    throw bad(std::string("header check failed: ") + ex.what());
  }
  auto e = std::make_unique<Engine::Impl>();
  e->mapping = mapping;
  e->weight_bytes = wsize;
  try {
    for (auto& [k, v] : hdr.at("build").items()) e->build_settings[k] = v.get<std::string>();
    for (auto& j : hdr.at("bindings").at("inputs")) e->inputs.push_back(binding_from(j, true));
    for (auto& j : hdr.at("bindings").at("outputs")) e->outputs.push_back(binding_from(j, false));
    auto& jg = hdr.at("graph");
    e->graph = std::make_unique<Graph>();
    Graph& g = *e->graph;
    g.name = jg.at("name").get<std::string>();
    std::map<std::string, const json*> vinfo;
    for (auto& jv : jg.at("values")) vinfo[jv.at("name").get<std::string>()] = &jv;
    auto info = [&](const std::string& n) -> const json& {
      auto it = vinfo.find(n);
      if (it == vinfo.end()) throw bad("graph check failed: value '" + n + "' is not declared");
      return *it->second;
    };
    for (auto& jv : jg.at("values")) {
      if (!jv.contains("const")) continue;
      auto& c = jv["const"];
      size_t off = size_of(c.at("offset")), nb = size_of(c.at("bytes"));
      DType t = dtype_from_name(c.at("dtype").get<std::string>());
      Dims dims = ints_of(c.at("dims"));
      if (off > wsize || nb > wsize - off || off % kWeightAlign)
        throw bad("bounds check failed: weight '" + jv["name"].get<std::string>() + "' lies outside the weights section");
      if (checked_nbytes(t, dims, "weight '" + jv["name"].get<std::string>() + "'") != nb)
        throw bad("bounds check failed: weight '" + jv["name"].get<std::string>() + "' size does not match its dims");
      void* p = const_cast<unsigned char*>(b + woffset + off);
      Value* v = g.add_value(jv["name"].get<std::string>(), t, dims_shape(dims));
      v->constant = std::make_shared<Tensor>(t, dims, p, mapping);
    }
    for (auto& n : jg.at("inputs")) {
      auto& jv = info(n.get<std::string>());
      g.add_input(n.get<std::string>(), dtype_from_name(jv.at("dtype").get<std::string>()), shape_from(jv.at("shape")));
    }
    for (auto& jn : jg.at("nodes")) {
      std::vector<Value*> ins;
      for (auto& x : jn.at("in")) {
        if (x.is_null()) { ins.push_back(nullptr); continue; }
        Value* v = g.find_value(x.get<std::string>());
        if (!v) throw bad("graph check failed: node '" + jn.at("name").get<std::string>() + "' uses undefined value '" + x.get<std::string>() + "'");
        ins.push_back(v);
      }
      std::vector<std::string> outs;
      for (auto& x : jn.at("out")) outs.push_back(x.is_null() ? "" : x.get<std::string>());
      std::map<std::string, Attr> attrs;
      std::string nname = jn.at("name").get<std::string>();
      for (auto& [k, a] : jn.at("attrs").items()) attrs[k] = attr_from(a, "engine file '" + path + "' node '" + nname + "'");
      Node* node = g.add_node(jn.at("op").get<std::string>(), nname, ins, outs, attrs);
      node->opset = jn.contains("opset") ? int(int_of(jn["opset"])) : 0;
      node->fused_from = jn.value("fused_from", std::string());
      for (Value* o : node->outputs) {
        if (!o) continue;
        auto& jv = info(o->name);
        if (o->name != jv.at("name").get<std::string>()) throw bad("graph check failed: duplicate value '" + o->name + "'");
        o->dtype = dtype_from_name(jv.at("dtype").get<std::string>());
        o->shape = shape_from(jv.at("shape"));
        o->shape_inferred = true;
      }
    }
    for (auto& n : jg.at("outputs")) {
      Value* v = g.find_value(n.get<std::string>());
      if (!v) throw bad("graph check failed: output '" + n.get<std::string>() + "' is not produced");
      g.outputs.push_back(v);
    }
    auto& jm = hdr.at("memory");
    e->memory.arena_bytes = size_of(jm.at("arena_bytes"));
    e->memory.unplanned_bytes_sum = jm.contains("unplanned_bytes") ? size_of(jm["unplanned_bytes"]) : 0;
    for (auto& [k, s] : jm.at("slots").items()) {
      MemorySlot slot{size_of(s.at(0)), size_of(s.at(1))};
      if (slot.offset > e->memory.arena_bytes || slot.bytes > e->memory.arena_bytes - slot.offset)
        throw bad("bounds check failed: memory slot of '" + k + "' lies outside the arena");
      e->memory.slots[k] = slot;
    }
    e->memory.aliases = jm.value("aliases", std::map<std::string, std::string>());
    g.verify();
  } catch (const Error& ex) {
    if (std::string(ex.what()).rfind("engine file ", 0) == 0) throw;
    throw bad(std::string("header check failed: ") + ex.what());
  } catch (const std::exception& ex) {
    throw bad(std::string("header check failed: ") + ex.what());
  }
  return e;
}

}  // namespace shardrt
