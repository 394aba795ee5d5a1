// One-shot all-reduce over peer memory, for the small all-reduce messages of decode.
//
// Every rank of a group owns one device buffer that every other rank of the group maps
// (CUDA IPC): [flags][slot 0][slot 1]. A call is ONE kernel on each rank:
//   1. each block copies its range of this rank's input into this rank's slot (the slot of
//      the call's epoch parity);
//   2. it signals every rank of the group: a release store (system scope, after a system
//      fence) of the epoch into that rank's flag for (parity, block, this rank);
//   3. it waits, spinning with acquire loads on its own flags, until every rank's block of
//      the same range has signalled (a %globaltimer deadline turns a missing rank into an
//      error word instead of a hang);
//   4. it reads that range from every rank's slot, in rank order, accumulates in fp32 and
//      writes its output: every rank computes the same sum in the same order, so every rank
//      gets identical bits.
// Two slots by epoch parity: a rank can start call k+1 (and overwrite its slot of parity
// (k+1) % 2) only after its call k completed, which needed every rank's signal of call k,
// which every rank gave after its call k-1 (the last reader of that slot) completed. The
// epoch lives in device memory (the last block of a call advances it), so calls are
// stream-ordered, never synchronise the host, and capture into CUDA graphs; graph replays
// and eager calls may interleave.
//
// The path exists for a group when its ranks are on one host and their GPUs reach each
// other (the same GPU, or peer access both ways); every rank agrees on that through the
// host communicator. DeviceComm (device_comm.h) takes it per call: float dtypes
// (fp32/fp16/bf16), sum/max/min/prod, message bytes <= the threshold; larger messages and
// other dtypes go to NCCL (or the staged path).
//
// Settings (environment, read when a DeviceComm sets a group up; ranks agree on the
// smallest threshold and on "off" when any rank has it off):
//   SHARDRT_PEER_ALLREDUCE=0           the path is never used
//   SHARDRT_PEER_ALLREDUCE_MAX_BYTES=N the largest message it takes (default 256 KiB; at
//                                      most 4 MiB; each rank holds 2 N + 4 KiB for it)
//
// This header needs no CUDA headers: `inspect` (built with or without CUDA) states the rule.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "shardrt/dtype.h"

struct CUstream_st;

namespace shardrt::dist {
class Communicator;
enum class ReduceOp;
}  // namespace shardrt::dist

namespace shardrt::cuda {

constexpr size_t kPeerAllReduceDefaultMaxBytes = size_t(256) << 10;
constexpr size_t kPeerAllReduceLimitBytes = size_t(4) << 20;
constexpr int kPeerAllReduceMaxRanks = 8;

struct PeerAllReduceSettings {
  bool enabled = true;
  size_t max_bytes = kPeerAllReduceDefaultMaxBytes;
};

// From SHARDRT_PEER_ALLREDUCE and SHARDRT_PEER_ALLREDUCE_MAX_BYTES (a bad value keeps the
// default; a threshold of 0 turns the path off).
inline PeerAllReduceSettings peer_allreduce_settings() {
  PeerAllReduceSettings s;
  if (const char* e = std::getenv("SHARDRT_PEER_ALLREDUCE"))
    if (std::string(e) == "0" || std::string(e) == "off" || std::string(e) == "false") s.enabled = false;
  if (const char* e = std::getenv("SHARDRT_PEER_ALLREDUCE_MAX_BYTES")) {
    char* end = nullptr;
    unsigned long long v = std::strtoull(e, &end, 10);
    if (end && end != e && *end == '\0') s.max_bytes = v > kPeerAllReduceLimitBytes ? kPeerAllReduceLimitBytes : size_t(v);
  }
  if (s.max_bytes == 0) s.enabled = false;
  return s;
}

// Whether the one-shot kernel reduces this dtype (fp32/fp16/bf16; any ReduceOp).
inline bool peer_allreduce_dtype(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// The rule as `inspect` states it (the choice at run time depends on the machine).
inline std::string peer_allreduce_rule(const PeerAllReduceSettings& s = peer_allreduce_settings()) {
  if (!s.enabled) return "NCCL (one-shot peer path off: SHARDRT_PEER_ALLREDUCE=0)";
  return "one-shot peer <= " + std::to_string(s.max_bytes) +
         " bytes (fp32/fp16/bf16) when the GPUs of the group reach each other, else NCCL";
}

class PeerAllReduce {
 public:
  // Collective over `group` (every rank calls it at the same point). Null when the path
  // is not available, `why` saying why; every rank of the group gets the same answer.
  // `device`: this rank's GPU (current device on return). `timeout_s`: how long a wait
  // for a peer may spin before the call gives up and sets the error word.
  static std::unique_ptr<PeerAllReduce> create(dist::Communicator& group, int device, const PeerAllReduceSettings& s,
                                               double timeout_s, std::string* why);
  ~PeerAllReduce();
  PeerAllReduce(const PeerAllReduce&) = delete;
  PeerAllReduce& operator=(const PeerAllReduce&) = delete;

  int size() const { return n_; }
  int rank() const { return rank_; }
  size_t max_bytes() const { return max_bytes_; }
  double timeout_s() const { return timeout_s_; }
  // Whether a call of `count` elements of `t` takes this path (the same answer on every
  // rank for the same arguments).
  bool takes(int64_t count, DType t) const {
    return count > 0 && peer_allreduce_dtype(t) && uint64_t(count) * dtype_size(t) <= max_bytes_;
  }
  // Enqueues the all-reduce on `stream`: no host synchronisation, capturable. send == recv
  // is allowed. Requires takes(count, t). Calls on one PeerAllReduce must be ordered on the
  // device (one stream, as the executor uses, or streams joined by events): the slot
  // parity argument above relies on call k completing before call k+1 starts.
  void run(const void* send, void* recv, int64_t count, DType t, dist::ReduceOp op, CUstream_st* stream);
  // After the work was waited for: -1 when every wait succeeded, else the group rank a
  // wait gave up on (the error word stays set: later calls skip their waits and their
  // results are garbage, so the owner must stop using this path).
  int failed_rank() const;

 private:
  PeerAllReduce() = default;
  void release();
  int n_ = 0, rank_ = 0, device_ = 0;
  size_t max_bytes_ = 0, slot_bytes_ = 0;
  double timeout_s_ = 60;
  void* own_ = nullptr;                           // this rank's IPC buffer
  void* peers_[kPeerAllReduceMaxRanks] = {};      // every rank's buffer as mapped here (own_ at rank_)
  bool opened_[kPeerAllReduceMaxRanks] = {};      // which of them this process opened (to close)
  unsigned* state_ = nullptr;                     // device: [epoch, blocks done, error]
  int* err_ = nullptr;                            // host-mapped error word (0: fine, 1 + group rank)
};

}  // namespace shardrt::cuda
