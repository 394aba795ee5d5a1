// NCCL loaded at run time (dlopen), so that shardrt builds and runs without it: the
// functions DeviceComm uses, as pointers resolved once per process. The library is
// SHARDRT_NCCL_LIBRARY when set, else libnccl.so.2 from the loader's search path.
#pragma once
#include <nccl.h>

#include <string>

namespace shardrt::cuda {

struct NcclApi {
  ncclResult_t (*GetVersion)(int*) = nullptr;
  ncclResult_t (*GetUniqueId)(ncclUniqueId*) = nullptr;
  ncclResult_t (*CommInitRank)(ncclComm_t*, int, ncclUniqueId, int) = nullptr;
  ncclResult_t (*AllReduce)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*AllGather)(const void*, void*, size_t, ncclDataType_t, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*ReduceScatter)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                                cudaStream_t) = nullptr;
  ncclResult_t (*Broadcast)(const void*, void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*GroupStart)() = nullptr;
  ncclResult_t (*GroupEnd)() = nullptr;
  ncclResult_t (*CommAbort)(ncclComm_t) = nullptr;
  ncclResult_t (*CommDestroy)(ncclComm_t) = nullptr;
  const char* (*GetErrorString)(ncclResult_t) = nullptr;
  ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t*) = nullptr;
  int version = 0;       // NCCL_VERSION_CODE of the loaded library (22809 = 2.28.9)
  std::string path;      // what was loaded
};

// The loaded API, or null with `why` set (library missing, a symbol missing, too old:
// bf16 reductions need NCCL >= 2.10). Loaded once; later calls return the same answer.
const NcclApi* nccl_api(std::string* why = nullptr);

// "2.28.9" from a version code.
std::string nccl_version_string(int code);

}  // namespace shardrt::cuda
