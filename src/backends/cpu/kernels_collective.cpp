// CPU kernels of the collective ops: they run through the context's communicator
// (KernelCtx::comm), the node's `group` attribute choosing the group. Every dtype moves;
// reductions support every dtype too (fp16/bf16 accumulate in fp32).
//
// The Start forms complete their collective before returning: the memory plan ends an
// input's life at its last reader, so a collective still in flight after its Start could
// read a buffer already reused. Start → Wait is therefore correct but not overlapped;
// fuse_collectives turns a Start whose only user is its Wait into the plain collective.
#include "backends/cpu/cpu_kernels.h"
#include "dist/collective_exec.h"

namespace shardrt::cpu {

void register_collective_kernels() {
  for (const char* op : {"shardrt.AllReduce", "shardrt.AllGather", "shardrt.ReduceScatter", "shardrt.AllReduceStart",
                         "shardrt.AllGatherStart", "shardrt.ReduceScatterStart", "shardrt.Wait"})
    register_kernel(op, [](KernelCtx& c) { dist::run_collective(c.node, c.comm, c.in, c.out); });
}

}  // namespace shardrt::cpu
