// Moving the blocks of a collective along an axis other than the outermost (CUDA).
// A tensor [outer][total][inner] whose axis `total` is split into torch.chunk chunks of
// `chunk` (the last ones smaller or empty: chunk r covers [r*chunk, min((r+1)*chunk, total)))
// is, rank-major, [rank][outer][size_r][inner]: what AllGather receives from the
// communicator and ReduceScatter sends into it (dist/collective_exec.cpp does the same on
// the host with memcpy).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace shardrt::cuda {

// blocked [outer][total][inner] → rank_major (ReduceScatter's input).
void launch_chunk_pack(const void* blocked, void* rank_major, int64_t outer, int64_t total, int64_t inner,
                       int64_t chunk, size_t elem_bytes, cudaStream_t stream);
// rank_major → blocked [outer][total][inner] (AllGather's output).
void launch_chunk_unpack(const void* rank_major, void* blocked, int64_t outer, int64_t total, int64_t inner,
                         int64_t chunk, size_t elem_bytes, cudaStream_t stream);

}  // namespace shardrt::cuda
