// DeviceComm (device_comm.h): the choice between NCCL and the staged path, both
// implementations, and the padding helpers for uneven chunks.
//
// NCCL takes equal counts per rank; torch.chunk's uneven chunks go through a scratch
// buffer of equal slots (the largest chunk each): AllGather gathers slots and compacts
// them, ReduceScatter pads its input into slots and reduces those (the padding lanes hold
// whatever the scratch held; their results are never read).
#include "backends/cuda/device_comm.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>

#include "backends/cuda/cuda_common.h"
#include "backends/cuda/host_identity.h"
#include "backends/cuda/nccl_loader.h"
#include "dist/bootstrap.h"

namespace shardrt::cuda {

// ---- padding helpers ----

namespace detail {

namespace {
// Copies chunk runs between the compact and padded layouts. A run of chunks that are all
// full (counts == slot), plus the first short chunk after them, is contiguous in both.
void move_chunks(const void* src, void* dst, const std::vector<int64_t>& counts, int64_t slot, size_t es,
                 cudaStream_t s, bool to_padded) {
  const char* a = static_cast<const char*>(src);
  char* b = static_cast<char*>(dst);
  int64_t compact_off = 0;
  size_t r = 0;
  while (r < counts.size()) {
    size_t start = r;
    int64_t run_compact = compact_off, run_elems = 0;
    while (r < counts.size()) {
      run_elems += counts[r];
      compact_off += counts[r];
      bool full = counts[r] == slot;
      ++r;
      if (!full) break;
    }
    if (run_elems == 0) continue;
    size_t bytes = size_t(run_elems) * es;
    size_t padded_b = size_t(int64_t(start) * slot) * es, compact_b = size_t(run_compact) * es;
    const void* from = a + (to_padded ? compact_b : padded_b);
    void* to = b + (to_padded ? padded_b : compact_b);
    SHARDRT_CUDA_CHECK(cudaMemcpyAsync(to, from, bytes, cudaMemcpyDeviceToDevice, s));
  }
}
}  // namespace

void pad_chunks(const void* compact, void* padded, const std::vector<int64_t>& counts, int64_t slot, size_t es,
                cudaStream_t stream) {
  move_chunks(compact, padded, counts, slot, es, stream, true);
}

void compact_chunks(const void* padded, void* compact, const std::vector<int64_t>& counts, int64_t slot, size_t es,
                    cudaStream_t stream) {
  move_chunks(padded, compact, counts, slot, es, stream, false);
}

}  // namespace detail

namespace {

bool stream_capturing(cudaStream_t s) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  SHARDRT_CUDA_CHECK(cudaStreamIsCapturing(s, &st));
  return st != cudaStreamCaptureStatusNone;
}

std::string describe(dist::Communicator& host, const dist::CallSite& site, int64_t bytes, const std::string& group) {
  return dist::describe_call(host.world_rank(), site, bytes, group);
}

void check_group_counts(dist::Communicator& g, const std::string& group, const dist::CallSite& site,
                        const std::vector<int64_t>& counts, int world_rank) {
  if (int(counts.size()) != g.size())
    throw Error(dist::describe_call(world_rank, site, -1, group) + ": " + std::to_string(counts.size()) +
                " per-rank counts given for a group of " + std::to_string(g.size()));
  for (int64_t c : counts)
    if (c < 0) throw Error(dist::describe_call(world_rank, site, -1, group) + ": negative per-rank count " + std::to_string(c));
}

// ---------------------------------------------------------------- NCCL ----

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::F32: return ncclFloat32;
    case DType::F16: return ncclFloat16;
    case DType::BF16: return ncclBfloat16;
    case DType::F64: return ncclFloat64;
    case DType::I64: return ncclInt64;
    case DType::I32: return ncclInt32;
    case DType::I8: return ncclInt8;
    case DType::U8:
    case DType::Bool: return ncclUint8;
    case DType::Undefined: break;
  }
  throw Error("collective on an undefined dtype");
}

