// The MPI communicator (OpenMPI). Every collective is non-blocking (MPI_Iallreduce, ...)
// and polled with MPI_Test against a deadline, so that a rank that died or hangs ends the
// job with a message naming the collective and the ranks it waited on, instead of a hang.
//
// fp16 and bf16 have no MPI datatype: reductions convert to fp32 and back (one rounding,
// as the kernels' fp32 accumulation does); gathers and broadcasts move them as 16-bit
// words. bool is a byte: sum/max reduce with MPI_MAX (or), prod/min with MPI_MIN (and).
#include <mpi.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "dist/communicator.h"

namespace shardrt::dist {

namespace {

// MPI initialised by shardrt is finalised at exit (an MPI process that exits without
// MPI_Finalize makes mpirun report the job as failed).
struct MpiRuntime {
  bool we_initialized = false;
  ~MpiRuntime() {
    int fin = 0;
    if (we_initialized && (MPI_Finalized(&fin), !fin)) MPI_Finalize();
  }
  static void ensure() {
    static MpiRuntime rt;
    static std::once_flag once;
    std::call_once(once, [] {
      int inited = 0;
      MPI_Initialized(&inited);
      if (inited) return;
      int provided = 0;
      // Collectives are issued by one thread at a time (the executing context's).
      if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
        throw Error("MPI_Init_thread failed");
      rt.we_initialized = true;
    });
  }
};

std::string mpi_error_string(int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(buf, size_t(len));
}

// The MPI datatype that carries `t` unreduced (gathers, broadcasts).
MPI_Datatype move_type(DType t) {
  switch (t) {
    case DType::F32: return MPI_FLOAT;
    case DType::F64: return MPI_DOUBLE;
    case DType::I64: return MPI_INT64_T;
    case DType::I32: return MPI_INT32_T;
    case DType::I8: return MPI_INT8_T;
    case DType::U8: return MPI_UINT8_T;
    case DType::Bool: return MPI_UINT8_T;
    case DType::F16:
    case DType::BF16: return MPI_UINT16_T;
    case DType::Undefined: break;
  }
  throw Error("collective on an undefined dtype");
}

MPI_Op mpi_op(ReduceOp op, DType t) {
  if (t == DType::Bool) return (op == ReduceOp::Sum || op == ReduceOp::Max) ? MPI_MAX : MPI_MIN;
  switch (op) {
    case ReduceOp::Sum: return MPI_SUM;
    case ReduceOp::Max: return MPI_MAX;
    case ReduceOp::Min: return MPI_MIN;
    case ReduceOp::Prod: return MPI_PROD;
  }
  return MPI_SUM;
}

bool is_half(DType t) { return t == DType::F16 || t == DType::BF16; }

std::vector<float> to_f32(const void* p, int64_t n, DType t) {
  std::vector<float> f(static_cast<size_t>(n));
  const uint16_t* h = static_cast<const uint16_t*>(p);
  if (t == DType::F16)
    for (int64_t i = 0; i < n; ++i) f[size_t(i)] = half_to_float(h[i]);
  else
    for (int64_t i = 0; i < n; ++i) f[size_t(i)] = bf16_to_float(h[i]);
  return f;
}

void from_f32(const std::vector<float>& f, void* p, DType t) {
  uint16_t* h = static_cast<uint16_t*>(p);
  if (t == DType::F16)
    for (size_t i = 0; i < f.size(); ++i) h[i] = float_to_half(f[i]);
  else
    for (size_t i = 0; i < f.size(); ++i) h[i] = float_to_bf16(f[i]);
}

std::string fmt_seconds(double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", s);
  return b;
}

std::string rank_list(const std::vector<int>& r) {
  std::string s;
  for (int x : r) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return s;
}

class MpiCommunicator final : public Communicator {
 public:
  // Takes ownership of `comm` (a duplicate made for shardrt).
  MpiCommunicator(MPI_Comm comm, std::string name) : comm_(comm), name_(std::move(name)) {
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    // A second channel for the liveness exchange after a timeout, apart from the
    // collectives' traffic.
    MPI_Comm_dup(comm_, &hb_);
    MPI_Comm_set_errhandler(hb_, MPI_ERRORS_RETURN);
    MPI_Group g, wg;
    MPI_Comm_group(comm_, &g);
    MPI_Comm_group(MPI_COMM_WORLD, &wg);
    std::vector<int> mine(static_cast<size_t>(size_)), world(static_cast<size_t>(size_));
    for (int i = 0; i < size_; ++i) mine[size_t(i)] = i;
    MPI_Group_translate_ranks(g, size_, mine.data(), wg, world.data());
    world_ranks_ = world;
    MPI_Group_free(&g);
    MPI_Group_free(&wg);
  }
  ~MpiCommunicator() override {
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) {
      MPI_Comm_free(&hb_);
      MPI_Comm_free(&comm_);
    }
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }
  std::string group_name() const override { return name_; }
  int world_rank_of(int r) const override { return r >= 0 && r < size_ ? world_ranks_[size_t(r)] : -1; }

