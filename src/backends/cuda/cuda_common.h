// The CUDA backend's kernel interface (device code and host launchers include this).
// A kernel gets device views of its inputs (null for omitted optional ones), host copies
// of the inputs the executor holds on the host (constants, shape values), and outputs
// already allocated with the dims the op's shape rule gave; it enqueues work on
// `ctx.stream` and never synchronises, allocates with cudaMalloc, or frees on the hot path
// (the whole engine is captured as a CUDA graph and replayed).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <typeindex>
#include <utility>
#include <vector>

#include "ir/graph.h"
#include "ir/op_schema.h"
#include "shardrt/engine.h"

namespace shardrt::dist {
class Communicator;
}

namespace shardrt::cuda {

class DeviceComm;  // device_comm.h: collectives on device buffers (NCCL, or staged through the host)

// Throws shardrt::Error naming the call, file and line when `e` is not cudaSuccess.
void check_cuda(cudaError_t e, const char* what, const char* file, int line);
#define SHARDRT_CUDA_CHECK(expr) ::shardrt::cuda::check_cuda((expr), #expr, __FILE__, __LINE__)

// A view of device memory: dtype, concrete dims, row-major contiguous.
struct DevTensor {
  DType dtype = DType::Undefined;
  Dims dims;
  void* data = nullptr;
  int64_t rank() const { return int64_t(dims.size()); }
  int64_t dim(int64_t i) const { return dims[size_t(i < 0 ? i + rank() : i)]; }
  int64_t numel() const { return shardrt::numel(dims); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  template <class T> T* as() const { return static_cast<T*>(data); }
};

// What one execution context owns for its kernels: the stream, library handles, a
// workspace, and per-node state that kernels keep between runs (GEMM tactics, padded
// weight copies, cuDNN plans). Not thread-safe: one context, one thread.
class Resources {
 public:
  Resources();
  ~Resources();
  Resources(const Resources&) = delete;
  Resources& operator=(const Resources&) = delete;

  cudaStream_t stream() const { return stream_; }
  int device() const { return device_; }
  const cudaDeviceProp& props() const { return props_; }
  // cuBLASLt handle (cublasLtHandle_t), created on first use.
  void* cublaslt();
  // cuDNN handle (cudnnHandle_t) bound to the stream, created on first use.
  void* cudnn();
  // Scratch valid until the next workspace() call: grows (cudaMalloc) only outside graph
  // capture, so the eager run that precedes every capture sizes it. Aligned to 256 bytes.
  // Growing waits for the queued work that may still use the old one: with set_drain's
  // function (the executor's, bounded by the collective timeout in a distributed run), else
  // a plain stream synchronise.
  void* workspace(size_t bytes);
  void set_drain(std::function<void()> drain) { drain_ = std::move(drain); }
  // True while the executor captures a CUDA graph: kernels must not synchronise, time
  // tactics, or grow buffers then.
  bool capturing() const { return capturing_; }
  void set_capturing(bool c) { capturing_ = c; }

  // Per-node state (one per node and state type), created by `make` on first request and
  // kept for the context's life.
  template <class T>
  T& node_state(const Node& n, const std::function<std::shared_ptr<T>()>& make) {
    auto& p = state_[{&n, std::type_index(typeid(T))}];
    if (!p) p = make();
    return *static_cast<T*>(p.get());
  }
  // Device memory owned by the context (freed with it); for node state, never per run.
  void* alloc_persistent(size_t bytes);
  // Drops every node's state (after a synchronise); for callers whose nodes go away.
  void forget_node_state();

  // Tactics (e.g. the cuBLASLt algorithm a GEMM chose by timing) as key=value strings per
  // node. A kernel records what it chose; the builder, when it builds for CUDA on a machine
  // with a GPU, runs the engine once at the profiles' opt shapes and stores what was
  // recorded in each node's "cuda_tactics" attribute (Strings, "key=value"), which the
  // kernel reads first at load (tactic_from_attr) before timing anything.
  void record_tactic(const Node& n, const std::string& key, const std::string& value) { tactics_[&n][key] = value; }
  const std::map<const Node*, std::map<std::string, std::string>>& tactics() const { return tactics_; }