ncclRedOp_t nccl_op(dist::ReduceOp op, DType t) {
  // bool bytes are 0/1: "or" is max, "and" is min (as the host communicators reduce them).
  if (t == DType::Bool) return (op == dist::ReduceOp::Sum || op == dist::ReduceOp::Max) ? ncclMax : ncclMin;
  switch (op) {
    case dist::ReduceOp::Sum: return ncclSum;
    case dist::ReduceOp::Max: return ncclMax;
    case dist::ReduceOp::Min: return ncclMin;
    case dist::ReduceOp::Prod: return ncclProd;
  }
  return ncclSum;
}

class NcclDeviceComm final : public DeviceComm {
 public:
  NcclDeviceComm(dist::Communicator& host, int device, const NcclApi* api) : DeviceComm(host, device, ""), api_(api) {}

  ~NcclDeviceComm() override {
    if (!aborted_)
      for (auto& [hg, g] : comms_) api_->CommDestroy(g.comm);
    // Scratch buffers (current and outgrown ones) are freed last: cudaFree waits for the
    // device, so work that used them has finished.
    if (ws_) cudaFree(ws_);
    for (void* p : retired_) cudaFree(p);
  }

  std::string backend() const override { return "nccl"; }
  bool capturable() const override { return true; }

  void prepare(const std::vector<std::string>& groups) override {
    for (const std::string& g : groups) get(g, nullptr, {"", "prepare"});
    prepare_peer(groups);
  }

  void all_reduce(const std::string& group, const void* send, void* recv, int64_t count, DType t, dist::ReduceOp op,
                  cudaStream_t stream, const dist::CallSite& site) override {
    dist::CallSite s = named(site, "AllReduce");
    if (peer_all_reduce(group, send, recv, count, t, op, stream, s)) return;
    Group& g = get(group, stream, s);
    if (count <= 0) return;
    note(s, group);
    check(api_->AllReduce(send, recv, size_t(count), nccl_type(t), nccl_op(op, t), g.comm, stream), s, group,
          count * int64_t(dtype_size(t)), "ncclAllReduce");
  }

  void all_gather(const std::string& group, const void* send, void* recv, const std::vector<int64_t>& counts, DType t,
                  cudaStream_t stream, const dist::CallSite& site) override {
    dist::CallSite s = named(site, "AllGather");
    Group& g = get(group, stream, s);
    check_group_counts(host_.group(group), group, s, counts, host_.world_rank());
    int64_t slot = *std::max_element(counts.begin(), counts.end()), total = 0;
    for (int64_t c : counts) total += c;
    if (slot == 0) return;
    note(s, group);
    size_t es = dtype_size(t);
    int64_t bytes = total * int64_t(es);
    ncclDataType_t nt = nccl_type(t);
    if (total == slot * g.size) {  // every chunk full: straight into recv
      check(api_->AllGather(send, recv, size_t(slot), nt, g.comm, stream), s, group, bytes, "ncclAllGather");
      return;
    }
    // Scratch: [send slot][size recv slots], each region 256-byte aligned.
    size_t slot_b = round256(size_t(slot) * es);
    char* ws = static_cast<char*>(scratch(slot_b + size_t(g.size) * size_t(slot) * es, stream, s, group));
    const void* my_send = send;
    int64_t mine = counts[size_t(g.rank)];
    if (mine < slot) {  // NCCL reads `slot` elements from every rank
      if (mine) SHARDRT_CUDA_CHECK(cudaMemcpyAsync(ws, send, size_t(mine) * es, cudaMemcpyDeviceToDevice, stream));
      my_send = ws;
    }
    char* padded = ws + slot_b;
    check(api_->AllGather(my_send, padded, size_t(slot), nt, g.comm, stream), s, group, bytes, "ncclAllGather");
    detail::compact_chunks(padded, recv, counts, slot, es, stream);
  }

