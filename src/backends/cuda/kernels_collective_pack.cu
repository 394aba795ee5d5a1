// Rank-major ↔ axis-blocked copies for collectives along an inner axis (see
// kernels_collective_pack.h). One thread moves one word of W bytes (16 when the rows and
// both pointers allow it); threads walk the blocked side in order, so both sides are read
// and written in contiguous runs of a row (inner × elem_bytes).
#include "backends/cuda/cuda_common.h"
#include "backends/cuda/kernels_collective_pack.h"

namespace shardrt::cuda {

namespace {

// k: word index in the blocked layout [outer][total][row_w]. Its rank-major index: chunk
// r = t / chunk starts at element outer*off of the rank-major buffer (every earlier chunk
// holds outer*size words-rows), then row o*sz + (t - off) of that chunk.
template <class W, class I, bool kPack>
__global__ void __launch_bounds__(256) chunk_move(const W* __restrict__ src, W* __restrict__ dst, I outer, I total,
                                                  I row_w, I chunk, I n) {
  for (I k = I(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += I(gridDim.x) * blockDim.x) {
    I row = k / row_w;
    I w = k - row * row_w;
    I o = row / total;
    I t = row - o * total;
    I r = t / chunk;
    I off = r * chunk;
    I sz = total - off < chunk ? total - off : chunk;
    I rm = (outer * off + o * sz + (t - off)) * row_w + w;
    if (kPack)
      dst[rm] = src[k];
    else
      dst[k] = src[rm];
  }
}

template <class W, bool kPack>
void launch_w(const void* src, void* dst, int64_t outer, int64_t total, int64_t row_w, int64_t chunk,
              cudaStream_t s) {
  int64_t n = outer * total * row_w;
  const int threads = 256;
  unsigned blocks = blocks_for(n, threads);
  if (blocks > 8192) blocks = 8192;  // grid-stride beyond: ~60 blocks per SM on an H100
  const W* a = static_cast<const W*>(src);
  W* b = static_cast<W*>(dst);
  // 32-bit index math when every index fits (the divisions are the cost of this kernel).
  if (n < (int64_t(1) << 31))
    chunk_move<W, uint32_t, kPack><<<blocks, threads, 0, s>>>(a, b, uint32_t(outer), uint32_t(total),
                                                                uint32_t(row_w), uint32_t(chunk), uint32_t(n));
  else
    chunk_move<W, int64_t, kPack><<<blocks, threads, 0, s>>>(a, b, outer, total, row_w, chunk, n);
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

template <bool kPack>
void launch(const void* src, void* dst, int64_t outer, int64_t total, int64_t inner, int64_t chunk, size_t es,
            cudaStream_t s) {
  if (outer <= 0 || total <= 0 || inner <= 0) return;
  if (chunk <= 0) throw Error("internal: chunk_pack with chunk " + std::to_string(chunk));
  size_t row = size_t(inner) * es;
  uintptr_t align = reinterpret_cast<uintptr_t>(src) | reinterpret_cast<uintptr_t>(dst) | uintptr_t(row);
  if (align % 16 == 0)
    launch_w<uint4, kPack>(src, dst, outer, total, int64_t(row / 16), chunk, s);
  else if (align % 8 == 0)
    launch_w<uint2, kPack>(src, dst, outer, total, int64_t(row / 8), chunk, s);
  else if (align % 4 == 0)
    launch_w<uint32_t, kPack>(src, dst, outer, total, int64_t(row / 4), chunk, s);
  else if (align % 2 == 0)
    launch_w<uint16_t, kPack>(src, dst, outer, total, int64_t(row / 2), chunk, s);
  else
    launch_w<uint8_t, kPack>(src, dst, outer, total, int64_t(row), chunk, s);
}

}  // namespace

void launch_chunk_pack(const void* blocked, void* rank_major, int64_t outer, int64_t total, int64_t inner,
                       int64_t chunk, size_t elem_bytes, cudaStream_t stream) {
  launch<true>(blocked, rank_major, outer, total, inner, chunk, elem_bytes, stream);
}

void launch_chunk_unpack(const void* rank_major, void* blocked, int64_t outer, int64_t total, int64_t inner,
                         int64_t chunk, size_t elem_bytes, cudaStream_t stream) {
  launch<false>(rank_major, blocked, outer, total, inner, chunk, elem_bytes, stream);
}

}  // namespace shardrt::cuda
