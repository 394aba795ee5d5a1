// The CUDA kernel registry, per-context resources, and eval_node for the per-op tests.
#include <cublasLt.h>
#include <cudnn.h>

#include <cstring>

#include "backends/kernel_registry.h"
#include "backends/cpu/cpu_kernels.h"
#include "backends/cuda/cuda_common.h"
#include "backends/cuda/conv_kernels.h"
#include "backends/cuda/cuda_eval.h"
#include "backends/cuda/device_memory.h"

namespace shardrt::cuda {

void check_cuda(cudaError_t e, const char* what, const char* file, int line) {
  if (e == cudaSuccess) return;
  const char* f = std::strrchr(file, '/');
  throw Error(std::string("CUDA error: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ") in " + what +
              " at " + (f ? f + 1 : file) + ":" + std::to_string(line));
}

using Registry = KernelRegistry<Kernel, register_all_kernels>;

void register_kernel(const std::string& op, Kernel k) { Registry::add(op, std::move(k)); }
const Kernel* find_kernel(const std::string& op) { return Registry::find(op); }
std::vector<std::string> kernel_names() { return Registry::names(); }

bool has_kernel(const std::string& op) { return find_kernel(op) != nullptr; }

void register_all_kernels() {
  register_elementwise_kernels();
  register_norm_kernels();
  register_data_kernels();
  register_gemm_kernels();
  register_attention_kernels();
  register_collective_kernels();
  register_conv_kernels();
}

bool device_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

std::string device_description() {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) return std::string("no usable GPU: ") + cudaGetErrorString(e);
  if (n == 0) return "no GPU found";
  int dev = 0;
  cudaGetDevice(&dev);
  cudaDeviceProp p{};
  cudaGetDeviceProperties(&p, dev);
  return std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
         std::to_string(p.multiProcessorCount) + " SMs)";
}

std::string tactic_from_attr(const Node& n, const std::string& key) {
  auto it = n.attrs.find("cuda_tactics");
  if (it == n.attrs.end()) return "";
  for (const std::string& kv : it->second.strings)
    if (kv.size() > key.size() && kv.compare(0, key.size(), key) == 0 && kv[key.size()] == '=')
      return kv.substr(key.size() + 1);
  return "";
}

// ---- Resources ----

Resources::Resources() {
  SHARDRT_CUDA_CHECK(cudaGetDevice(&device_));
  SHARDRT_CUDA_CHECK(cudaGetDeviceProperties(&props_, device_));
  SHARDRT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
}

Resources::~Resources() {
  if (stream_) cudaStreamSynchronize(stream_);
  if (cublaslt_) cublasLtDestroy(static_cast<cublasLtHandle_t>(cublaslt_));
  if (cudnn_) cudnnDestroy(static_cast<cudnnHandle_t>(cudnn_));
  state_.clear();  // node state may hold device memory of its own
  if (ws_) cudaFree(ws_);
  for (void* p : persistent_) cudaFree(p);
  if (stream_) cudaStreamDestroy(stream_);
}

void* Resources::cublaslt() {
  if (!cublaslt_) {
    cublasLtHandle_t h = nullptr;
    cublasStatus_t s = cublasLtCreate(&h);
    if (s != CUBLAS_STATUS_SUCCESS) throw Error(std::string("cuBLASLt could not start: ") + cublasLtGetStatusString(s));
    cublaslt_ = h;
  }
  return cublaslt_;
}

void* Resources::cudnn() {
  if (!cudnn_) {
    cudnnHandle_t h = nullptr;
    cudnnStatus_t s = cudnnCreate(&h);
    if (s != CUDNN_STATUS_SUCCESS) throw Error(std::string("cuDNN could not start: ") + cudnnGetErrorString(s));
    cudnnSetStream(h, stream_);
    cudnn_ = h;
  }
  return cudnn_;
}

