#include "ir/graph.h"

#include <algorithm>
#include <set>
#include <sstream>

#include "ir/op_schema.h"

namespace shardrt {

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? "," : "") + s[i].str();
  return r + "]";
}
bool shape_known(const Shape& s) {
  return std::all_of(s.begin(), s.end(), [](const Dim& d) { return d.known(); });
}
Dims shape_dims(const Shape& s) {
  Dims d;
  for (auto& x : s) {
    if (!x.known()) throw std::logic_error("shape " + shape_str(s) + " is not concrete");
    d.push_back(x.value);
  }
  return d;
}
Shape dims_shape(const Dims& d) { return Shape(d.begin(), d.end()); }

std::string Attr::str() const {
  std::ostringstream o;
  auto list = [&](const auto& v) {
    o << "[";
    for (size_t k = 0; k < v.size(); ++k) o << (k ? "," : "") << v[k];
    o << "]";
  };
  switch (kind) {
    case Int: o << i; break;
    case Float: o << f; break;
    case String: o << '"' << s << '"'; break;
    case Ints: list(ints); break;
    case Floats: list(floats); break;
    case Strings: list(strings); break;
    case TensorV: o << "tensor<" << dtype_name(t->dtype()) << dims_str(t->dims()) << ">"; break;
  }
  return o.str();
}

int64_t Node::attr_i(const std::string& k, int64_t dflt) const {
  auto it = attrs.find(k);
  return it == attrs.end() ? dflt : it->second.i;
}
int64_t Node::attr_i(const std::string& k) const {
  auto it = attrs.find(k);
  if (it == attrs.end()) throw GraphError(describe() + ": required attribute '" + k + "' is missing");
  return it->second.i;
}
float Node::attr_f(const std::string& k, float dflt) const {
  auto it = attrs.find(k);
  return it == attrs.end() ? dflt : it->second.f;
}
std::string Node::attr_s(const std::string& k, const std::string& dflt) const {
  auto it = attrs.find(k);
  return it == attrs.end() ? dflt : it->second.s;
}
std::vector<int64_t> Node::attr_ints(const std::string& k, std::vector<int64_t> dflt) const {
  auto it = attrs.find(k);
  return it == attrs.end() ? dflt : it->second.ints;
}
std::vector<float> Node::attr_floats(const std::string& k, std::vector<float> dflt) const {
  auto it = attrs.find(k);
  return it == attrs.end() ? dflt : it->second.floats;
}
const Tensor* Node::attr_t(const std::string& k) const {
  auto it = attrs.find(k);
  return it == attrs.end() ? nullptr : it->second.t.get();
}
std::string Node::describe() const {
  std::string s = "node '" + name + "' (" + op;
  if (opset) s += ", opset " + std::to_string(opset);
  return s + ")";
}

std::string Graph::unique_name(const std::string& base) {
  std::string b = base.empty() ? "v" : base;
  if (!by_name_.count(b)) return b;
  for (;;) {
    std::string n = b + "_" + std::to_string(++counter_);
    if (!by_name_.count(n)) return n;
  }
}

Value* Graph::add_value(const std::string& name, DType t, Shape s) {
  auto v = std::make_unique<Value>();
  v->name = unique_name(name);
  v->dtype = t;
  v->shape = std::move(s);
  v->shape_inferred = t != DType::Undefined;
  Value* p = v.get();
  by_name_[p->name] = p;
  values.push_back(std::move(v));
  return p;
}

Value* Graph::add_input(const std::string& name, DType t, Shape s) {
  Value* v = add_value(name, t, std::move(s));
  inputs.push_back(v);
  return v;
}

Value* Graph::add_constant(const std::string& name, Tensor t) {
  Value* v = add_value(name, t.dtype(), dims_shape(t.dims()));
  v->constant = std::make_shared<Tensor>(std::move(t));
  return v;
}

Node* Graph::add_node(const std::string& op, const std::string& name, std::vector<Value*> ins,
                      const std::vector<std::string>& out_names, std::map<std::string, Attr> attrs) {
  auto n = std::make_unique<Node>();
  n->op = op;
  std::string base = name.empty() ? op : name;
  std::string nm = base;
  if (node_names_.count(nm)) {
    int& c = node_names_[base];
    do nm = base + "_" + std::to_string(c++); while (node_names_.count(nm));
  }
  node_names_.emplace(nm, 1);
  n->name = nm;
  n->inputs = std::move(ins);
  n->attrs = std::move(attrs);
  for (Value* v : n->inputs)
    if (v) v->users.push_back(n.get());
  for (auto& on : out_names) {
    if (on.empty()) { n->outputs.push_back(nullptr); continue; }
    Value* v = add_value(on);
    v->producer = n.get();
    n->outputs.push_back(v);
  }
  Node* p = n.get();
  nodes.push_back(std::move(n));
  return p;
}