 private:
  int device_ = 0;
  cudaDeviceProp props_{};
  cudaStream_t stream_ = nullptr;
  void* cublaslt_ = nullptr;
  void* cudnn_ = nullptr;
  void* ws_ = nullptr;
  size_t ws_bytes_ = 0;
  bool capturing_ = false;
  std::function<void()> drain_;
  // Per (node, state type): a fused node runs the kernels of the ops it fused, each with its own state.
  std::map<std::pair<const Node*, std::type_index>, std::shared_ptr<void>> state_;
  std::vector<void*> persistent_;
  std::map<const Node*, std::map<std::string, std::string>> tactics_;
};

// The value stored for `key` in the node's "cuda_tactics" attribute, or "" when none.
std::string tactic_from_attr(const Node& n, const std::string& key);

// Thrown by a kernel, before it enqueues anything, for a case it does not handle (a dtype,
// an attribute value, a rank) that the CPU backend does: the executor runs that node on the
// CPU instead for the input shapes at hand (no CUDA graph then), with one note per op.
struct Unsupported : GraphError {
  using GraphError::GraphError;
};

// Thrown by a kernel, before it enqueues anything, that needs the value of input `index` on
// the host (an axis, sizes, pads) and got no host copy: the executor reads it back from the
// GPU (a synchronisation; no CUDA graph for these input shapes) and launches it again.
struct NeedsHostValue : GraphError {
  NeedsHostValue(const std::string& msg, size_t i) : GraphError(msg), index(i) {}
  size_t index;
};

struct KernelCtx {
  const Node& node;
  std::vector<const DevTensor*> in;  // null for omitted optional inputs
  std::vector<const Tensor*> host;   // host copy of input i where the executor has one, else null
  std::vector<DevTensor*> out;       // null for omitted optional outputs
  Resources& res;
  dist::Communicator* comm = nullptr;  // host communicator; null outside a distributed run
  DeviceComm* dcomm = nullptr;         // device collectives (set with comm by the executor)
  cudaStream_t stream() const { return res.stream(); }
  const DevTensor* input(size_t i) const { return i < in.size() ? in[i] : nullptr; }
  const Tensor* host_input(size_t i) const { return i < host.size() ? host[i] : nullptr; }
  [[noreturn]] void fail(const std::string& msg) const { throw GraphError(node.describe() + ": " + msg); }
  [[noreturn]] void unsupported(const std::string& msg) const { throw Unsupported(node.describe() + ": " + msg); }
  // The host copy of input i (`what` names it), or NeedsHostValue.
  const Tensor& host_value(size_t i, const std::string& what) const {
    if (const Tensor* t = host_input(i)) return *t;
    throw NeedsHostValue(node.describe() + ": input " + std::to_string(i) + " (" + what + ") is needed on the host", i);
  }
};
using Kernel = std::function<void(KernelCtx&)>;

void register_kernel(const std::string& op, Kernel k);
const Kernel* find_kernel(const std::string& op);  // null when the CUDA backend lacks it
std::vector<std::string> kernel_names();

// Families (one registration function per file group); all_kernels.cu calls each once.
void register_all_kernels();
void register_elementwise_kernels();  // kernels_elementwise*.cu
void register_norm_kernels();         // kernels_norm*.cu, kernels_reduce*.cu, kernels_softmax.cu, kernels_rotary.cu
void register_data_kernels();         // kernels_data*.cu (transpose, concat, slice, gather, ...)
void register_gemm_kernels();         // gemm*.cpp/cu (cuBLASLt), conv*.cpp (cuDNN)
void register_attention_kernels();    // kernels_attention*.cu
void register_collective_kernels();   // kernels_collective*.cpp

// ---- helpers for device code ----
inline unsigned blocks_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return unsigned(b < 1 ? 1 : (b > 2147483647 ? 2147483647 : b));
}

template <class T> __host__ __device__ inline float to_f(T v) { return float(v); }
template <> __host__ __device__ inline float to_f<__half>(__half v) { return __half2float(v); }
template <> __host__ __device__ inline float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class T> __host__ __device__ inline T from_f(float v) { return T(v); }
template <> __host__ __device__ inline __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __host__ __device__ inline __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

}  // namespace shardrt::cuda

// Calls F.template operator()<T>() with T the device type of a float dtype
// (float, __half, __nv_bfloat16, double); fails naming the node for other dtypes.
#define SHARDRT_CUDA_FLOAT_DISPATCH(ctx, dtype, ...)                                        \
  switch (dtype) {                                                                            \
    case ::shardrt::DType::F32: { using T = float; __VA_ARGS__; break; }                  \
    case ::shardrt::DType::F16: { using T = __half; __VA_ARGS__; break; }                 \
    case ::shardrt::DType::BF16: { using T = __nv_bfloat16; __VA_ARGS__; break; }         \
    case ::shardrt::DType::F64: { using T = double; __VA_ARGS__; break; }                 \
    default: (ctx).fail(std::string("dtype ") + ::shardrt::dtype_name(dtype) + " is not supported on CUDA"); \
  }
