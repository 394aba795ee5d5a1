// DeviceComm: collectives on device buffers for the CUDA backend, one per execution
// context. Two implementations behind one interface:
//   - "nccl": NCCL (libnccl.so.2, loaded at run time with dlopen; SHARDRT_NCCL_LIBRARY
//     names another file). Stream-ordered and capturable into CUDA graphs.
//   - "mpi-staged": device → pinned host copy, the host communicator's collective (MPI),
//     host → device copy. Used when NCCL cannot be loaded, when SHARDRT_NCCL=0, or when
//     two ranks of a group would share one GPU (NCCL refuses that). Synchronises the
//     stream inside every collective, so it is NOT capturable.
// Every rank takes the same decision (it is agreed through the host communicator).
//
// Under both, all_reduce takes a third path per call (peer_allreduce.h): a one-shot
// all-reduce over peer memory, one kernel, for messages of at most
// SHARDRT_PEER_ALLREDUCE_MAX_BYTES (default 256 KiB) in fp32/fp16/bf16, when the ranks of
// the group are on one host and their GPUs reach each other (the same GPU included, so two
// ranks sharing a GPU take it too, where NCCL refuses them). It is stream-ordered and
// capturable under the staged path as well. SHARDRT_PEER_ALLREDUCE=0 turns it off. A group
// sets it up (collective over the group) in prepare() or at its first eager all_reduce;
// with SHARDRT_VERBOSE=1 the group's rank 0 says once which path the group takes.
//
// ---- How the executor uses it ----
//   // 1. Before creating the context's Resources (whose stream binds the device): pick
//   //    this rank's GPU, one per local rank. No-op when the process already called
//   //    cudaSetDevice itself (then that choice stands).
//   cuda::DeviceComm::select_local_device();
//   auto res = std::make_unique<cuda::Resources>();
//   // 2. Once per context, when the context has a host communicator (collective over
//   //    the world: every rank creates its DeviceComm at the same point):
//   std::unique_ptr<cuda::DeviceComm> dcomm;
//   if (comm) dcomm = cuda::DeviceComm::create(*comm, res->stream());
//   //    Optional, recommended: set up the groups the graph's collective nodes name
//   //    (their `group` attribute, default "tp") before the first run, so that no NCCL
//   //    communicator is created mid-run: dcomm->prepare({"tp"});
//   // 3. Every KernelCtx gets ctx.comm = comm and ctx.dcomm = dcomm.get(); also set
//   //    dist::ScopedGroupShapes(*comm) for the run (shape rules of collective ops).
//   // 4. Where the executor synchronises the stream at the end of a run, call
//   //        dcomm->wait_or_abort(res->stream(), {"", "run"});
//   //    instead of cudaStreamSynchronize when a DeviceComm exists: it waits with the
//   //    SHARDRT_COLLECTIVE_TIMEOUT deadline, and on timeout or an NCCL error aborts the
//   //    NCCL communicators and throws Error naming the rank, collective, node and group
//   //    (a plain synchronise would hang forever on a peer that died).
//   // 5. CUDA graphs: capture only when dcomm->capturable(); with "mpi-staged" run
//   //    collectives eagerly (the staged path synchronises and runs MPI on the host).
//   //    Run once eagerly before capturing (as for Resources::workspace): DeviceComm's own
//   //    padding scratch grows only outside capture; a capture that needs more throws.
//
// Device choice (select_local_device): the local rank is read from
// OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID, MPI_LOCALRANKID or LOCAL_RANK (what
// dist::detect_launch() reports) and the device is local_rank % device_count. create()
// uses the device of the stream it is given (cudaStreamGetDevice) and makes it current;
// with a null stream it calls select_local_device() itself.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/cuda/peer_allreduce.h"
#include "dist/communicator.h"
#include "shardrt/dtype.h"

namespace shardrt::cuda {

class DeviceComm {
 public:
  virtual ~DeviceComm() = default;
  DeviceComm(const DeviceComm&) = delete;
  DeviceComm& operator=(const DeviceComm&) = delete;

  // NCCL when it loads (and SHARDRT_NCCL is not 0) and no two ranks share a GPU; the
  // staged path otherwise, saying once on stderr:
  //   "shardrt: NCCL not available (<reason>); collectives go through MPI with host copies"
  // Collective over `host` (exchanges every rank's device identity and NCCL status).
  // `host` (a plain communicator or a dist::Mesh) must outlive the DeviceComm.
  static std::unique_ptr<DeviceComm> create(dist::Communicator& host, cudaStream_t stream);
  // The staged path unconditionally (tests; callers that know NCCL must not be used).
  // Not collective; prints nothing.
  static std::unique_ptr<DeviceComm> create_staged(dist::Communicator& host, cudaStream_t stream,
                                                   const std::string& reason);
  // Picks this process's GPU from its local rank unless the process already chose one;
  // returns the device now current.
  static int select_local_device();
  // Whether libnccl.so.2 (or SHARDRT_NCCL_LIBRARY) loads and is recent enough (>= 2.10,
  // for bf16 reductions); `why` receives the reason when not.
  static bool nccl_loadable(std::string* why = nullptr);