void* Resources::workspace(size_t bytes) {
  bytes = (bytes + 255) / 256 * 256;
  if (bytes <= ws_bytes_) return ws_;
  if (capturing_)
    throw Error("internal: a kernel asked for " + std::to_string(bytes) + " bytes of workspace during CUDA graph "
                "capture, more than its eager run did (" + std::to_string(ws_bytes_) + ")");
  if (ws_) {
    if (drain_) drain_();
    else SHARDRT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    SHARDRT_CUDA_CHECK(cudaFree(ws_));
    ws_ = nullptr;
    ws_bytes_ = 0;
  }
  // The executor adds the node to an out-of-memory error.
  ws_ = device_alloc(bytes, "the kernels' workspace");
  ws_bytes_ = bytes;
  return ws_;
}

void* Resources::alloc_persistent(size_t bytes) {
  void* p = device_alloc(bytes, "a kernel's persistent buffer");
  persistent_.push_back(p);
  return p;
}

void Resources::forget_node_state() {
  cudaStreamSynchronize(stream_);
  state_.clear();
}

// ---- eval_node for tests ----

std::vector<Tensor> eval_node(const Node& n, const std::vector<const Tensor*>& ins) {
  const Kernel* k = find_kernel(n.op);
  if (!k) throw GraphError(n.describe() + ": the CUDA backend has no kernel for op '" + n.op + "'");
  std::vector<DType> types;
  std::vector<Dims> dims;
  cpu::infer_concrete(n, ins, types, dims);
  // One Resources per thread: handles and workspace are reused across calls (the node
  // state map is keyed by node address, so it is cleared per call).
  static thread_local std::unique_ptr<Resources> res;
  if (!res) res = std::make_unique<Resources>();
  std::vector<void*> bufs;
  auto dev_alloc = [&](size_t b) {
    void* p = nullptr;
    SHARDRT_CUDA_CHECK(cudaMalloc(&p, b ? b : 1));
    bufs.push_back(p);
    return p;
  };
  std::vector<DevTensor> din(ins.size()), dout(types.size());
  KernelCtx c{n, {}, {}, {}, *res, nullptr};
  try {
    for (size_t i = 0; i < ins.size(); ++i) {
      if (!ins[i]) {
        c.in.push_back(nullptr);
        c.host.push_back(nullptr);
        continue;
      }
      din[i] = DevTensor{ins[i]->dtype(), ins[i]->dims(), dev_alloc(ins[i]->nbytes())};
      SHARDRT_CUDA_CHECK(cudaMemcpy(din[i].data, ins[i]->raw(), ins[i]->nbytes(), cudaMemcpyHostToDevice));
      c.in.push_back(&din[i]);
      c.host.push_back(ins[i]);
    }
    for (size_t o = 0; o < types.size(); ++o) {
      dout[o] = DevTensor{types[o], dims[o], nullptr};
      dout[o].data = dev_alloc(dout[o].nbytes());
      SHARDRT_CUDA_CHECK(cudaMemset(dout[o].data, 0xff, dout[o].nbytes()));
      c.out.push_back(&dout[o]);
    }
    // The uploads and fills above ran on the legacy stream, which the kernel's non-blocking
    // stream does not wait for.
    SHARDRT_CUDA_CHECK(cudaDeviceSynchronize());
    (*k)(c);
    SHARDRT_CUDA_CHECK(cudaGetLastError());
    SHARDRT_CUDA_CHECK(cudaStreamSynchronize(res->stream()));
    std::vector<Tensor> outs;
    for (size_t o = 0; o < types.size(); ++o) {
      outs.emplace_back(types[o], dims[o]);
      SHARDRT_CUDA_CHECK(cudaMemcpy(outs.back().raw(), dout[o].data, dout[o].nbytes(), cudaMemcpyDeviceToHost));
    }
    for (void* p : bufs) cudaFree(p);
    res->forget_node_state();  // the next call's node may reuse this one's address
    return outs;
  } catch (...) {
    cudaStreamSynchronize(res->stream());
    for (void* p : bufs) cudaFree(p);
    res.reset();  // node state of a failed call must not outlive its node
    throw;
  }
}

}  // namespace shardrt::cuda
