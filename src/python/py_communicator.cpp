#include "py_communicator.h"

#include <cstring>

namespace shardrt::py {
namespace {

using dist::CallSite;
using dist::Communicator;
using dist::ReduceOp;

// A view of `count` elements at `p` (no ownership: valid during the callback only).
pyb::object view(const void* p, int64_t count, DType t) {
  return wrap_tensor(Tensor(t, {count}, const_cast<void*>(p), nullptr));
}

class CallbackCommunicator final : public Communicator {
 public:
  CallbackCommunicator(int rank, int size, Callbacks cb, std::string backend, std::string name)
      : rank_(rank), size_(size), cb_(std::move(cb)), backend_(std::move(backend)), name_(std::move(name)) {
    if (size < 1 || rank < 0 || rank >= size)
      throw Error("Communicator.from_callbacks: rank " + std::to_string(rank) + " of size " + std::to_string(size));
  }
  ~CallbackCommunicator() override {
    pyb::gil_scoped_acquire gil;
    cb_ = Callbacks{};  // drop the callables with the GIL held
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return backend_; }
  std::string group_name() const override { return name_; }
  int world_rank_of(int r) const override { return r; }

  void all_reduce(const void* send, void* recv, int64_t count, DType t, ReduceOp op, const CallSite& site) override {
    call(site, "all_reduce", [&] {
      cb_.all_reduce(view(send, count, t), view(recv, count, t), dist::reduce_op_name(op));
    });
  }
  void all_gather(const void* send, void* recv, const std::vector<int64_t>& counts, DType t,
                  const CallSite& site) override {
    check_counts(site, counts);
    int64_t total = 0;
    for (int64_t c : counts) total += c;
    call(site, "all_gather", [&] {
      cb_.all_gather(view(send, counts[size_t(rank_)], t), view(recv, total, t), pyb::cast(counts));
    });
  }
  void reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType t, ReduceOp op,
                      const CallSite& site) override {
    check_counts(site, counts);
    int64_t total = 0, offset = 0;
    for (size_t r = 0; r < counts.size(); ++r) {
      if (int(r) < rank_) offset += counts[r];
      total += counts[r];
    }
    if (cb_.reduce_scatter && !cb_.reduce_scatter.is_none()) {
      call(site, "reduce_scatter", [&] {
        cb_.reduce_scatter(view(send, total, t), view(recv, counts[size_t(rank_)], t), pyb::cast(counts),
                           dist::reduce_op_name(op));
      });
      return;
    }
    // Without a reduce_scatter callable: all-reduce a copy, keep this rank's piece.
    std::vector<char> tmp(size_t(total) * dtype_size(t));
    all_reduce(send, tmp.data(), total, t, op, site);
    std::memcpy(recv, tmp.data() + size_t(offset) * dtype_size(t), size_t(counts[size_t(rank_)]) * dtype_size(t));
  }
  void broadcast(void* buf, int64_t count, DType t, int root, const CallSite& site) override {
    call(site, "broadcast", [&] { cb_.broadcast(view(buf, count, t), root); });
  }
  void barrier(const CallSite& site) override {
    if (cb_.barrier && !cb_.barrier.is_none()) {
      call(site, "barrier", [&] { cb_.barrier(); });
      return;
    }
    int32_t one = 1;
    all_reduce(&one, &one, 1, DType::I32, ReduceOp::Sum, site);
  }
  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) override {
    std::shared_ptr<Communicator> sub;
    call({}, "split", [&] {
      if (!cb_.split || cb_.split.is_none())
        throw Error("this callback communicator has no split callable (Communicator.from_callbacks(split=...))");
      sub = cb_.split(color, key, name).cast<std::shared_ptr<Communicator>>();
    });
    return forward_to(std::move(sub));
  }

 private:
  // Runs a callback with the GIL held; a Python exception becomes an Error naming the call.
  template <class F>
  void call(const CallSite& site, const char* what, F&& f) {
    std::string msg;
    {
      pyb::gil_scoped_acquire gil;
      try {
        f();
        return;
      } catch (pyb::error_already_set& e) {
        msg = std::string("Python callback ") + what + " failed: " + e.what();
      } catch (const std::exception& e) {
        msg = std::string("Python callback ") + what + " failed: " + e.what();
      }
    }
    fail(site, msg);
  }

  int rank_, size_;
  Callbacks cb_;
  std::string backend_, name_;
};

class Forwarding final : public Communicator {
 public:
  explicit Forwarding(std::shared_ptr<Communicator> t) : t_(std::move(t)) {
    if (!t_) throw Error("split: the Python callable returned None instead of a Communicator");
  }
  int rank() const override { return t_->rank(); }
  int size() const override { return t_->size(); }
  std::string backend() const override { return t_->backend(); }
  std::string group_name() const override { return t_->group_name(); }
  int world_rank_of(int r) const override { return t_->world_rank_of(r); }
  void all_reduce(const void* s, void* r, int64_t n, DType t, ReduceOp op, const CallSite& site) override {
    t_->all_reduce(s, r, n, t, op, site);
  }
  void all_gather(const void* s, void* r, const std::vector<int64_t>& c, DType t, const CallSite& site) override {
    t_->all_gather(s, r, c, t, site);
  }
  void reduce_scatter(const void* s, void* r, const std::vector<int64_t>& c, DType t, ReduceOp op,
                      const CallSite& site) override {
    t_->reduce_scatter(s, r, c, t, op, site);
  }
  void broadcast(void* b, int64_t n, DType t, int root, const CallSite& site) override {
    t_->broadcast(b, n, t, root, site);
  }
  void barrier(const CallSite& site) override { t_->barrier(site); }
  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) override {
    return t_->split(color, key, name);
  }
  Communicator& group(const std::string& name) override { return t_->group(name); }

 private:
  std::shared_ptr<Communicator> t_;
};

}  // namespace

std::unique_ptr<dist::Communicator> make_callback_communicator(int rank, int size, Callbacks cb,
                                                               const std::string& backend, const std::string& name) {
  return std::make_unique<CallbackCommunicator>(rank, size, std::move(cb), backend, name);
}

std::unique_ptr<dist::Communicator> forward_to(std::shared_ptr<dist::Communicator> target) {
  return std::make_unique<Forwarding>(std::move(target));
}

}  // namespace shardrt::py
