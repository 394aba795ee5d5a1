// One-shot peer all-reduce (peer_allreduce.h): the kernel, its launch, and the set-up that
// maps every rank's buffer into every other rank of the group.
#include "backends/cuda/peer_allreduce.h"


#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "backends/cuda/cuda_common.h"
#include "backends/cuda/host_identity.h"
#include "dist/communicator.h"

namespace shardrt::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 64;
constexpr int kMaxRanks = kPeerAllReduceMaxRanks;
// flags[parity][block][source rank], one u32 each: 4 KiB, which also keeps the slots
// behind it 16-byte (in fact 256-byte) aligned.
constexpr size_t kFlagBytes = size_t(2) * kMaxBlocks * kMaxRanks * sizeof(uint32_t);

struct Params {
  const char* slots[kMaxRanks];  // rank r's slot 0 as mapped here (slot 1 follows at + slot_bytes)
  uint32_t* flags[kMaxRanks];    // rank r's flags as mapped here
  const void* send;
  void* recv;
  int64_t count;
  int64_t packs_per_block;
  uint64_t slot_bytes;
  uint64_t timeout_ns;
  // [0] epoch of the last completed call, [1] blocks of this call done, [2] 0 or 1 + the
  // group rank a wait gave up on (read at every call's start: device memory, not host)
  unsigned* state;
  int* err;  // host-mapped copy of state[2], for the host to read without synchronising
  int n, rank;
};