  void reduce_scatter(const std::string& group, const void* send, void* recv, const std::vector<int64_t>& counts,
                      DType t, dist::ReduceOp op, cudaStream_t stream, const dist::CallSite& site) override {
    dist::CallSite s = named(site, "ReduceScatter");
    Group& g = get(group, stream, s);
    check_group_counts(host_.group(group), group, s, counts, host_.world_rank());
    int64_t slot = *std::max_element(counts.begin(), counts.end()), total = 0;
    for (int64_t c : counts) total += c;
    if (slot == 0) return;
    note(s, group);
    size_t es = dtype_size(t);
    int64_t bytes = total * int64_t(es);
    ncclDataType_t nt = nccl_type(t);
    ncclRedOp_t no = nccl_op(op, t);
    if (total == slot * g.size) {
      check(api_->ReduceScatter(send, recv, size_t(slot), nt, no, g.comm, stream), s, group, bytes,
            "ncclReduceScatter");
      return;
    }
    // Scratch: [size send slots][recv slot].
    size_t pad_b = round256(size_t(g.size) * size_t(slot) * es);
    char* ws = static_cast<char*>(scratch(pad_b + size_t(slot) * es, stream, s, group));
    detail::pad_chunks(send, ws, counts, slot, es, stream);
    int64_t mine = counts[size_t(g.rank)];
    void* out = mine == slot ? recv : static_cast<void*>(ws + pad_b);
    check(api_->ReduceScatter(ws, out, size_t(slot), nt, no, g.comm, stream), s, group, bytes, "ncclReduceScatter");
    if (out != recv && mine)
      SHARDRT_CUDA_CHECK(cudaMemcpyAsync(recv, out, size_t(mine) * es, cudaMemcpyDeviceToDevice, stream));
  }

  void broadcast(const std::string& group, void* buf, int64_t count, DType t, int root, cudaStream_t stream,
                 const dist::CallSite& site) override {
    dist::CallSite s = named(site, "Broadcast");
    Group& g = get(group, stream, s);
    if (root < 0 || root >= g.size)
      throw Error(describe(host_, s, -1, group) + ": broadcast root " + std::to_string(root) + " is outside a group of " +
                  std::to_string(g.size));
    if (count <= 0) return;
    note(s, group);
    check(api_->Broadcast(buf, buf, size_t(count), nccl_type(t), root, g.comm, stream), s, group,
          count * int64_t(dtype_size(t)), "ncclBroadcast");
  }

  void wait_or_abort(cudaStream_t stream, const dist::CallSite& site) override {
    if (comms_.empty()) {  // no NCCL communicator: only peer-path waits, which time out themselves
      SHARDRT_CUDA_CHECK(cudaStreamSynchronize(stream));
      if (std::string f = peer_failure(); !f.empty()) throw Error(f);
      return;
    }
    using clock = std::chrono::steady_clock;
    double limit = dist::collective_timeout_seconds();
    auto start = clock::now();
    auto deadline = start + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(limit));
    // Spin (yielding) for the first milliseconds, where most waits end; then sleep briefly
    // so that a long wait does not hold a core.
    auto spin_until = start + std::chrono::milliseconds(20);
    for (;;) {
      cudaError_t q = cudaStreamQuery(stream);
      // A wait of the one-shot peer path that gave up (it ends its kernel itself): the
      // ranks' collectives are out of step, so NCCL's are aborted too.
      if (std::string f = peer_failure(); !f.empty()) {
        abort_all();
        throw Error(f + "; the NCCL communicators were aborted");
      }
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) SHARDRT_CUDA_CHECK(q);
      for (auto& [hg, g] : comms_) {
        const std::string& name = g.name;
        ncclResult_t e = ncclSuccess;
        ncclResult_t r = api_->CommGetAsyncError(g.comm, &e);
        if (r != ncclSuccess) e = r;
        if (e != ncclSuccess && e != ncclInProgress) {
          std::string what = blame(site) + ": NCCL reported an error in group " + name + ": " + api_->GetErrorString(e);
          abort_all();
          throw Error(what + "; the NCCL communicators were aborted");
        }
      }
      auto now = clock::now();
      if (now >= deadline) {
        char secs[32];
        std::snprintf(secs, sizeof secs, "%g", limit);
        std::string what = blame(site) + ": did not complete within " + secs +
                           " s (SHARDRT_COLLECTIVE_TIMEOUT); a peer rank may have died or stopped";
        abort_all();
        throw Error(what + "; the NCCL communicators were aborted");
      }
      if (now < spin_until)
        sched_yield();
      else
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

