// Running one collective node on the GPU through a DeviceComm, and on the host through the
// CPU kernels' path (dist::run_collective), for tests/cpp/cuda/test_cuda_collective.cpp and
// tests/mpi/test_cuda_collective_mpi.cpp.
#pragma once
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cuda/cuda_common.h"
#include "backends/cuda/device_comm.h"
#include "dist/collective_exec.h"
#include "dist/mesh.h"

namespace shardrt::cudatest {

inline Node collective_node(const std::string& op, std::map<std::string, Attr> attrs) {
  Node n;
  n.op = op;
  n.name = "t_" + op;
  n.attrs = std::move(attrs);
  return n;
}

// The CPU kernels' result (their body is dist::run_collective).
inline std::vector<Tensor> run_cpu(const Node& n, dist::Communicator& comm, const std::vector<const Tensor*>& ins) {
  dist::ScopedGroupShapes gs(comm);
  std::vector<DType> types;
  std::vector<Dims> dims;
  cpu::infer_concrete(n, ins, types, dims);
  std::vector<Tensor> outs;
  for (size_t o = 0; o < types.size(); ++o) outs.emplace_back(types[o], dims[o]);
  std::vector<Tensor*> po;
  for (Tensor& t : outs) po.push_back(&t);
  dist::run_collective(n, &comm, ins, po);
  return outs;
}

// The CUDA kernel's result with `dc` as ctx.dcomm (null: none). Outputs start as 0xff
// (poison), the stream is waited on with wait_or_abort, as the executor does.
// Uploads, the poison and downloads all go on res.stream(): that stream is non-blocking, so
// it is NOT ordered after the legacy default stream. A plain cudaMemcpy from pageable memory
// may return before its DMA lands and cudaMemset is asynchronous, so with them the kernel
// (or the staged collective's device-to-host copy) could read the input before it arrived
// and the poison could land after the result: with two processes time-slicing one GPU this
// happened on most calls.
inline std::vector<Tensor> run_gpu(const Node& n, dist::Communicator& comm, cuda::DeviceComm* dc,
                                   cuda::Resources& res, const std::vector<const Tensor*>& ins) {
  const cuda::Kernel* k = cuda::find_kernel(n.op);
  if (!k) throw Error("no CUDA kernel for " + n.op);
  dist::ScopedGroupShapes gs(comm);
  std::vector<DType> types;
  std::vector<Dims> dims;
  cpu::infer_concrete(n, ins, types, dims);
  std::vector<void*> bufs;
  auto alloc = [&](size_t b) {
    void* p = nullptr;
    SHARDRT_CUDA_CHECK(cudaMalloc(&p, b ? b : 1));
    bufs.push_back(p);
    return p;
  };
  std::vector<cuda::DevTensor> din(ins.size()), dout(types.size());
  cuda::KernelCtx c{n, {}, {}, {}, res, &comm, dc};
  std::vector<Tensor> outs;
  try {
    for (size_t i = 0; i < ins.size(); ++i) {
      din[i] = cuda::DevTensor{ins[i]->dtype(), ins[i]->dims(), alloc(ins[i]->nbytes())};
      SHARDRT_CUDA_CHECK(
          cudaMemcpyAsync(din[i].data, ins[i]->raw(), ins[i]->nbytes(), cudaMemcpyHostToDevice, res.stream()));
      c.in.push_back(&din[i]);
      c.host.push_back(nullptr);  // collectives read device data only
    }
    for (size_t o = 0; o < types.size(); ++o) {
      dout[o] = cuda::DevTensor{types[o], dims[o], nullptr};
      dout[o].data = alloc(dout[o].nbytes());
      SHARDRT_CUDA_CHECK(cudaMemsetAsync(dout[o].data, 0xff, dout[o].nbytes(), res.stream()));
      c.out.push_back(&dout[o]);
    }
    (*k)(c);
    if (dc)
      dc->wait_or_abort(res.stream(), {n.name, "test"});
    else
      SHARDRT_CUDA_CHECK(cudaStreamSynchronize(res.stream()));
    for (size_t o = 0; o < types.size(); ++o) {
      outs.emplace_back(types[o], dims[o]);
      SHARDRT_CUDA_CHECK(
          cudaMemcpyAsync(outs.back().raw(), dout[o].data, dout[o].nbytes(), cudaMemcpyDeviceToHost, res.stream()));
    }
    SHARDRT_CUDA_CHECK(cudaStreamSynchronize(res.stream()));
  } catch (...) {
    cudaStreamSynchronize(res.stream());
    for (void* p : bufs) cudaFree(p);
    throw;
  }
  for (void* p : bufs) cudaFree(p);
  return outs;
}

// Byte equality with the first differing element named.
inline ::testing::AssertionResult same_bytes(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.dims() != b.dims()) return ::testing::AssertionFailure() << "dtype or dims differ";
  size_t es = dtype_size(a.dtype());
  const char* x = static_cast<const char*>(a.raw());
  const char* y = static_cast<const char*>(b.raw());
  for (int64_t i = 0; i < a.numel(); ++i)
    if (std::memcmp(x + size_t(i) * es, y + size_t(i) * es, es) != 0)
      return ::testing::AssertionFailure() << "element " << i << ": " << a.get_f(i) << " vs " << b.get_f(i);
  return ::testing::AssertionSuccess();
}

}  // namespace shardrt::cudatest
