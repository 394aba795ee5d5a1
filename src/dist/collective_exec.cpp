// Collective ops of the IR on host tensors. A collective along an axis other than the
// outermost moves blocks that are not contiguous: AllGather gathers rank-major into a
// staging buffer and interleaves it into the output; ReduceScatter packs its input
// rank-major first. Along axis 0 (or when every outer dim is 1) the output is gathered
// into, or the input reduced from, directly.
#include "dist/collective_exec.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>

#include "dist/mesh.h"

namespace shardrt::dist {

bool is_collective_op(const std::string& op) {
  static const std::set<std::string> ops = {"shardrt.AllReduce",      "shardrt.AllGather",      "shardrt.ReduceScatter",
                                            "shardrt.AllReduceStart", "shardrt.AllGatherStart", "shardrt.ReduceScatterStart",
                                            "shardrt.Wait"};
  return ops.count(op) != 0;
}

std::vector<int64_t> chunk_sizes(int64_t total, int parts) {
  std::vector<int64_t> s(size_t(parts), 0);
  if (parts <= 0 || total <= 0) return s;
  int64_t cs = (total + parts - 1) / parts;
  for (int r = 0; r < parts; ++r) s[size_t(r)] = std::max<int64_t>(0, std::min(cs, total - int64_t(r) * cs));
  return s;
}

namespace {

[[noreturn]] void node_fail(const Node& n, const std::string& msg) { throw Error(n.describe() + ": " + msg); }

// "shardrt.AllReduceStart" → "AllReduce", as messages name collectives.
std::string base_name(const std::string& op) {
  std::string s = op.substr(op.find('.') + 1);
  if (s.size() > 5 && s.compare(s.size() - 5, 5, "Start") == 0) s.resize(s.size() - 5);
  return s;
}

ReduceOp parse_reduce(const Node& n) {
  std::string r = n.attr_s("reduce", "sum");
  if (r != "sum" && r != "max" && r != "min" && r != "prod")
    node_fail(n, "reduce '" + r + "' is not supported (sum|max|min|prod)");
  return reduce_op_from_name(r);
}

struct AxisSplit {
  int64_t outer = 1, inner = 1;  // products of the dims before and after the axis
};

AxisSplit split_at(const Node& n, const Dims& d, int64_t& axis) {
  int64_t r = int64_t(d.size());
  if (axis < -r || axis >= r)
    node_fail(n, "axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(r));
  if (axis < 0) axis += r;
  AxisSplit s;
  for (int64_t i = 0; i < axis; ++i) s.outer *= d[size_t(i)];
  for (int64_t i = axis + 1; i < r; ++i) s.inner *= d[size_t(i)];
  return s;
}

void all_gather(const Node& n, Communicator& g, const CallSite& site, const Tensor& x, Tensor& y) {
  int64_t axis = n.attr_i("axis", 0);
  AxisSplit s = split_at(n, x.dims(), axis);
  int64_t local = x.dims()[size_t(axis)];
  std::vector<int64_t> sizes;
  if (n.has_attr("gathered_size")) {
    sizes = chunk_sizes(n.attr_i("gathered_size"), g.size());
    if (sizes[size_t(g.rank())] != local)
      node_fail(n, "rank " + std::to_string(g.world_rank()) + " holds " + std::to_string(local) +
                       " along axis " + std::to_string(axis) + ", but torch.chunk of gathered_size " +
                       std::to_string(n.attr_i("gathered_size")) + " into " + std::to_string(g.size()) +
                       " gives it " + std::to_string(sizes[size_t(g.rank())]));
  } else {
    sizes.assign(size_t(g.size()), local);
  }
  int64_t total = 0;
  for (int64_t v : sizes) total += v;
  if (y.dims()[size_t(axis)] != total)
    node_fail(n, "output has " + std::to_string(y.dims()[size_t(axis)]) + " along axis " + std::to_string(axis) +
                     ", the group of " + std::to_string(g.size()) + " gathers " + std::to_string(total));
  size_t es = dtype_size(x.dtype());
  std::vector<int64_t> counts(sizes.size());
  for (size_t r = 0; r < sizes.size(); ++r) counts[r] = s.outer * sizes[r] * s.inner;
  if (s.outer == 1) {
    g.all_gather(x.raw(), y.raw(), counts, x.dtype(), site);
    return;
  }
  std::vector<char> stage(size_t(s.outer * total * s.inner) * es);
  g.all_gather(x.raw(), stage.data(), counts, x.dtype(), site);
  // stage: [rank][outer][sizes[rank]][inner] → y: [outer][total][inner]
  const char* src = stage.data();
  char* dst = static_cast<char*>(y.raw());
  int64_t off = 0;
  for (size_t r = 0; r < sizes.size(); ++r) {
    size_t row = size_t(sizes[r] * s.inner) * es;
    for (int64_t o = 0; o < s.outer; ++o) {
      if (row) std::memcpy(dst + size_t((o * total + off) * s.inner) * es, src, row);
      src += row;
    }
    off += sizes[r];
  }
}

void reduce_scatter(const Node& n, Communicator& g, const CallSite& site, const Tensor& x, Tensor& y, ReduceOp op) {
  int64_t axis = n.attr_i("axis", 0);
  AxisSplit s = split_at(n, x.dims(), axis);
  int64_t total = x.dims()[size_t(axis)];
  std::vector<int64_t> sizes = chunk_sizes(total, g.size());
  if (y.dims()[size_t(axis)] != sizes[size_t(g.rank())])
    node_fail(n, "output has " + std::to_string(y.dims()[size_t(axis)]) + " along axis " + std::to_string(axis) +
                     ", this rank's chunk of " + std::to_string(total) + " is " +
                     std::to_string(sizes[size_t(g.rank())]));
  size_t es = dtype_size(x.dtype());
  std::vector<int64_t> counts(sizes.size());
  for (size_t r = 0; r < sizes.size(); ++r) counts[r] = s.outer * sizes[r] * s.inner;
  if (s.outer == 1) {
    g.reduce_scatter(x.raw(), y.raw(), counts, x.dtype(), op, site);
    return;
  }
  // x: [outer][total][inner] → stage: [rank][outer][sizes[rank]][inner]
  std::vector<char> stage(x.nbytes());
  const char* src = static_cast<const char*>(x.raw());
  char* dst = stage.data();
  int64_t off = 0;
  for (size_t r = 0; r < sizes.size(); ++r) {
    size_t row = size_t(sizes[r] * s.inner) * es;
    for (int64_t o = 0; o < s.outer; ++o) {
      if (row) std::memcpy(dst, src + size_t((o * total + off) * s.inner) * es, row);
      dst += row;
    }
    off += sizes[r];
  }
  g.reduce_scatter(stage.data(), y.raw(), counts, x.dtype(), op, site);
}

}  // namespace

void run_collective(const Node& n, Communicator* comm, const std::vector<const Tensor*>& in,
                    const std::vector<Tensor*>& out) {
  if (in.empty() || !in[0] || out.empty() || !out[0]) node_fail(n, "expects one input and one output");
  const Tensor& x = *in[0];
  Tensor& y = *out[0];
  if (n.op == "shardrt.Wait") {
    // The Start ops complete their collective before returning (see kernels_collective.cpp),
    // so waiting is handing the value on.
    if (y.raw() != x.raw() && x.nbytes()) std::memcpy(y.raw(), x.raw(), x.nbytes());
    return;
  }
  if (!comm)
    node_fail(n, "is a collective op and needs a communicator: run the engine in an ExecutionContext created "
                 "with one (dist::communicator_from_env() or a dist::Mesh)");
  std::string group = n.attr_s("group", "tp");
  if (group != "tp" && group != "dp" && group != "world")
    node_fail(n, "group '" + group + "' is not a mesh group (tp|dp|world)");
  Communicator& g = comm->group(group);
  CallSite site{n.name, base_name(n.op)};
  std::string base = site.collective;
  if (base == "AllReduce") {
    g.all_reduce(x.raw(), y.raw(), x.numel(), x.dtype(), parse_reduce(n), site);
  } else if (base == "AllGather") {
    all_gather(n, g, site, x, y);
  } else if (base == "ReduceScatter") {
    reduce_scatter(n, g, site, x, y, parse_reduce(n));
  } else {
    node_fail(n, "is not a collective op");
  }
}

void run_collective_via_host(const std::string& backend, const Node& n, Communicator* comm,
                             const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out) {
  static std::mutex mu;
  static std::set<std::string> said;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (said.insert(backend + "/" + n.op).second)
      std::fprintf(stderr, "shardrt: the %s backend cannot run %s in the engine; it goes through the host communicator (%s)\n",
                   backend.c_str(), n.op.c_str(), comm ? comm->backend().c_str() : "none");
  }
  run_collective(n, comm, in, out);
}

}  // namespace shardrt::dist