 private:
  struct Group {
    ncclComm_t comm = nullptr;
    int size = 0, rank = 0;
    std::string name;  // the first name it was asked by
  };

  static size_t round256(size_t b) { return (b + 255) / 256 * 256; }

  static dist::CallSite named(const dist::CallSite& site, const char* name) {
    dist::CallSite s = site;
    if (s.collective.empty()) s.collective = name;
    return s;
  }

  void note(const dist::CallSite& s, const std::string& group) {
    last_site_ = s;
    last_group_ = group;
  }

  // "rank R: collective C of node 'X' (group G)": the waiter's site when it names a
  // collective, else the last one enqueued (the likeliest to be stuck).
  std::string blame(const dist::CallSite& site) {
    if (!site.collective.empty() && site.collective != "run")
      return describe(host_, site, -1, last_group_.empty() ? "?" : last_group_);
    if (!last_site_.collective.empty()) return describe(host_, last_site_, -1, last_group_);
    return describe(host_, site, -1, "?");
  }

  void abort_all() {
    if (aborted_) return;
    aborted_ = true;
    for (auto& [hg, g] : comms_) api_->CommAbort(g.comm);
  }

  void check(ncclResult_t r, const dist::CallSite& s, const std::string& group, int64_t bytes, const char* call) {
    if (r == ncclSuccess || r == ncclInProgress) return;
    throw Error(describe(host_, s, bytes, group) + ": " + call + " failed: " + api_->GetErrorString(r));
  }

  // The group's NCCL communicator, created on first use: the group's rank 0 makes the
  // unique id and the host group broadcasts it. Collective over the group.
  Group& get(const std::string& name, cudaStream_t stream, const dist::CallSite& s) {
    if (aborted_)
      throw Error(describe(host_, s, -1, name) + ": the NCCL communicators were aborted after an earlier failure");
    auto it = by_name_.find(name);
    if (it != by_name_.end()) return *it->second;
    dist::Communicator& hg = host_.group(name);
    // A plain communicator is its own "tp" and "world": one NCCL communicator serves both.
    auto same = comms_.find(&hg);
    if (same != comms_.end()) return *(by_name_[name] = &same->second);
    if (stream && stream_capturing(stream))
      throw Error(describe(host_, s, -1, name) + ": the NCCL communicator of group " + name +
                  " would be created during CUDA graph capture; run once eagerly before capturing (or call "
                  "DeviceComm::prepare)");
    ncclUniqueId id;
    std::memset(&id, 0, sizeof id);
    // The id travels with a status byte, so that a failure on rank 0 fails every rank
    // of the group here instead of leaving them in ncclCommInitRank.
    std::vector<uint8_t> msg(sizeof id + 1, 0);
    ncclResult_t idr = ncclSuccess;
    if (hg.rank() == 0) {
      idr = api_->GetUniqueId(&id);
      std::memcpy(msg.data(), &id, sizeof id);
      msg[sizeof id] = idr == ncclSuccess;
    }
    hg.broadcast(msg.data(), int64_t(msg.size()), DType::U8, 0, {s.node, "NcclBootstrap"});
    if (!msg[sizeof id])
      throw Error(describe(host_, s, -1, name) + ": ncclGetUniqueId failed on the group's rank 0" +
                  (hg.rank() == 0 ? std::string(": ") + api_->GetErrorString(idr) : std::string()));
    std::memcpy(&id, msg.data(), sizeof id);
    SHARDRT_CUDA_CHECK(cudaSetDevice(device_));
    Group g;
    g.size = hg.size();
    g.rank = hg.rank();
    ncclResult_t r = api_->CommInitRank(&g.comm, g.size, id, g.rank);
    if (r != ncclSuccess)
      throw Error(describe(host_, s, -1, name) + ": ncclCommInitRank (rank " + std::to_string(g.rank) + " of " +
                  std::to_string(g.size) + ", device " + std::to_string(device_) + ") failed: " +
                  api_->GetErrorString(r));
    g.name = name;
    Group& stored = comms_.emplace(&hg, g).first->second;
    by_name_[name] = &stored;
    return stored;
  }