__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__device__ __forceinline__ void store_release_sys(uint32_t* p, uint32_t v) {
  asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ uint32_t load_acquire_sys(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

enum Op { kSum, kMax, kMin, kProd };

template <int OP> __device__ __forceinline__ float combine(float a, float b) {
  if constexpr (OP == kSum) return a + b;
  else if constexpr (OP == kMax) return fmaxf(a, b);
  else if constexpr (OP == kMin) return fminf(a, b);
  else return a * b;
}

// One 16-byte pack of T: E elements.
template <class T> struct Pack {
  static constexpr int E = 16 / int(sizeof(T));
  union {
    uint4 v;
    T e[E];
  };
};

template <class T, int OP> __global__ void __launch_bounds__(kThreads) one_shot_kernel(Params p) {
  using P = Pack<T>;
  constexpr int E = P::E;
  __shared__ int skip_wait;
  const unsigned epoch = p.state[0] + 1;  // written by the previous call's kernel
  const unsigned parity = epoch & 1u;
  const int tid = int(threadIdx.x), b = int(blockIdx.x);
  const int64_t packs = (p.count + E - 1) / E;
  const int64_t begin = int64_t(b) * p.packs_per_block;
  const int64_t end = begin + p.packs_per_block < packs ? begin + p.packs_per_block : packs;
  const uint64_t slot_off = parity * p.slot_bytes;
  const T* send = static_cast<const T*>(p.send);
  T* recv = static_cast<T*>(p.recv);
  const bool send_vec = (reinterpret_cast<uintptr_t>(send) & 15) == 0;
  const bool recv_vec = (reinterpret_cast<uintptr_t>(recv) & 15) == 0;
  if (tid == 0) skip_wait = *reinterpret_cast<volatile unsigned*>(p.state + 2) != 0;  // an earlier call failed

  // 1. This rank's range into its own slot (the slots are 16-byte aligned).
  T* mine = reinterpret_cast<T*>(const_cast<char*>(p.slots[p.rank]) + slot_off);
  for (int64_t i = begin + tid; i < end; i += kThreads) {
    const int64_t e0 = i * E;
    if (send_vec && e0 + E <= p.count) {
      reinterpret_cast<uint4*>(mine)[i] = reinterpret_cast<const uint4*>(send)[i];
    } else {
      for (int64_t k = e0; k < p.count && k < e0 + E; ++k) mine[k] = send[k];
    }
  }
  __syncthreads();  // the block's copies happen before its signals (cumulativity of release)

  // 2. Signal every rank (this one too): its flag for (parity, block, this rank).
  const size_t flag_at = (size_t(parity) * kMaxBlocks + size_t(b)) * kMaxRanks;
  if (tid < p.n) {
    __threadfence_system();
    store_release_sys(p.flags[tid] + flag_at + p.rank, epoch);
  }
  // 3. Wait for every rank's signal of this block (thread r waits for rank r).
  if (tid < p.n && !skip_wait) {
    const uint32_t* f = p.flags[p.rank] + flag_at + tid;
    const uint64_t start = global_ns();
    unsigned spins = 0;
    while (load_acquire_sys(f) != epoch) {
      if ((++spins & 255u) == 0 && global_ns() - start > p.timeout_ns) {
        if (atomicCAS(p.state + 2, 0u, unsigned(1 + tid)) == 0u) {
          *reinterpret_cast<volatile int*>(p.err) = 1 + tid;
          __threadfence_system();
        }
        break;
      }
    }
  }
  __syncthreads();  // every rank's data of this range is visible to the whole block

  // 4. Reduce in rank order, in fp32; every rank does the same arithmetic.
  for (int64_t i = begin + tid; i < end; i += kThreads) {
    float acc[E];
    {
      P v;
      v.v = __ldcg(reinterpret_cast<const uint4*>(p.slots[0] + slot_off) + i);
#pragma unroll
      for (int k = 0; k < E; ++k) acc[k] = to_f(v.e[k]);
    }
    for (int r = 1; r < p.n; ++r) {
      P v;
      v.v = __ldcg(reinterpret_cast<const uint4*>(p.slots[r] + slot_off) + i);
#pragma unroll
      for (int k = 0; k < E; ++k) acc[k] = combine<OP>(acc[k], to_f(v.e[k]));
    }
    const int64_t e0 = i * E;
    if (recv_vec && e0 + E <= p.count) {
      P o;
#pragma unroll
      for (int k = 0; k < E; ++k) o.e[k] = from_f<T>(acc[k]);
      reinterpret_cast<uint4*>(recv)[i] = o.v;
    } else {
      for (int k = 0; k < E && e0 + k < p.count; ++k) recv[e0 + k] = from_f<T>(acc[k]);
    }
  }

  // 5. The last block to finish advances the epoch: every block read it at its start.
  __syncthreads();
  if (tid == 0) {
    __threadfence();
    unsigned done = atomicAdd(&p.state[1], 1u);
    if (done == gridDim.x - 1) {
      p.state[1] = 0;
      p.state[0] = epoch;
    }
  }
}

template <class T> void launch_typed(const Params& p, int blocks, dist::ReduceOp op, cudaStream_t s) {
  switch (op) {
    case dist::ReduceOp::Sum: one_shot_kernel<T, kSum><<<blocks, kThreads, 0, s>>>(p); break;
    case dist::ReduceOp::Max: one_shot_kernel<T, kMax><<<blocks, kThreads, 0, s>>>(p); break;
    case dist::ReduceOp::Min: one_shot_kernel<T, kMin><<<blocks, kThreads, 0, s>>>(p); break;
    case dist::ReduceOp::Prod: one_shot_kernel<T, kProd><<<blocks, kThreads, 0, s>>>(p); break;
  }
}

// ---- set-up ----

struct Identity {
  char host[96];  // hostname + boot id (bus ids repeat across machines)
  char bus[32];   // PCI bus id of the rank's GPU
  uint8_t enabled;
  uint8_t pad[7];
  uint64_t max_bytes;
};

struct Status {
  uint8_t ok;
  char why[127];
};

struct HandleMsg {
  uint8_t ok;
  char why[63];
  cudaIpcMemHandle_t handle;
};

std::string cuda_err(cudaError_t e) {
  cudaGetLastError();  // clear it: the failure is reported, not sticky
  return cudaGetErrorString(e);
}

// Every rank's status; the first failure's reason (the same on every rank) or "".
template <class M> std::string agree(dist::Communicator& g, const M& mine, std::vector<M>& all, const char* what) {
  all.assign(size_t(g.size()), M{});
  g.all_gather(&mine, all.data(), int64_t(sizeof(M)), DType::U8, {"", what});
  for (size_t r = 0; r < all.size(); ++r)
    if (!all[r].ok)
      return "rank " + std::to_string(g.world_rank_of(int(r))) + ": " +
             std::string(all[r].why, strnlen(all[r].why, sizeof all[r].why));
  return "";
}

}  // namespace

std::unique_ptr<PeerAllReduce> PeerAllReduce::create(dist::Communicator& g, int device, const PeerAllReduceSettings& s,
                                                     double timeout_s, std::string* why) {
  auto fail = [&](const std::string& w) -> std::unique_ptr<PeerAllReduce> {
    if (why) *why = w;
    return nullptr;
  };
  const int n = g.size(), me = g.rank();
  if (n < 2) return fail("a group of one rank");
  if (n > kMaxRanks) return fail("more than " + std::to_string(kMaxRanks) + " ranks in the group");
  SHARDRT_CUDA_CHECK(cudaSetDevice(device));

  // 1. Where every rank is, and its settings: agree on "off" and the smallest threshold.
  Identity id{};
  copy_cstr(id.host, sizeof id.host, host_identity());
  SHARDRT_CUDA_CHECK(cudaDeviceGetPCIBusId(id.bus, int(sizeof id.bus) - 1, device));
  id.enabled = s.enabled;
  id.max_bytes = s.max_bytes;
  std::vector<Identity> ids(static_cast<size_t>(n));
  g.all_gather(&id, ids.data(), int64_t(sizeof id), DType::U8, {"", "PeerAllReduceSetup"});
  uint64_t max_bytes = kPeerAllReduceLimitBytes;
  for (size_t r = 0; r < ids.size(); ++r) {
    if (!ids[r].enabled || ids[r].max_bytes == 0)
      return fail("off on rank " + std::to_string(g.world_rank_of(int(r))) + " (SHARDRT_PEER_ALLREDUCE)");
    max_bytes = std::min<uint64_t>(max_bytes, ids[r].max_bytes);
  }
  for (size_t r = 0; r < ids.size(); ++r)
    if (std::strncmp(ids[r].host, ids[0].host, sizeof id.host) != 0)
      return fail("the group spans more than one host");

  // 2. Whether this rank's GPU reaches every other rank's (both ways: every rank checks).
  Status st{1, {}};
  for (size_t r = 0; r < ids.size() && st.ok; ++r) {
    if (std::strncmp(ids[r].bus, id.bus, sizeof id.bus) == 0) continue;  // the same GPU
    int other = -1;
    cudaError_t e = cudaDeviceGetByPCIBusId(&other, ids[r].bus);
    int can = 0;
    if (e != cudaSuccess) {
      cuda_err(e);
      st.ok = 0;
      copy_cstr(st.why, sizeof st.why, std::string("GPU ") + ids[r].bus + " (of rank " + std::to_string(g.world_rank_of(int(r))) +
                                     ") is not visible here");
    } else if (cudaDeviceCanAccessPeer(&can, device, other) != cudaSuccess || !can) {
      cudaGetLastError();
      st.ok = 0;
      copy_cstr(st.why, sizeof st.why, std::string("GPU ") + id.bus + " cannot access GPU " + ids[r].bus);
    }
  }
  std::vector<Status> sts;
  if (std::string w = agree(g, st, sts, "PeerAllReduceSetup"); !w.empty()) return fail(w);

  // 3. Buffers: [flags][slot 0][slot 1], flags zeroed before any peer can see them.
  std::unique_ptr<PeerAllReduce> p(new PeerAllReduce());
  p->n_ = n;
  p->rank_ = me;
  p->device_ = device;
  p->max_bytes_ = size_t(max_bytes);
  p->slot_bytes_ = (size_t(max_bytes) + 255) / 256 * 256;
  p->timeout_s_ = timeout_s;
  HandleMsg hm{};
  hm.ok = 1;
  auto local_fail = [&](const std::string& w) {
    if (hm.ok) copy_cstr(hm.why, sizeof hm.why, w);
    hm.ok = 0;
  };
  cudaError_t e = cudaMalloc(&p->own_, kFlagBytes + 2 * p->slot_bytes_);
  if (e != cudaSuccess) {
    local_fail("cudaMalloc: " + cuda_err(e));
    p->own_ = nullptr;
  }
  if (hm.ok && (e = cudaMemset(p->own_, 0, kFlagBytes)) != cudaSuccess) local_fail("cudaMemset: " + cuda_err(e));
  if (hm.ok && (e = cudaMalloc(reinterpret_cast<void**>(&p->state_), 3 * sizeof(unsigned))) != cudaSuccess) {
    local_fail("cudaMalloc: " + cuda_err(e));
    p->state_ = nullptr;
  }
  if (hm.ok && (e = cudaMemset(p->state_, 0, 3 * sizeof(unsigned))) != cudaSuccess) local_fail("cudaMemset: " + cuda_err(e));
  if (hm.ok && (e = cudaHostAlloc(reinterpret_cast<void**>(&p->err_), sizeof(int), cudaHostAllocMapped)) != cudaSuccess) {
    local_fail("cudaHostAlloc: " + cuda_err(e));
    p->err_ = nullptr;
  }
  if (hm.ok) *p->err_ = 0;
  if (hm.ok && (e = cudaDeviceSynchronize()) != cudaSuccess) local_fail("cudaDeviceSynchronize: " + cuda_err(e));
  if (hm.ok && (e = cudaIpcGetMemHandle(&hm.handle, p->own_)) != cudaSuccess) local_fail("cudaIpcGetMemHandle: " + cuda_err(e));
  std::vector<HandleMsg> hms;
  if (std::string w = agree(g, hm, hms, "PeerAllReduceSetup"); !w.empty()) return fail(w);  // ~PeerAllReduce frees

  // 4. Map every other rank's buffer (IPC across processes works on one GPU too; only
  // this process's own handle cannot be opened, and needs not be).
  Status os{1, {}};
  p->peers_[me] = p->own_;
  for (int r = 0; r < n; ++r) {
    if (r == me) continue;
    void* q = nullptr;
    e = cudaIpcOpenMemHandle(&q, hms[size_t(r)].handle, cudaIpcMemLazyEnablePeerAccess);
    if (e != cudaSuccess) {
      if (os.ok) copy_cstr(os.why, sizeof os.why, "cudaIpcOpenMemHandle (rank " + std::to_string(g.world_rank_of(r)) + "): " + cuda_err(e));
      os.ok = 0;
      continue;
    }
    p->peers_[r] = q;
    p->opened_[r] = true;
  }
  if (std::string w = agree(g, os, sts, "PeerAllReduceSetup"); !w.empty()) return fail(w);
  return p;
}

void PeerAllReduce::release() {
  cudaSetDevice(device_);
  // A peer may read this rank's slot until its own call completes; the owner waited for
  // its stream (wait_or_abort) at the end of every run, and cudaFree waits for the device.
  for (int r = 0; r < kMaxRanks; ++r)
    if (opened_[r]) cudaIpcCloseMemHandle(peers_[r]);
  if (own_) cudaFree(own_);
  if (state_) cudaFree(state_);
  if (err_) cudaFreeHost(err_);
  own_ = nullptr;
  state_ = nullptr;
  err_ = nullptr;
}

PeerAllReduce::~PeerAllReduce() { release(); }

int PeerAllReduce::failed_rank() const {
  int v = err_ ? *reinterpret_cast<volatile int*>(err_) : 0;
  return v ? v - 1 : -1;
}

void PeerAllReduce::run(const void* send, void* recv, int64_t count, DType t, dist::ReduceOp op, CUstream_st* stream) {
  if (!takes(count, t))
    throw Error("one-shot peer all-reduce: " + std::to_string(count) + " elements of " + dtype_name(t) +
                " exceed its " + std::to_string(max_bytes_) + " bytes or are not fp32/fp16/bf16");
  Params p{};
  for (int r = 0; r < n_; ++r) {
    p.slots[r] = static_cast<const char*>(peers_[r]) + kFlagBytes;
    p.flags[r] = static_cast<uint32_t*>(peers_[r]);
  }
  p.send = send;
  p.recv = recv;
  p.count = count;
  p.slot_bytes = slot_bytes_;
  p.timeout_ns = uint64_t(std::max(0.001, timeout_s_) * 1e9);
  p.state = state_;
  p.err = err_;
  p.n = n_;
  p.rank = rank_;
  const int64_t packs = int64_t((uint64_t(count) * dtype_size(t) + 15) / 16);
  // About one pack per thread, at most kMaxBlocks blocks: the same on every rank (it
  // depends on the count alone), as the flags per block need.
  int64_t blocks = std::min<int64_t>(kMaxBlocks, (packs + kThreads - 1) / kThreads);
  if (blocks < 1) blocks = 1;
  p.packs_per_block = (packs + blocks - 1) / blocks;
  blocks = (packs + p.packs_per_block - 1) / p.packs_per_block;
  cudaStream_t s = stream;
  switch (t) {
    case DType::F32: launch_typed<float>(p, int(blocks), op, s); break;
    case DType::F16: launch_typed<__half>(p, int(blocks), op, s); break;
    case DType::BF16: launch_typed<__nv_bfloat16>(p, int(blocks), op, s); break;
    default: break;  // takes() refused it
  }
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace shardrt::cuda