Value* Graph::find_value(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

bool Graph::rename(Value* v, const std::string& name) {
  if (v->name == name) return true;
  if (by_name_.count(name)) return false;
  by_name_.erase(v->name);
  v->name = name;
  by_name_[name] = v;
  return true;
}

static void erase_one(std::vector<Node*>& v, Node* n) {
  auto it = std::find(v.begin(), v.end(), n);
  if (it != v.end()) v.erase(it);
}

void Graph::set_input(Node* n, size_t i, Value* v) {
  if (n->inputs.size() <= i) n->inputs.resize(i + 1, nullptr);
  if (n->inputs[i]) erase_one(n->inputs[i]->users, n);
  n->inputs[i] = v;
  if (v) v->users.push_back(n);
}

void Graph::replace_all_uses(Value* from, Value* to) {
  if (from == to) return;
  auto users = from->users;
  for (Node* n : users)
    for (size_t i = 0; i < n->inputs.size(); ++i)
      if (n->inputs[i] == from) set_input(n, i, to);
  for (auto& o : outputs)
    if (o == from) {
      // Keep the graph output's public name: rename so `to` carries it.
      std::string nm = from->name;
      by_name_.erase(nm);
      from->name = unique_name(nm + "_replaced");
      by_name_[from->name] = from;
      if (to->producer == nullptr && (to->is_constant() ||
          std::find(inputs.begin(), inputs.end(), to) != inputs.end() || is_output(to))) {
        // An input, constant or another output cannot be renamed: insert an Identity.
        Node* id = add_node("Identity", nm + "/identity", {to}, {nm});
        id->outputs[0]->dtype = to->dtype;
        id->outputs[0]->shape = to->shape;
        id->outputs[0]->shape_inferred = to->shape_inferred;
        o = id->outputs[0];
      } else {
        by_name_.erase(to->name);
        to->name = nm;
        by_name_[nm] = to;
        o = to;
      }
    }
}

void Graph::remove_node(Node* n) {
  for (size_t i = 0; i < n->inputs.size(); ++i)
    if (n->inputs[i]) erase_one(n->inputs[i]->users, n);
  n->inputs.clear();
  for (Value* o : n->outputs)
    if (o && o->producer == n) o->producer = nullptr;
  n->dead = true;
}

bool Graph::is_output(const Value* v) const {
  return std::find(outputs.begin(), outputs.end(), v) != outputs.end();
}

void Graph::compact() {
  std::set<Value*> live;
  for (auto& n : nodes) {
    if (n->dead) continue;
    for (Value* v : n->inputs) if (v) live.insert(v);
    for (Value* v : n->outputs) if (v) live.insert(v);
  }
  for (Value* v : inputs) live.insert(v);
  for (Value* v : outputs) live.insert(v);
  nodes.erase(std::remove_if(nodes.begin(), nodes.end(), [](auto& n) { return n->dead; }), nodes.end());
  std::vector<std::unique_ptr<Value>> kept;
  for (auto& v : values) {
    if (live.count(v.get())) kept.push_back(std::move(v));
    else by_name_.erase(v->name);
  }
  values = std::move(kept);
}

void Graph::sort() {
  std::map<Node*, size_t> pending;
  std::vector<Node*> ready, order;
  for (auto& n : nodes) {
    if (n->dead) continue;
    size_t k = 0;
    for (Value* v : n->inputs) if (v && v->producer && !v->producer->dead) ++k;
    pending[n.get()] = k;
  }
  // Stable: keep the original order among ready nodes.
  std::map<Node*, size_t> pos;
  for (size_t i = 0; i < nodes.size(); ++i) pos[nodes[i].get()] = i;
  auto cmp = [&](Node* a, Node* b) { return pos[a] > pos[b]; };
  for (auto& [n, k] : pending) if (!k) ready.push_back(n);
  std::make_heap(ready.begin(), ready.end(), cmp);
  while (!ready.empty()) {
    std::pop_heap(ready.begin(), ready.end(), cmp);
    Node* n = ready.back();
    ready.pop_back();
    order.push_back(n);
    for (Value* o : n->outputs) {
      if (!o) continue;
      for (Node* u : o->users) {
        if (u->dead) continue;
        if (--pending[u] == 0) { ready.push_back(u); std::push_heap(ready.begin(), ready.end(), cmp); }
      }
    }
  }
  if (order.size() != pending.size()) {
    std::string names;
    for (auto& [n, k] : pending) if (k) names += " '" + n->name + "'";
    throw GraphError("graph has a cycle through nodes" + names);
  }
  std::map<Node*, std::unique_ptr<Node>> own;
  for (auto& n : nodes) own[n.get()] = std::move(n);
  nodes.clear();
  for (Node* n : order) nodes.push_back(std::move(own[n]));
  for (auto& [p, n] : own) if (n) nodes.push_back(std::move(n));  // dead ones at the end
}

std::string Graph::print() const {
  std::ostringstream o;
  auto vstr = [](const Value* v) {
    if (!v) return std::string("<none>");
    return "%" + v->name + ":" + dtype_name(v->dtype) + shape_str(v->shape);
  };
  o << "graph " << name << " (";
  for (size_t i = 0; i < inputs.size(); ++i) o << (i ? ", " : "") << vstr(inputs[i]);
  o << ")\n";
  size_t nconst = 0;
  for (auto& v : values) if (v->is_constant()) ++nconst;
  o << "  " << nconst << " constants\n";
  for (auto& n : nodes) {
    if (n->dead) continue;
    o << "  ";
    for (size_t i = 0; i < n->outputs.size(); ++i) o << (i ? ", " : "") << vstr(n->outputs[i]);
    o << " = " << n->op << "(";
    for (size_t i = 0; i < n->inputs.size(); ++i) {
      const Value* v = n->inputs[i];
      o << (i ? ", " : "") << (v ? (v->is_constant() ? "$" : "%") + v->name : "<none>");
    }
    o << ")";
    if (!n->attrs.empty()) {
      o << " {";
      bool first = true;
      for (auto& [k, a] : n->attrs) { o << (first ? "" : ", ") << k << "=" << a.str(); first = false; }
      o << "}";
    }
    o << "  # " << n->name;
    if (!n->fused_from.empty()) o << " [fused: " << n->fused_from << "]";
    o << "\n";
  }
  o << "  return ";
  for (size_t i = 0; i < outputs.size(); ++i) o << (i ? ", " : "") << vstr(outputs[i]);
  o << "\n";
  return o.str();
}

void Graph::verify() const {
  std::vector<std::string> errs;
  std::set<const Value*> defined;
  for (Value* v : inputs) defined.insert(v);
  for (auto& v : values) if (v->is_constant()) defined.insert(v.get());
  std::set<std::string> names;
  for (auto& n : nodes) {
    if (n->dead) { errs.push_back(n->describe() + ": dead node not compacted"); continue; }
    if (!names.insert(n->name).second) errs.push_back(n->describe() + ": duplicate node name");
    const OpSchema* s = find_schema(n->op);
    if (!s) {
      errs.push_back(n->describe() + ": no schema for op");
    } else {
      int ni = int(n->inputs.size());
      if (ni < s->min_inputs || ni > s->max_inputs)
        errs.push_back(n->describe() + ": " + std::to_string(ni) + " inputs, expected " +
                       std::to_string(s->min_inputs) + ".." + std::to_string(s->max_inputs));
    }
    for (size_t i = 0; i < n->inputs.size(); ++i) {
      Value* v = n->inputs[i];
      if (!v) continue;
      if (!defined.count(v))
        errs.push_back(n->describe() + ": input " + std::to_string(i) + " '" + v->name +
                       "' is used before it is defined");
      if (std::count(v->users.begin(), v->users.end(), n.get()) == 0)
        errs.push_back(n->describe() + ": missing from users of '" + v->name + "'");
    }
    for (Value* o : n->outputs) {
      if (!o) continue;
      if (o->producer != n.get()) errs.push_back(n->describe() + ": output '" + o->name + "' has another producer");
      if (!defined.insert(o).second) errs.push_back("value '" + o->name + "' is defined twice");
    }
  }
  for (Value* o : outputs)
    if (!defined.count(o)) errs.push_back("graph output '" + o->name + "' is never produced");
  if (!errs.empty()) {
    std::string m = "graph '" + name + "' failed verification:";
    for (auto& e : errs) m += "\n  " + e;
    throw GraphError(m);
  }
}

}  // namespace shardrt