  // Padding scratch. Grows only outside capture; outgrown buffers stay allocated until
  // the DeviceComm goes, because a CUDA graph captured earlier may still use them.
  void* scratch(size_t bytes, cudaStream_t stream, const dist::CallSite& s, const std::string& group) {
    if (bytes <= ws_bytes_) return ws_;
    if (stream_capturing(stream))
      throw Error(describe(host_, s, -1, group) + ": needs " + std::to_string(bytes) +
                  " bytes of padding scratch during CUDA graph capture, more than its eager run did (" +
                  std::to_string(ws_bytes_) + "); run eagerly at this shape before capturing");
    size_t grow = std::max(bytes, ws_bytes_ + ws_bytes_ / 2);
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, grow);
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw Error(describe(host_, s, -1, group) + ": out of GPU memory for " + std::to_string(grow) +
                  " bytes of collective padding scratch");
    }
    if (ws_) retired_.push_back(ws_);
    ws_ = p;
    ws_bytes_ = grow;
    return ws_;
  }

  const NcclApi* api_;
  std::map<const dist::Communicator*, Group> comms_;  // one per distinct host group
  std::map<std::string, Group*> by_name_;
  bool aborted_ = false;
  dist::CallSite last_site_;
  std::string last_group_;
  void* ws_ = nullptr;
  size_t ws_bytes_ = 0;
  std::vector<void*> retired_;
};

// ------------------------------------------------------------- staged ----

class StagedDeviceComm final : public DeviceComm {
 public:
  StagedDeviceComm(dist::Communicator& host, int device, std::string reason)
      : DeviceComm(host, device, std::move(reason)) {
    SHARDRT_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  }
  ~StagedDeviceComm() override {
    if (done_) {
      cudaEventSynchronize(done_);
      cudaEventDestroy(done_);
    }
    if (hsend_) cudaFreeHost(hsend_);
    if (hrecv_) cudaFreeHost(hrecv_);
  }

  std::string backend() const override { return "mpi-staged"; }
  bool capturable() const override { return false; }

  void all_reduce(const std::string& group, const void* send, void* recv, int64_t count, DType t, dist::ReduceOp op,
                  cudaStream_t stream, const dist::CallSite& site) override {
    if (peer_all_reduce(group, send, recv, count, t, op, stream, site)) return;
    dist::Communicator& g = host_.group(group);
    if (count <= 0) return;
    size_t bytes = size_t(count) * dtype_size(t);
    begin(stream, site, group, bytes, 0);
    to_host(hsend_, send, bytes, stream);
    g.all_reduce(hsend_, hsend_, count, t, op, site);  // in place: one staging buffer
    to_device(recv, hsend_, bytes, stream);
  }

  void all_gather(const std::string& group, const void* send, void* recv, const std::vector<int64_t>& counts, DType t,
                  cudaStream_t stream, const dist::CallSite& site) override {
    dist::Communicator& g = host_.group(group);
    check_group_counts(g, group, site, counts, host_.world_rank());
    int64_t total = 0;
    for (int64_t c : counts) total += c;
    if (total == 0) return;
    size_t es = dtype_size(t);
    size_t mine = size_t(counts[size_t(g.rank())]) * es, all = size_t(total) * es;
    begin(stream, site, group, mine, all);
    to_host(hsend_, send, mine, stream);
    g.all_gather(hsend_, hrecv_, counts, t, site);
    to_device(recv, hrecv_, all, stream);
  }

