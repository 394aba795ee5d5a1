// Running a collective op of the IR (shardrt.AllReduce, AllGather, ReduceScatter, their
// Start forms, Wait) on host tensors through a communicator. The CPU kernels call this;
// a backend that cannot run collectives itself calls run_collective_via_host.
#pragma once
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "ir/graph.h"

namespace shardrt::dist {

// Whether `op` is one of the collective ops (Wait included).
bool is_collective_op(const std::string& op);

// torch.chunk's split of `total` into `parts`: ceil-sized chunks, the last ones smaller or
// empty. Returns the size of each of the `parts` chunks.
std::vector<int64_t> chunk_sizes(int64_t total, int parts);

// Runs collective node `n`: `comm` is the context's world communicator (or Mesh); the
// node's `group` attribute picks the group. `out` is allocated with the shape rule's dims.
// Errors name the node, the rank and the collective.
void run_collective(const Node& n, Communicator* comm, const std::vector<const Tensor*>& in,
                    const std::vector<Tensor*>& out);

// For a backend whose engine cannot run collective ops (no device communicator): stages
// through host tensors the caller provides and runs them on the host communicator, saying
// so once per backend and op on stderr.
void run_collective_via_host(const std::string& backend, const Node& n, Communicator* comm,
                             const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out);

}  // namespace shardrt::dist
