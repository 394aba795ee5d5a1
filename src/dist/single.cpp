// The communicator of a world of one rank: every collective is a copy (or nothing), so the
// same engine and tests run unchanged without a launcher.
#include <cstring>

#include "dist/communicator.h"

namespace shardrt::dist {

namespace {

class SingleCommunicator final : public Communicator {
 public:
  explicit SingleCommunicator(std::string name) : name_(std::move(name)) {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "single"; }
  std::string group_name() const override { return name_; }
  int world_rank_of(int) const override { return 0; }

  void all_reduce(const void* send, void* recv, int64_t count, DType t, ReduceOp, const CallSite& site) override {
    if (count < 0) fail(site, "negative count");
    copy(send, recv, count, t);
  }
  void all_gather(const void* send, void* recv, const std::vector<int64_t>& counts, DType t,
                  const CallSite& site) override {
    check_counts(site, counts);
    copy(send, recv, counts[0], t);
  }
  using Communicator::all_gather;
  void reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType t, ReduceOp,
                      const CallSite& site) override {
    check_counts(site, counts);
    copy(send, recv, counts[0], t);
  }
  void broadcast(void*, int64_t, DType, int root, const CallSite& site) override {
    if (root != 0) fail(site, "broadcast root " + std::to_string(root) + " is outside a group of 1");
  }
  void barrier(const CallSite&) override {}
  std::unique_ptr<Communicator> split(int, int, const std::string& name) override {
    return std::make_unique<SingleCommunicator>(name);
  }

 private:
  static void copy(const void* s, void* r, int64_t n, DType t) {
    if (s != r && n > 0) std::memmove(r, s, size_t(n) * dtype_size(t));
  }
  std::string name_;
};

}  // namespace

std::unique_ptr<Communicator> make_single_communicator(const std::string& name) {
  return std::make_unique<SingleCommunicator>(name);
}

}  // namespace shardrt::dist