  void reduce_scatter(const std::string& group, const void* send, void* recv, const std::vector<int64_t>& counts,
                      DType t, dist::ReduceOp op, cudaStream_t stream, const dist::CallSite& site) override {
    dist::Communicator& g = host_.group(group);
    check_group_counts(g, group, site, counts, host_.world_rank());
    int64_t total = 0;
    for (int64_t c : counts) total += c;
    if (total == 0) return;
    size_t es = dtype_size(t);
    size_t mine = size_t(counts[size_t(g.rank())]) * es, all = size_t(total) * es;
    begin(stream, site, group, all, mine);
    to_host(hsend_, send, all, stream);
    g.reduce_scatter(hsend_, hrecv_, counts, t, op, site);
    to_device(recv, hrecv_, mine, stream);
  }

  void broadcast(const std::string& group, void* buf, int64_t count, DType t, int root, cudaStream_t stream,
                 const dist::CallSite& site) override {
    dist::Communicator& g = host_.group(group);
    if (count <= 0) return;
    size_t bytes = size_t(count) * dtype_size(t);
    begin(stream, site, group, bytes, 0);
    to_host(hsend_, buf, bytes, stream);
    g.broadcast(hsend_, count, t, root, site);
    to_device(buf, hsend_, bytes, stream);
  }

  void wait_or_abort(cudaStream_t stream, const dist::CallSite&) override {
    SHARDRT_CUDA_CHECK(cudaStreamSynchronize(stream));
    if (std::string f = peer_failure(); !f.empty()) throw Error(f);
  }

 private:
  // Refuses capture (host round trips cannot be captured), waits for the previous
  // collective's copy back (the staging buffers are reused), grows the pinned buffers.
  void begin(cudaStream_t stream, const dist::CallSite& site, const std::string& group, size_t send_b, size_t recv_b) {
    if (stream_capturing(stream))
      throw Error(describe(host_, site, -1, group) + ": collectives go through MPI with host copies here (" + reason_ +
                  "), which a CUDA graph cannot capture; run this engine without graph capture");
    SHARDRT_CUDA_CHECK(cudaEventSynchronize(done_));
    grow(hsend_, send_cap_, send_b);
    grow(hrecv_, recv_cap_, recv_b);
  }

  static void grow(void*& p, size_t& cap, size_t need) {
    if (need <= cap) return;
    size_t n = std::max(need, cap + cap / 2);
    if (p) SHARDRT_CUDA_CHECK(cudaFreeHost(p));
    p = nullptr;
    cap = 0;
    SHARDRT_CUDA_CHECK(cudaMallocHost(&p, n));
    cap = n;
  }

  static void to_host(void* h, const void* d, size_t bytes, cudaStream_t stream) {
    if (bytes) SHARDRT_CUDA_CHECK(cudaMemcpyAsync(h, d, bytes, cudaMemcpyDeviceToHost, stream));
    SHARDRT_CUDA_CHECK(cudaStreamSynchronize(stream));  // the host collective reads it next
  }

  void to_device(void* d, const void* h, size_t bytes, cudaStream_t stream) {
    if (bytes) SHARDRT_CUDA_CHECK(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, stream));
    SHARDRT_CUDA_CHECK(cudaEventRecord(done_, stream));
  }

  cudaEvent_t done_ = nullptr;
  void* hsend_ = nullptr;
  void* hrecv_ = nullptr;
  size_t send_cap_ = 0, recv_cap_ = 0;
};

// ------------------------------------------------------------- choice ----

// What each rank tells the others at creation: where its GPU is and whether it can use NCCL.
struct Identity {
  char host[96];   // hostname + boot id: bus ids repeat across machines
  char bus[32];    // PCI bus id of the device
  uint8_t nccl_ok;
  char why[127];   // why not, when not
};
static_assert(sizeof(Identity) == 256, "fixed record size for the exchange");

}  // namespace