  void all_reduce(const void* send, void* recv, int64_t count, DType t, ReduceOp op, const CallSite& site) override {
    CallSite s = named(site, "AllReduce");
    int n = to_int(s, count);
    int64_t bytes = count * int64_t(dtype_size(t));
    if (is_half(t)) {
      std::vector<float> f = to_f32(send, count, t);
      MPI_Request req;
      check(s, MPI_Iallreduce(MPI_IN_PLACE, f.data(), n, MPI_FLOAT, mpi_op(op, DType::F32), comm_, &req));
      wait(req, s, bytes);
      from_f32(f, recv, t);
      return;
    }
    MPI_Request req;
    check(s, MPI_Iallreduce(send == recv ? MPI_IN_PLACE : send, recv, n, move_type(t), mpi_op(op, t), comm_, &req));
    wait(req, s, bytes);
  }

  void all_gather(const void* send, void* recv, const std::vector<int64_t>& counts, DType t,
                  const CallSite& site) override {
    CallSite s = named(site, "AllGather");
    check_counts(s, counts);
    std::vector<int> cnt(static_cast<size_t>(size_)), displs(static_cast<size_t>(size_));
    int64_t off = 0;
    for (int r = 0; r < size_; ++r) {
      cnt[size_t(r)] = to_int(s, counts[size_t(r)]);
      displs[size_t(r)] = to_int(s, off);
      off += counts[size_t(r)];
    }
    MPI_Request req;
    check(s, MPI_Iallgatherv(send, cnt[size_t(rank_)], move_type(t), recv, cnt.data(), displs.data(), move_type(t),
                             comm_, &req));
    wait(req, s, off * int64_t(dtype_size(t)));
  }
  using Communicator::all_gather;

  void reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType t, ReduceOp op,
                      const CallSite& site) override {
    CallSite s = named(site, "ReduceScatter");
    check_counts(s, counts);
    std::vector<int> cnt(static_cast<size_t>(size_));
    int64_t total = 0;
    for (int r = 0; r < size_; ++r) {
      cnt[size_t(r)] = to_int(s, counts[size_t(r)]);
      total += counts[size_t(r)];
    }
    to_int(s, total);
    int64_t bytes = total * int64_t(dtype_size(t));
    MPI_Request req;
    if (is_half(t)) {
      std::vector<float> f = to_f32(send, total, t), o(static_cast<size_t>(counts[size_t(rank_)]));
      check(s, MPI_Ireduce_scatter(f.data(), o.data(), cnt.data(), MPI_FLOAT, mpi_op(op, DType::F32), comm_, &req));
      wait(req, s, bytes);
      from_f32(o, recv, t);
      return;
    }
    check(s, MPI_Ireduce_scatter(send, recv, cnt.data(), move_type(t), mpi_op(op, t), comm_, &req));
    wait(req, s, bytes);
  }

  void broadcast(void* buf, int64_t count, DType t, int root, const CallSite& site) override {
    CallSite s = named(site, "Broadcast");
    if (root < 0 || root >= size_)
      fail(s, "broadcast root " + std::to_string(root) + " is outside a group of " + std::to_string(size_));
    MPI_Request req;
    check(s, MPI_Ibcast(buf, to_int(s, count), move_type(t), root, comm_, &req));
    wait(req, s, count * int64_t(dtype_size(t)));
  }

