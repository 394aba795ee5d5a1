// Schemas of the collective ops (shardrt.AllReduce, AllGather, ReduceScatter, their Start
// forms and Wait). Their output shapes depend on the size of the group and this rank's
// place in it, which the shape rules read from dist::current_group_shape (set by the
// executor from its communicator, or by a per-rank build); unset, the gathered or
// scattered dim is unknown.
#include <string>

#include "dist/collective_exec.h"
#include "dist/mesh.h"
#include "ir/op_schema.h"
#include "ir/ops/ops.h"

namespace shardrt {

namespace {

std::string check_common(const Node& n, bool has_reduce) {
  std::string g = n.attr_s("group", "tp");
  if (g != "tp" && g != "dp" && g != "world") return n.op + " group '" + g + "' is not a mesh group (tp|dp|world)";
  if (has_reduce) {
    std::string r = n.attr_s("reduce", "sum");
    if (r != "sum" && r != "max" && r != "min" && r != "prod")
      return n.op + " reduce '" + r + "' is not supported (sum|max|min|prod)";
  }
  return "";
}

void need_defined(const InferCtx& c) {
  if (c.in_types[0] == DType::Undefined) c.fail("X has no type");
}

dist::GroupShape group_of(const InferCtx& c) { return dist::current_group_shape(c.node.attr_s("group", "tp")); }

int64_t norm_axis(const InferCtx& c) {
  if (c.in_shapes[0].empty()) c.fail("X must have rank >= 1 for a collective along an axis");
  return c.axis(c.node.attr_i("axis", 0), c.rank(0));
}

void all_reduce(const std::string& name) {
  OpSchema s;
  s.name = name;
  s.min_inputs = s.max_inputs = 1;
  s.attrs = {"reduce", "group"};
  s.infer = [](InferCtx& c) {
    need_defined(c);
    c.set(0, c.in_types[0], c.in_shapes[0]);
  };
  s.validate = [](const Node& n) { return check_common(n, true); };
  register_schema(std::move(s));
}

// Output along `axis`: the sum of every rank's chunk. `gathered_size` (optional) is that
// sum when the chunks are torch.chunk's uneven split of it; without it every rank holds as
// many as this one.
void all_gather(const std::string& name) {
  OpSchema s;
  s.name = name;
  s.min_inputs = s.max_inputs = 1;
  s.attrs = {"axis", "group", "gathered_size"};
  s.infer = [](InferCtx& c) {
    need_defined(c);
    int64_t a = norm_axis(c);
    Shape y = c.in_shapes[0];
    const Dim& local = y[size_t(a)];
    dist::GroupShape g = group_of(c);
    if (c.node.has_attr("gathered_size")) {
      int64_t total = c.node.attr_i("gathered_size");
      if (total < 0) c.fail("gathered_size must be >= 0");
      if (g.size > 0 && local.known()) {
        int64_t mine = dist::chunk_sizes(total, g.size)[size_t(g.index)];
        if (mine != local.value)
          c.fail("X has " + local.str() + " along axis " + std::to_string(a) + ", but torch.chunk of gathered_size " +
                 std::to_string(total) + " into " + std::to_string(g.size) + " gives rank " + std::to_string(g.index) +
                 " of the group " + std::to_string(mine));
      }
      y[size_t(a)] = Dim(total);
    } else if (g.size > 0) {
      y[size_t(a)] = local.known() ? Dim(local.value * g.size) : dim_unknown();
    } else {
      y[size_t(a)] = dim_unknown();
    }
    c.set(0, c.in_types[0], y);
  };
  s.validate = [](const Node& n) { return check_common(n, false); };
  register_schema(std::move(s));
}

// Output along `axis`: this rank's torch.chunk chunk of X's dim.
void reduce_scatter(const std::string& name) {
  OpSchema s;
  s.name = name;
  s.min_inputs = s.max_inputs = 1;
  s.attrs = {"axis", "reduce", "group"};
  s.infer = [](InferCtx& c) {
    need_defined(c);
    int64_t a = norm_axis(c);
    Shape y = c.in_shapes[0];
    dist::GroupShape g = group_of(c);
    const Dim& full = y[size_t(a)];
    y[size_t(a)] = g.size > 0 && full.known() ? Dim(dist::chunk_sizes(full.value, g.size)[size_t(g.index)])
                                               : dim_unknown();
    c.set(0, c.in_types[0], y);
  };
  s.validate = [](const Node& n) { return check_common(n, true); };
  register_schema(std::move(s));
}

void wait() {
  OpSchema s;
  s.name = "shardrt.Wait";
  s.min_inputs = s.max_inputs = 1;
  s.infer = [](InferCtx& c) {
    need_defined(c);
    c.set(0, c.in_types[0], c.in_shapes[0]);
  };
  register_schema(std::move(s));
}

}  // namespace

void register_collective_schemas() {
  all_reduce("shardrt.AllReduce");
  all_reduce("shardrt.AllReduceStart");
  all_gather("shardrt.AllGather");
  all_gather("shardrt.AllGatherStart");
  reduce_scatter("shardrt.ReduceScatter");
  reduce_scatter("shardrt.ReduceScatterStart");
  wait();
}

}  // namespace shardrt