// ---------------------------------------------------- one-shot peer path ----

PeerAllReduce* DeviceComm::peer(const std::string& group, cudaStream_t stream) {
  auto it = peer_by_name_.find(group);
  if (it != peer_by_name_.end()) return it->second->p.get();
  dist::Communicator& hg = host_.group(group);
  auto same = peer_groups_.find(&hg);  // "tp" and "world" of a plain communicator are one group
  if (same != peer_groups_.end()) return (peer_by_name_[group] = &same->second)->p.get();
  // Set-up allocates and synchronises: never during capture. Every rank captures at the
  // same point, so every rank declines alike, and a later eager call sets the group up.
  if (stream && stream_capturing(stream)) return nullptr;
  PeerGroup pg;
  pg.name = group;
  pg.p = PeerAllReduce::create(hg, device_, peer_allreduce_settings(), dist::collective_timeout_seconds(), &pg.why);
  if (const char* v = std::getenv("SHARDRT_VERBOSE"); v && *v && std::string(v) != "0" && hg.rank() == 0) {
    if (pg.p)
      std::fprintf(stderr, "shardrt: group %s (%d ranks): all-reduce of fp32/fp16/bf16 up to %zu bytes takes the "
                   "one-shot peer path, larger ones %s\n", group.c_str(), hg.size(), pg.p->max_bytes(), backend().c_str());
    else
      std::fprintf(stderr, "shardrt: group %s (%d ranks): all-reduce takes %s (no one-shot peer path: %s)\n",
                   group.c_str(), hg.size(), backend().c_str(), pg.why.c_str());
  }
  PeerGroup& stored = peer_groups_.emplace(&hg, std::move(pg)).first->second;
  peer_by_name_[group] = &stored;
  return stored.p.get();
}

void DeviceComm::prepare_peer(const std::vector<std::string>& groups) {
  for (const std::string& g : groups) peer(g, nullptr);
}

bool DeviceComm::peer_all_reduce(const std::string& group, const void* send, void* recv, int64_t count, DType t,
                                 dist::ReduceOp op, cudaStream_t stream, const dist::CallSite& site) {
  if (count <= 0) return false;
  PeerAllReduce* p = peer(group, stream);
  if (!p || !p->takes(count, t)) return false;
  dist::CallSite s = site;
  if (s.collective.empty()) s.collective = "AllReduce";
  if (peer_failed_)
    throw Error(describe(host_, s, count * int64_t(dtype_size(t)), group) +
                ": the one-shot peer all-reduce gave up on a peer earlier; the ranks' collectives are out of step");
  p->run(send, recv, count, t, op, stream);
  peer_by_name_[group]->last = s;
  return true;
}

std::string DeviceComm::peer_failure() {
  for (auto& [hg, pg] : peer_groups_) {
    if (!pg.p) continue;
    int r = pg.p->failed_rank();
    if (r < 0) continue;
    peer_failed_ = true;
    char secs[32];
    std::snprintf(secs, sizeof secs, "%g", pg.p->timeout_s());  // as it was when the group was set up
    dist::CallSite s = pg.last.collective.empty() ? dist::CallSite{"", "AllReduce"} : pg.last;
    return describe(host_, s, -1, pg.name) + ": the one-shot peer all-reduce waited more than " + secs +
           " s (SHARDRT_COLLECTIVE_TIMEOUT) for rank " + std::to_string(hg->world_rank_of(r)) +
           "; a peer rank may have died or stopped";
  }
  return "";
}

std::string DeviceComm::all_reduce_path(const std::string& group, int64_t count, DType t) {
  PeerAllReduce* p = peer(group, nullptr);
  return p && p->takes(count, t) ? "one-shot peer" : backend();
}

std::string DeviceComm::peer_unavailable_reason(const std::string& group) {
  peer(group, nullptr);
  return peer_by_name_.at(group)->why;
}