  void barrier(const CallSite& site) override {
    CallSite s = named(site, "Barrier");
    MPI_Request req;
    check(s, MPI_Ibarrier(comm_, &req));
    wait(req, s, 0);
  }

  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) override {
    // MPI_Comm_split blocks without a deadline: a timed barrier first makes a lost rank end
    // the job with the usual message instead of hanging the split.
    barrier(CallSite{"", "Split"});
    MPI_Comm c;
    int rc = MPI_Comm_split(comm_, color, key, &c);
    if (rc != MPI_SUCCESS) fail(CallSite{"", "Split"}, mpi_error_string(rc));
    return std::make_unique<MpiCommunicator>(c, name);
  }

 private:
  static CallSite named(const CallSite& s, const char* dflt) {
    CallSite r = s;
    if (r.collective.empty()) r.collective = dflt;
    return r;
  }
  int to_int(const CallSite& s, int64_t v) const {
    if (v < 0 || v > INT_MAX) fail(s, "count " + std::to_string(v) + " does not fit MPI's int counts");
    return int(v);
  }
  void check(const CallSite& s, int rc) const {
    if (rc != MPI_SUCCESS) fail(s, mpi_error_string(rc));
  }

  // Polls `req` until it completes or the deadline passes. Spins first (a collective
  // between ranks of one host completes in microseconds), then yields, then sleeps, so
  // that waiting ranks leave the cores to the ones still computing.
  void wait(MPI_Request& req, const CallSite& s, int64_t bytes) {
    ++seq_;
    using clock = std::chrono::steady_clock;
    const double timeout = collective_timeout_seconds();
    const auto t0 = clock::now();
    const auto deadline = t0 + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(timeout));
    for (uint64_t it = 0;; ++it) {
      int done = 0;
      MPI_Status st;
      int rc = MPI_Test(&req, &done, &st);
      if (rc != MPI_SUCCESS)
        throw Error(describe_call(world_rank(), s, bytes, name_) + " failed: " + mpi_error_string(rc));
      if (done) return;
      if ((it & 63) != 0) continue;
      auto now = clock::now();
      if (now >= deadline) on_timeout(s, bytes, timeout);
      auto waited = now - t0;
      if (waited < std::chrono::microseconds(500)) continue;
      if (waited < std::chrono::milliseconds(20)) {
        sched_yield();
      } else {
        timespec ts{0, 200 * 1000};
        nanosleep(&ts, nullptr);
      }
    }
  }

  // Finds out which ranks are still alive and waiting in this collective: each rank that
  // timed out tells every other rank so on a separate channel, then listens for a grace
  // period. Ranks that do not answer are the ones the collective waited on (dead, stuck
  // before it, or much later than the others). Prints the message and ends the job.
  [[noreturn]] void on_timeout(const CallSite& s, int64_t bytes, double timeout) {
    const int tag = int(seq_ % 30000) + 1;
    uint64_t mine = seq_;
    std::vector<MPI_Request> sends;
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      MPI_Request q;
      if (MPI_Isend(&mine, 1, MPI_UINT64_T, r, tag, hb_, &q) == MPI_SUCCESS) sends.push_back(q);
    }
    double grace = std::min(5.0, std::max(1.0, timeout * 0.25));
    std::vector<char> alive(size_t(size_), 0);
    alive[size_t(rank_)] = 1;
    int heard = 1;
    auto end = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                       std::chrono::duration<double>(grace));
    while (heard < size_ && std::chrono::steady_clock::now() < end) {
      int flag = 0;
      MPI_Status st;
      if (MPI_Iprobe(MPI_ANY_SOURCE, tag, hb_, &flag, &st) != MPI_SUCCESS) break;
      if (!flag) {
        timespec ts{0, 1000 * 1000};
        nanosleep(&ts, nullptr);
        continue;
      }
      uint64_t theirs = 0;
      MPI_Recv(&theirs, 1, MPI_UINT64_T, st.MPI_SOURCE, tag, hb_, MPI_STATUS_IGNORE);
      if (theirs == seq_ && !alive[size_t(st.MPI_SOURCE)]) {
        alive[size_t(st.MPI_SOURCE)] = 1;
        ++heard;
      }
    }
    std::vector<int> missing, present;
    for (int r = 0; r < size_; ++r) (alive[size_t(r)] ? present : missing).push_back(world_rank_of(r));
    std::string msg = describe_call(world_rank(), s, bytes, name_) + " timed out after " + fmt_seconds(timeout) +
                      " s waiting for rank(s) ";
    if (!missing.empty()) {
      msg += rank_list(missing) + " (they did not answer within " + fmt_seconds(grace) +
             " s: dead, stuck before this collective, or far behind); rank(s) " + rank_list(present) +
             " reached it";
    } else {
      msg += "that could not be determined: every rank of the group (" + rank_list(present) +
             ") is waiting in its collective number " + std::to_string(seq_) +
             " (the ranks may have called different collectives or passed mismatched counts)";
    }
    msg += "; set SHARDRT_COLLECTIVE_TIMEOUT to change the limit";
    std::fprintf(stderr, "%s\n", msg.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::_Exit(1);
  }

  MPI_Comm comm_, hb_;
  std::string name_;
  int rank_ = 0, size_ = 1;
  std::vector<int> world_ranks_;
  uint64_t seq_ = 0;  // collectives issued on this communicator
};

}  // namespace

bool mpi_available() { return true; }

std::unique_ptr<Communicator> make_mpi_communicator() {
  MpiRuntime::ensure();
  MPI_Comm c;
  int rc = MPI_Comm_dup(MPI_COMM_WORLD, &c);
  if (rc != MPI_SUCCESS) throw Error("MPI_Comm_dup of the world failed: " + mpi_error_string(rc));
  return std::make_unique<MpiCommunicator>(c, "world");
}

}  // namespace shardrt::dist
