// A dist::Communicator whose collectives are Python callables (Communicator.from_callbacks):
// the way an engine's collective ops run through torch.distributed when torchrun launched
// the job. Each callable receives HostTensor views of the buffers (valid only during the
// call; torch.from_dlpack(view) shares their memory) and must complete the collective
// before it returns.
#pragma once
#include <memory>
#include <string>

#include "dist/communicator.h"
#include "py_common.h"

namespace shardrt::py {

struct Callbacks {
  pyb::object all_reduce;      // (send, recv, op: str)
  pyb::object all_gather;      // (send, recv, counts: list[int])
  pyb::object reduce_scatter;  // (send, recv, counts: list[int], op: str); None: through all_reduce
  pyb::object broadcast;       // (buf, root: int)
  pyb::object barrier;         // (); None: an all_reduce of one element
  pyb::object split;           // (color, key, name) -> Communicator; None: split is refused
};

std::unique_ptr<dist::Communicator> make_callback_communicator(int rank, int size, Callbacks cb,
                                                               const std::string& backend, const std::string& name);

// A communicator that forwards to one held by Python (what split() hands back to C++).
std::unique_ptr<dist::Communicator> forward_to(std::shared_ptr<dist::Communicator> target);

}  // namespace shardrt::py