int DeviceComm::select_local_device() {
  int n = 0;
  SHARDRT_CUDA_CHECK(cudaGetDeviceCount(&n));
  int cur = 0;
  SHARDRT_CUDA_CHECK(cudaGetDevice(&cur));
  // A device other than 0 is a choice the process made; 0 is also the default, so it is
  // replaced by the local rank's device (a process that really wants device 0 on local
  // rank k should narrow CUDA_VISIBLE_DEVICES instead).
  if (cur != 0 || n <= 1) return cur;
  int local = dist::detect_launch().local_rank;
  int dev = local % n;
  if (dev != cur) SHARDRT_CUDA_CHECK(cudaSetDevice(dev));
  return dev;
}

bool DeviceComm::nccl_loadable(std::string* why) { return nccl_api(why) != nullptr; }

std::unique_ptr<DeviceComm> DeviceComm::create_staged(dist::Communicator& host, cudaStream_t stream,
                                                      const std::string& reason) {
  int dev = 0;
  if (stream) {
    SHARDRT_CUDA_CHECK(cudaStreamGetDevice(stream, &dev));
    SHARDRT_CUDA_CHECK(cudaSetDevice(dev));
  } else {
    dev = select_local_device();
  }
  return std::make_unique<StagedDeviceComm>(host, dev, reason);
}

std::unique_ptr<DeviceComm> DeviceComm::create(dist::Communicator& host, cudaStream_t stream) {
  int dev = 0;
  if (stream) {
    SHARDRT_CUDA_CHECK(cudaStreamGetDevice(stream, &dev));
    SHARDRT_CUDA_CHECK(cudaSetDevice(dev));
  } else {
    dev = select_local_device();
  }

  Identity me{};
  copy_cstr(me.host, sizeof me.host, host_identity());
  char bus[32] = {0};
  SHARDRT_CUDA_CHECK(cudaDeviceGetPCIBusId(bus, int(sizeof bus) - 1, dev));
  copy_cstr(me.bus, sizeof me.bus, bus);
  std::string why;
  const char* env = std::getenv("SHARDRT_NCCL");
  if (env && std::string(env) == "0")
    why = "SHARDRT_NCCL=0";
  else
    nccl_loadable(&why);  // sets `why` when it fails
  me.nccl_ok = why.empty();
  copy_cstr(me.why, sizeof me.why, why);

  // Every rank decides from the same records, so every rank takes the same path.
  dist::Communicator& world = host.group("world");
  std::vector<Identity> all(size_t(world.size()));
  world.all_gather(&me, all.data(), int64_t(sizeof(Identity)), DType::U8, {"", "DeviceCommCreate"});
  std::string reason;
  for (size_t r = 0; r < all.size() && reason.empty(); ++r)
    if (!all[r].nccl_ok)
      reason = all.size() == 1 ? std::string(all[r].why)
                               : "rank " + std::to_string(world.world_rank_of(int(r))) + ": " + all[r].why;
  for (size_t a = 0; a < all.size() && reason.empty(); ++a)
    for (size_t b = a + 1; b < all.size() && reason.empty(); ++b)
      if (std::strncmp(all[a].host, all[b].host, sizeof all[a].host) == 0 &&
          std::strncmp(all[a].bus, all[b].bus, sizeof all[a].bus) == 0)
        reason = "ranks " + std::to_string(world.world_rank_of(int(a))) + " and " +
                 std::to_string(world.world_rank_of(int(b))) + " share GPU " + all[a].bus +
                 ", which NCCL refuses (give each rank its own GPU)";
  if (reason.empty()) return std::make_unique<NcclDeviceComm>(host, dev, nccl_api());
  if (host.world_rank() == 0)
    std::fprintf(stderr, "shardrt: NCCL not available (%s); collectives go through MPI with host copies\n",
                 reason.c_str());
  return std::make_unique<StagedDeviceComm>(host, dev, reason);
}

}  // namespace shardrt::cuda
