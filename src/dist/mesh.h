// The dp × tp device mesh: world size = dp × tp, rank = dp_index × tp + tp_index, so a
// tensor-parallel group is `tp` consecutive ranks and a data-parallel group takes one rank
// of each tensor-parallel group. A Mesh is itself the world communicator (its collectives
// are the world's) and answers group("tp"/"dp"/"world") with its sub-groups, which is how
// a collective op's `group` attribute finds its communicator.
#pragma once
#include <memory>
#include <string>

#include "dist/communicator.h"

namespace shardrt::dist {

class Mesh final : public Communicator {
 public:
  // Borrows `world` (the caller keeps it alive). Collective over `world`: every rank must
  // construct its Mesh with the same dp and tp. Throws Error when dp × tp != world.size().
  Mesh(Communicator& world, int dp, int tp);
  // Owns `world`.
  Mesh(std::unique_ptr<Communicator> world, int dp, int tp);

  int dp() const { return dp_; }
  int tp() const { return tp_; }
  int dp_index() const { return world_->rank() / tp_; }
  int tp_index() const { return world_->rank() % tp_; }
  Communicator& world() { return *world_; }
  Communicator& tp_group() { return *tp_group_; }
  Communicator& dp_group() { return *dp_group_; }

  // "tp", "dp" or "world"; throws Error for another name.
  Communicator& group(const std::string& name) override;

  int rank() const override { return world_->rank(); }
  int size() const override { return world_->size(); }
  std::string backend() const override { return world_->backend(); }
  std::string group_name() const override { return world_->group_name(); }
  int world_rank_of(int r) const override { return world_->world_rank_of(r); }
  void all_reduce(const void* s, void* r, int64_t n, DType t, ReduceOp op, const CallSite& site = {}) override {
    world_->all_reduce(s, r, n, t, op, site);
  }
  void all_gather(const void* s, void* r, const std::vector<int64_t>& counts, DType t,
                  const CallSite& site = {}) override {
    world_->all_gather(s, r, counts, t, site);
  }
  using Communicator::all_gather;
  void reduce_scatter(const void* s, void* r, const std::vector<int64_t>& counts, DType t, ReduceOp op,
                      const CallSite& site = {}) override {
    world_->reduce_scatter(s, r, counts, t, op, site);
  }
  void broadcast(void* buf, int64_t n, DType t, int root, const CallSite& site = {}) override {
    world_->broadcast(buf, n, t, root, site);
  }
  void barrier(const CallSite& site = {}) override { world_->barrier(site); }
  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) override {
    return world_->split(color, key, name);
  }

  std::string describe() const;  // "mesh dp=2 x tp=2 (mpi), rank 3 = dp 1, tp 1"

 private:
  void init();
  std::unique_ptr<Communicator> owned_;
  Communicator* world_;
  int dp_, tp_;
  std::unique_ptr<Communicator> tp_group_, dp_group_;
};

// Group sizes and this rank's index in each group, as the shape rules of collective ops
// see them (ReduceScatter's chunk, AllGather's output size). The executor sets them from
// its communicator for the duration of a run; a per-rank engine build sets them with
// ScopedGroupShapes so that build-time shapes are concrete. Unset: the rules give unknown
// dims at build time.
struct GroupShape {
  int size = 0;  // 0: unknown
  int index = 0;
};
// The current thread's shape of group `name` ("tp"|"dp"|"world"); size 0 when unset.
GroupShape current_group_shape(const std::string& name);

class ScopedGroupShapes {
 public:
  explicit ScopedGroupShapes(Communicator& comm);        // from a communicator or Mesh
  ScopedGroupShapes(int dp, int tp, int world_rank);      // for builds without one
  ~ScopedGroupShapes();
  ScopedGroupShapes(const ScopedGroupShapes&) = delete;
  ScopedGroupShapes& operator=(const ScopedGroupShapes&) = delete;

 private:
  GroupShape saved_[3];
  bool saved_set_;
};

}  // namespace shardrt::dist
