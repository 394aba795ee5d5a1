#include "api/cli_util.h"

#include <sstream>

namespace shardrt {

namespace {
Dims parse_dims(const std::string& s, const std::string& spec) {
  Dims d;
  if (s.empty()) return d;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, 'x')) {
    try {
      size_t used = 0;
      long long v = std::stoll(tok, &used);
      if (used != tok.size() || v < 0) throw std::invalid_argument(tok);
      d.push_back(v);
    } catch (const std::logic_error&) {
      throw Error("--shapes: bad dimension '" + tok + "' in '" + spec + "' (write dims like 4x128)");
    }
  }
  return d;
}
}  // namespace

std::map<std::string, ShapeProfile> parse_shapes(const std::string& spec) {
  std::map<std::string, ShapeProfile> r;
  if (spec.empty()) return r;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    auto c = item.rfind(':');
    if (c == std::string::npos || c == 0) throw Error("--shapes: expected NAME:MIN/OPT/MAX, got '" + item + "'");
    std::string name = item.substr(0, c), rest = item.substr(c + 1);
    std::vector<std::string> parts;
    std::stringstream ps(rest);
    std::string p;
    while (std::getline(ps, p, '/')) parts.push_back(p);
    if (rest.empty()) parts = {""};
    if (parts.size() != 1 && parts.size() != 3)
      throw Error("--shapes: '" + item + "' needs one shape or MIN/OPT/MAX");
    ShapeProfile prof;
    prof.min = parse_dims(parts[0], item);
    prof.opt = parse_dims(parts.size() == 3 ? parts[1] : parts[0], item);
    prof.max = parse_dims(parts.size() == 3 ? parts[2] : parts[0], item);
    if (prof.min.size() != prof.opt.size() || prof.opt.size() != prof.max.size())
      throw Error("--shapes: MIN/OPT/MAX of '" + name + "' have different ranks");
    if (r.count(name)) throw Error("--shapes: '" + name + "' is given twice");
    r[name] = prof;
  }
  return r;
}

std::string escape_file_name(const std::string& name) {
  if (name.empty()) return "%";
  static const char* hex = "0123456789ABCDEF";
  std::string o;
  for (size_t i = 0; i < name.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(name[i]);
    bool safe = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
                (c == '.' && i > 0);
    if (safe) o += char(c);
    else { o += '%'; o += hex[c >> 4]; o += hex[c & 15]; }
  }
  return o;
}

}  // namespace shardrt