  virtual std::string backend() const = 0;   // "nccl" | "mpi-staged"
  virtual bool capturable() const = 0;       // nccl: true; staged: false
  // Why the staged path was chosen ("" for NCCL).
  const std::string& staged_reason() const { return reason_; }
  dist::Communicator& host() { return host_; }
  int device() const { return device_; }

  // The host group a collective op's `group` attribute names ("tp" | "dp" | "world"):
  // its size and this rank's index in it.
  int group_size(const std::string& group) { return host_.group(group).size(); }
  int group_rank(const std::string& group) { return host_.group(group).rank(); }
  // Sets up the device communicators of these groups now (collective over each group),
  // the one-shot peer path included.
  virtual void prepare(const std::vector<std::string>& groups) { prepare_peer(groups); }

  // The path an all_reduce of `count` elements of `t` on `group` takes: "one-shot peer" or
  // backend(). Collective over the group the first time it sees the group (it sets the
  // group's peer path up), so every rank of the group must call it then.
  std::string all_reduce_path(const std::string& group, int64_t count, DType t);
  // Why the group has no one-shot peer path ("" when it has one). Collective as above.
  std::string peer_unavailable_reason(const std::string& group);

  // Collectives on device memory, enqueued on `stream` (the NCCL path returns before they
  // complete; the staged path completes them before returning). Semantics are the host
  // communicator's (dist/communicator.h): counts in elements, uneven all_gather /
  // reduce_scatter counts allowed (counts has group_size(group) entries), send == recv
  // allowed for all_reduce and broadcast. Bool reduces as "or" (sum/max) / "and"
  // (prod/min). NCCL reduces fp16/bf16 in their own type per step (the staged path in
  // fp32): for 2 ranks both round once; for more, sums may differ in the last bit.
  virtual void all_reduce(const std::string& group, const void* send, void* recv, int64_t count, DType t,
                          dist::ReduceOp op, cudaStream_t stream, const dist::CallSite& site) = 0;
  virtual void all_gather(const std::string& group, const void* send, void* recv, const std::vector<int64_t>& counts,
                          DType t, cudaStream_t stream, const dist::CallSite& site) = 0;
  virtual void reduce_scatter(const std::string& group, const void* send, void* recv,
                              const std::vector<int64_t>& counts, DType t, dist::ReduceOp op, cudaStream_t stream,
                              const dist::CallSite& site) = 0;
  virtual void broadcast(const std::string& group, void* buf, int64_t count, DType t, int root, cudaStream_t stream,
                         const dist::CallSite& site) = 0;

  // Waits for everything enqueued on `stream` (replaces cudaStreamSynchronize). NCCL:
  // polls cudaStreamQuery and ncclCommGetAsyncError until SHARDRT_COLLECTIVE_TIMEOUT
  // seconds have passed, then aborts every NCCL communicator and throws Error("rank R:
  // collective C of node 'X' (group G): ..."), naming `site` or, when site.collective is
  // empty, the last collective enqueued. After an abort the DeviceComm refuses further
  // collectives. Staged: a plain synchronise (the host communicator has its own timeout).
  virtual void wait_or_abort(cudaStream_t stream, const dist::CallSite& site) = 0;

 protected:
  DeviceComm(dist::Communicator& host, int device, std::string reason)
      : host_(host), device_(device), reason_(std::move(reason)) {}

  // ---- the one-shot peer path, shared by both implementations ----
  // Runs the all-reduce on the peer path when the group has one and the call fits it
  // (the same decision on every rank); false: the caller's own path runs it.
  bool peer_all_reduce(const std::string& group, const void* send, void* recv, int64_t count, DType t,
                       dist::ReduceOp op, cudaStream_t stream, const dist::CallSite& site);
  void prepare_peer(const std::vector<std::string>& groups);
  // After the stream's work completed (or while waiting): "" or the message of a wait on
  // the peer path that gave up (SHARDRT_COLLECTIVE_TIMEOUT).
  std::string peer_failure();

  dist::Communicator& host_;
  int device_;
  std::string reason_;

 private:
  // The group's peer path (null: none), set up on first use outside capture.
  PeerAllReduce* peer(const std::string& group, cudaStream_t stream);
  struct PeerGroup {
    std::unique_ptr<PeerAllReduce> p;
    std::string why;   // why not, when p is null
    std::string name;  // the group's name, for messages
    dist::CallSite last;
  };
  std::map<const dist::Communicator*, PeerGroup> peer_groups_;
  std::map<std::string, PeerGroup*> peer_by_name_;
  bool peer_failed_ = false;
};

// ---- pieces of the NCCL path, exposed so that tests can check them alone ----
namespace detail {
// Uneven chunks through equal-count NCCL calls. `counts[r]` elements of `elem_bytes` each,
// `slot` >= max(counts). pad: compact [c0][c1]... → padded slots [slot][slot]... (slot r
// starts at r*slot; its tail past counts[r] is left as is). compact: the reverse. Runs of
// full slots move with one cudaMemcpyAsync; everything is stream-ordered and capturable.
void pad_chunks(const void* compact, void* padded, const std::vector<int64_t>& counts, int64_t slot,
                size_t elem_bytes, cudaStream_t stream);
void compact_chunks(const void* padded, void* compact, const std::vector<int64_t>& counts, int64_t slot,
                    size_t elem_bytes, cudaStream_t stream);
}  // namespace detail

}  // namespace shardrt::cuda
