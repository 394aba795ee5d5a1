// Shared pieces of every communicator: reduce-op names, the default group lookup, the
// timeout setting and the wording of errors.
#include "dist/communicator.h"

#include <cstdlib>
#include <cstdio>

namespace shardrt::dist {

ReduceOp reduce_op_from_name(const std::string& s) {
  if (s == "sum") return ReduceOp::Sum;
  if (s == "max") return ReduceOp::Max;
  if (s == "min") return ReduceOp::Min;
  if (s == "prod") return ReduceOp::Prod;
  throw Error("reduce '" + s + "' is not supported (sum|max|min|prod)");
}

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Max: return "max";
    case ReduceOp::Min: return "min";
    case ReduceOp::Prod: return "prod";
  }
  return "?";
}

Communicator& Communicator::group(const std::string& name) {
  if (name == "world" || name == "tp") return *this;
  if (name == "dp") {
    if (!self_group_) {
      // A group of this rank alone; created lazily so that plain communicators cost
      // nothing for it. Its world rank is this rank's.
      class Self final : public Communicator {
       public:
        explicit Self(int world_rank) : wr_(world_rank) {}
        int rank() const override { return 0; }
        int size() const override { return 1; }
        std::string backend() const override { return "single"; }
        std::string group_name() const override { return "dp"; }
        int world_rank_of(int) const override { return wr_; }
        void all_reduce(const void* s, void* r, int64_t n, DType t, ReduceOp, const CallSite&) override {
          inner_->all_reduce(s, r, n, t, ReduceOp::Sum);
        }
        void all_gather(const void* s, void* r, const std::vector<int64_t>& c, DType t, const CallSite& site) override {
          check_counts(site, c);
          inner_->all_gather(s, r, c, t);
        }
        using Communicator::all_gather;
        void reduce_scatter(const void* s, void* r, const std::vector<int64_t>& c, DType t, ReduceOp op,
                            const CallSite& site) override {
          check_counts(site, c);
          inner_->reduce_scatter(s, r, c, t, op);
        }
        void broadcast(void* b, int64_t n, DType t, int root, const CallSite& site) override {
          if (root != 0) fail(site, "broadcast root " + std::to_string(root) + " is outside a group of 1");
        }
        void barrier(const CallSite&) override {}
        std::unique_ptr<Communicator> split(int, int, const std::string& name) override {
          return make_single_communicator(name);
        }

       private:
        int wr_;
        std::unique_ptr<Communicator> inner_ = make_single_communicator("dp");
      };
      self_group_ = std::make_unique<Self>(world_rank());
    }
    return *self_group_;
  }
  throw Error("collective group '" + name + "' is not known (tp|dp|world)");
}

std::string describe_call(int world_rank, const CallSite& site, int64_t bytes, const std::string& group) {
  std::string s = "rank " + std::to_string(world_rank) + ": collective " +
                  (site.collective.empty() ? std::string("call") : site.collective);
  if (!site.node.empty()) s += " of node '" + site.node + "'";
  s += " (";
  if (bytes >= 0) s += std::to_string(bytes) + " bytes, ";
  s += "group " + group + ")";
  return s;
}

void Communicator::fail(const CallSite& site, const std::string& msg) const {
  throw Error(describe_call(world_rank(), site, -1, group_name()) + ": " + msg);
}

void Communicator::check_counts(const CallSite& site, const std::vector<int64_t>& counts) const {
  if (int(counts.size()) != size())
    fail(site, std::to_string(counts.size()) + " per-rank counts given for a group of " + std::to_string(size()));
  for (int64_t c : counts)
    if (c < 0) fail(site, "negative per-rank count " + std::to_string(c));
}

double collective_timeout_seconds() {
  const char* e = std::getenv("SHARDRT_COLLECTIVE_TIMEOUT");
  if (!e || !*e) return 60.0;
  char* end = nullptr;
  double v = std::strtod(e, &end);
  if (end == e || *end != '\0' || !(v > 0))
    throw Error(std::string("SHARDRT_COLLECTIVE_TIMEOUT='") + e + "' is not a positive number of seconds");
  return v;
}

}  // namespace shardrt::dist
