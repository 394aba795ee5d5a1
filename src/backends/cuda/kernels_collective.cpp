// CUDA kernels of the collective ops (shardrt.AllReduce, AllGather, ReduceScatter, their
// Start forms, Wait), through the context's DeviceComm (KernelCtx::dcomm), the node's
// `group` attribute choosing the group. Semantics are the CPU kernels'
// (dist/collective_exec.cpp): every dtype moves and reduces (bool: sum/max "or",
// prod/min "and"); AllGather's chunks may be torch.chunk's uneven split of
// `gathered_size`; ReduceScatter gives this rank's torch.chunk chunk.
//
// Collectives are stream-ordered: a Start enqueues its collective on the context's stream
// and Wait hands its input on (every later reader runs after it on the same stream), so
// the memory plan's lifetimes hold without extra synchronisation.
//
// Along an inner axis (some outer dim > 1) the blocks are not contiguous: AllGather
// gathers rank-major into the workspace and unpacks; ReduceScatter packs its input
// rank-major into the workspace first (kernels_collective_pack.cu).
#include "backends/cuda/cuda_common.h"
#include "backends/cuda/device_comm.h"
#include "backends/cuda/kernels_collective_pack.h"
#include "dist/collective_exec.h"

namespace shardrt::cuda {

namespace {

// "shardrt.AllReduceStart" → "AllReduce", as messages name collectives.
std::string base_name(const std::string& op) {
  std::string s = op.substr(op.find('.') + 1);
  if (s.size() > 5 && s.compare(s.size() - 5, 5, "Start") == 0) s.resize(s.size() - 5);
  return s;
}

dist::ReduceOp parse_reduce(KernelCtx& c) {
  std::string r = c.node.attr_s("reduce", "sum");
  if (r != "sum" && r != "max" && r != "min" && r != "prod") c.fail("reduce '" + r + "' is not supported (sum|max|min|prod)");
  return dist::reduce_op_from_name(r);
}

struct AxisSplit {
  int64_t axis = 0, outer = 1, inner = 1;
};

AxisSplit split_at(KernelCtx& c, const Dims& d) {
  int64_t r = int64_t(d.size());
  int64_t axis = c.node.attr_i("axis", 0);
  if (axis < -r || axis >= r) c.fail("axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(r));
  AxisSplit s;
  s.axis = axis < 0 ? axis + r : axis;
  for (int64_t i = 0; i < s.axis; ++i) s.outer *= d[size_t(i)];
  for (int64_t i = s.axis + 1; i < r; ++i) s.inner *= d[size_t(i)];
  return s;
}

void all_gather(KernelCtx& c, DeviceComm& dc, const std::string& group, const dist::CallSite& site,
                const DevTensor& x, DevTensor& y) {
  AxisSplit s = split_at(c, x.dims);
  int gsize = dc.group_size(group), grank = dc.group_rank(group);
  int64_t local = x.dims[size_t(s.axis)];
  std::vector<int64_t> sizes;
  if (c.node.has_attr("gathered_size")) {
    int64_t gathered = c.node.attr_i("gathered_size");
    sizes = dist::chunk_sizes(gathered, gsize);
    if (sizes[size_t(grank)] != local)
      c.fail("rank " + std::to_string(dc.host().world_rank()) + " holds " + std::to_string(local) + " along axis " +
             std::to_string(s.axis) + ", but torch.chunk of gathered_size " + std::to_string(gathered) + " into " +
             std::to_string(gsize) + " gives it " + std::to_string(sizes[size_t(grank)]));
  } else {
    sizes.assign(size_t(gsize), local);
  }
  int64_t total = 0;
  for (int64_t v : sizes) total += v;
  if (y.dims[size_t(s.axis)] != total)
    c.fail("output has " + std::to_string(y.dims[size_t(s.axis)]) + " along axis " + std::to_string(s.axis) +
           ", the group of " + std::to_string(gsize) + " gathers " + std::to_string(total));
  size_t es = dtype_size(x.dtype);
  std::vector<int64_t> counts(sizes.size());
  for (size_t r = 0; r < sizes.size(); ++r) counts[r] = s.outer * sizes[r] * s.inner;
  if (s.outer == 1 || total == 0 || s.inner == 0) {
    dc.all_gather(group, x.data, y.data, counts, x.dtype, c.stream(), site);
    return;
  }
  void* stage = c.res.workspace(size_t(s.outer * total * s.inner) * es);
  dc.all_gather(group, x.data, stage, counts, x.dtype, c.stream(), site);
  // torch.chunk sizes: the first chunk is the largest (every chunk when they are equal).
  launch_chunk_unpack(stage, y.data, s.outer, total, s.inner, sizes[0], es, c.stream());
}

void reduce_scatter(KernelCtx& c, DeviceComm& dc, const std::string& group, const dist::CallSite& site,
                    const DevTensor& x, DevTensor& y, dist::ReduceOp op) {
  AxisSplit s = split_at(c, x.dims);
  int gsize = dc.group_size(group), grank = dc.group_rank(group);
  int64_t total = x.dims[size_t(s.axis)];
  std::vector<int64_t> sizes = dist::chunk_sizes(total, gsize);
  if (y.dims[size_t(s.axis)] != sizes[size_t(grank)])
    c.fail("output has " + std::to_string(y.dims[size_t(s.axis)]) + " along axis " + std::to_string(s.axis) +
           ", this rank's chunk of " + std::to_string(total) + " is " + std::to_string(sizes[size_t(grank)]));
  size_t es = dtype_size(x.dtype);
  std::vector<int64_t> counts(sizes.size());
  for (size_t r = 0; r < sizes.size(); ++r) counts[r] = s.outer * sizes[r] * s.inner;
  if (s.outer == 1 || total == 0 || s.inner == 0) {
    dc.reduce_scatter(group, x.data, y.data, counts, x.dtype, op, c.stream(), site);
    return;
  }
  void* stage = c.res.workspace(x.nbytes());
  launch_chunk_pack(x.data, stage, s.outer, total, s.inner, sizes[0], es, c.stream());
  dc.reduce_scatter(group, stage, y.data, counts, x.dtype, op, c.stream(), site);
}

void run(KernelCtx& c) {
  const DevTensor* xp = c.input(0);
  DevTensor* yp = c.out.empty() ? nullptr : c.out[0];
  if (!xp || !yp) c.fail("expects one input and one output");
  const DevTensor& x = *xp;
  DevTensor& y = *yp;
  if (x.dtype == DType::Undefined) c.fail("X has no dtype");
  if (c.node.op == "shardrt.Wait") {
    // Collectives are stream-ordered: the value is complete for every later kernel.
    if (y.data != x.data && x.nbytes())
      SHARDRT_CUDA_CHECK(cudaMemcpyAsync(y.data, x.data, x.nbytes(), cudaMemcpyDeviceToDevice, c.stream()));
    return;
  }
  if (!c.dcomm)
    c.fail("is a collective op and needs a device communicator: run it in a context created with a communicator "
           "(dist::communicator_from_env() or a dist::Mesh)");
  std::string group = c.node.attr_s("group", "tp");
  if (group != "tp" && group != "dp" && group != "world") c.fail("group '" + group + "' is not a mesh group (tp|dp|world)");
  dist::CallSite site{c.node.name, base_name(c.node.op)};
  DeviceComm& dc = *c.dcomm;
  if (site.collective == "AllReduce") {
    if (y.numel() != x.numel()) c.fail("output has " + std::to_string(y.numel()) + " elements, input " + std::to_string(x.numel()));
    dc.all_reduce(group, x.data, y.data, x.numel(), x.dtype, parse_reduce(c), c.stream(), site);
  } else if (site.collective == "AllGather") {
    all_gather(c, dc, group, site, x, y);
  } else if (site.collective == "ReduceScatter") {
    reduce_scatter(c, dc, group, site, x, y, parse_reduce(c));
  } else {
    c.fail("is not a collective op");
  }
}

}  // namespace

void register_collective_kernels() {
  for (const char* op : {"shardrt.AllReduce", "shardrt.AllGather", "shardrt.ReduceScatter", "shardrt.AllReduceStart",
                         "shardrt.AllGatherStart", "shardrt.ReduceScatterStart", "shardrt.Wait"})
    register_kernel(op, run);
}

}  // namespace shardrt::cuda
