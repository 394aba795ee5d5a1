// The communicator: how the ranks of a distributed run exchange tensors. One abstract
// interface, one implementation per transport (single.cpp: a world of one; mpi/: OpenMPI;
// NCCL later). Buffers are host memory; counts are in elements of `dtype`.
//
// Every collective must be called by every rank of the communicator, in the same order,
// with matching counts and dtypes. A collective that does not complete within the timeout
// (SHARDRT_COLLECTIVE_TIMEOUT seconds, default 60) ends the job with a message naming the
// rank, the collective, its node and the ranks it waited on, instead of hanging.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "shardrt/dtype.h"
#include "shardrt/engine.h"  // shardrt::Error

namespace shardrt::dist {

enum class ReduceOp { Sum, Max, Min, Prod };
// "sum"|"max"|"min"|"prod"; throws Error for another name.
ReduceOp reduce_op_from_name(const std::string& s);
const char* reduce_op_name(ReduceOp op);

// What a collective call is for, so that errors and timeouts can name it: the IR node
// ("" outside a graph) and the collective's name as the IR spells it ("AllReduce").
struct CallSite {
  std::string node;
  std::string collective;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "single", "mpi", ...
  // The group's label in messages: "world", "tp", "dp", or what split() was given.
  virtual std::string group_name() const = 0;
  // Rank in the world of this group's rank `r` (messages name world ranks).
  virtual int world_rank_of(int r) const = 0;
  int world_rank() const { return world_rank_of(rank()); }

  // recv = op over every rank's send (`count` elements each). send == recv is allowed.
  // fp16/bf16 reduce in fp32 and round once; bool: sum/max are "or", prod/min are "and".
  virtual void all_reduce(const void* send, void* recv, int64_t count, DType t, ReduceOp op,
                          const CallSite& site = {}) = 0;
  // recv = every rank's send concatenated in rank order; rank r sends counts[r] elements
  // (counts has size() entries, uneven allowed; this rank's send has counts[rank()]).
  virtual void all_gather(const void* send, void* recv, const std::vector<int64_t>& counts, DType t,
                          const CallSite& site = {}) = 0;
  // The reduction of every rank's send (sum(counts) elements) is split in rank order into
  // pieces of counts[r] elements; rank r receives piece r in recv.
  virtual void reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType t,
                              ReduceOp op, const CallSite& site = {}) = 0;
  // Every rank's buf = root's buf.
  virtual void broadcast(void* buf, int64_t count, DType t, int root, const CallSite& site = {}) = 0;
  virtual void barrier(const CallSite& site = {}) = 0;
  // Sub-groups, as MPI_Comm_split: ranks passing the same `color` form one group, ordered
  // by `key` (ties by rank). Collective over this communicator. `name` labels the group.
  virtual std::unique_ptr<Communicator> split(int color, int key, const std::string& name) = 0;

  // The group a collective op's `group` attribute names ("tp", "dp", "world"). A plain
  // communicator is a mesh of one data-parallel replica: "tp" and "world" are itself and
  // "dp" is a group of one (this rank alone). A Mesh (mesh.h) answers with its groups.
  virtual Communicator& group(const std::string& name);

  // Equal counts: every rank sends `count` elements.
  void all_gather(const void* send, void* recv, int64_t count, DType t, const CallSite& site = {}) {
    all_gather(send, recv, std::vector<int64_t>(size_t(size()), count), t, site);
  }

 protected:
  // Throws Error("rank R: collective C of node 'X' (group G): msg").
  [[noreturn]] void fail(const CallSite& site, const std::string& msg) const;
  // Checks counts against size() and this rank's expected count; throws via fail().
  void check_counts(const CallSite& site, const std::vector<int64_t>& counts) const;

 private:
  std::unique_ptr<Communicator> self_group_;  // the "dp" group of a plain communicator
};

// A communicator of one rank (rank 0 of 1): collectives are copies.
std::unique_ptr<Communicator> make_single_communicator(const std::string& name = "world");

// The MPI world (MPI_COMM_WORLD duplicated); initialises MPI when nobody has (and then
// finalises it at exit). Throws Error when shardrt was built without MPI.
std::unique_ptr<Communicator> make_mpi_communicator();
bool mpi_available();  // built with MPI

// Seconds a collective may wait before the job is ended: SHARDRT_COLLECTIVE_TIMEOUT, else 60.
double collective_timeout_seconds();

// "rank R: collective C of node 'X' (N bytes, group G)" prefix shared by the messages.
std::string describe_call(int world_rank, const CallSite& site, int64_t bytes, const std::string& group);

}  // namespace shardrt::dist
