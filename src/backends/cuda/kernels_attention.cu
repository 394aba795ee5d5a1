// CUDA kernel of shardrt.Attention: checks the inputs, builds the launch parameters (mask
// broadcast strides, GQA grouping, scale in the exp2 domain, causal offset) and picks a
// path: the tensor-core flash kernel (kernels_attention_flash.cu) for fp16/bf16 with head
// sizes 32/64/80/96/128 and at least 16 query rows, else the warp-per-row kernel
// (kernels_attention_rowwise.cu), whose keys split over several warps when there are too
// few query rows to fill the GPU (decode).
#include <algorithm>
#include <cmath>
#include <string>

#include "backends/cuda/attention_common.cuh"

namespace shardrt::cuda {

namespace {

bool attn_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// Fewer query rows than this per (batch, head) leave most of the flash kernel's 64-row
// tile idle; the rowwise kernel splits the keys instead.
constexpr int64_t kFlashMinRows = 16;

void attention_kernel(KernelCtx& c) {
  const DevTensor* q = c.input(0);
  const DevTensor* k = c.input(1);
  const DevTensor* v = c.input(2);
  const DevTensor* mask = c.input(3);
  DevTensor* y = c.out[0];
  if (!q || !k || !v || !y) c.fail("Q, K, V and the output are required");
  const DType t = q->dtype;
  if (!attn_float(t)) c.unsupported(std::string("unsupported type ") + dtype_name(t) + " (fp32, fp16 or bf16)");
  if (k->dtype != t || v->dtype != t || y->dtype != t) c.fail("Q, K, V and the output must share one dtype");
  if (q->rank() != 4 || k->rank() != 4 || v->rank() != 4) c.fail("Q, K and V must be 4-D [B, H, S, D]");
  const int64_t B = q->dim(0), Hq = q->dim(1), Sq = q->dim(2), D = q->dim(3);
  const int64_t Hkv = k->dim(1), Skv = k->dim(2), Dv = v->dim(3);
  if (k->dim(0) != B || v->dim(0) != B || v->dim(1) != Hkv || v->dim(2) != Skv || k->dim(3) != D)
    c.fail("Q, K and V shapes do not agree");
  if (Hkv == 0 || Hq % Hkv) c.fail("Q's heads are not a multiple of K/V's");
  if (y->dims != Dims{B, Hq, Sq, Dv}) c.fail("output shape is not [B, Hq, Sq, Dv]");
  if (y->numel() == 0) return;
  if (Skv == 0) {  // nothing to attend: zeros (all-zero bits are 0.0 in every float dtype)
    SHARDRT_CUDA_CHECK(cudaMemsetAsync(y->data, 0, y->nbytes(), c.stream()));
    return;
  }
  constexpr int64_t kIntMax = 2147483647;
  for (int64_t d : {B, Hq, Sq, Skv, D, Dv})
    if (d > kIntMax) c.fail("a dimension exceeds 2^31 - 1");

  attn::Params p;
  p.q = q->data;
  p.k = k->data;
  p.v = v->data;
  p.o = y->data;
  p.B = int(B);
  p.Hq = int(Hq);
  p.Hkv = int(Hkv);
  p.Sq = int(Sq);
  p.Skv = int(Skv);
  p.D = int(D);
  p.Dv = int(Dv);
  p.group = int(Hq / Hkv);
  float scale = c.node.attr_f("scale", 0.f);
  if (scale == 0.f) scale = D > 0 ? 1.0f / std::sqrt(float(D)) : 1.0f;  // as the CPU kernel
  p.scale_log2 = scale * attn::kLog2e;
  p.causal = c.node.attr_i("causal", 0) != 0;
  p.causal_off = Skv - Sq;

  if (mask) {
    switch (mask->dtype) {
      case DType::Bool: p.mask_kind = attn::kBoolMask; break;
      case DType::F32: p.mask_kind = attn::kF32Mask; break;
      case DType::F16: p.mask_kind = attn::kF16Mask; break;
      case DType::BF16: p.mask_kind = attn::kBF16Mask; break;
      default: c.fail(std::string("Mask has unsupported type ") + dtype_name(mask->dtype));
    }
    if (mask->rank() > 4) c.fail("Mask has rank > 4");
    // Element strides over [B, Hq, Sq, Skv], right-aligned; 0 on broadcast (size-1 or
    // missing) dims.
    const int64_t full[4] = {B, Hq, Sq, Skv};
    int64_t st[4] = {0, 0, 0, 0};
    int64_t s = 1;
    for (int64_t r = 0; r < mask->rank(); ++r) {
      const int64_t md = mask->dim(mask->rank() - 1 - r);
      const int64_t fi = 3 - r;
      if (md != 1 && md != full[fi])
        c.fail("Mask dim " + std::to_string(md) + " does not broadcast to " + std::to_string(full[fi]));
      st[fi] = md == 1 ? 0 : s;
      s *= md;
    }
    p.mask = mask->data;
    p.ms_b = st[0];
    p.ms_h = st[1];
    p.ms_i = st[2];
    p.ms_j = st[3];
  }

  if (Sq >= kFlashMinRows && attn::launch_flash(p, t, c.stream())) return;

  const int64_t per_warp = attn::rowwise_smem_per_warp(p);
  if (per_warp > 48 * 1024)
    c.fail("head sizes D=" + std::to_string(D) + ", Dv=" + std::to_string(Dv) + " exceed the CUDA kernel's limit (D + Dv <= 12288)");
  // Split the keys when the query rows alone give fewer warps than the GPU holds at a
  // useful occupancy (32 per SM); at least 16 keys per split so merging stays cheap.
  const int64_t rows = B * Hq * Sq;
  const int64_t target = int64_t(c.res.props().multiProcessorCount) * 32;
  int64_t splits = 1;
  if (rows < target) {
    splits = (target + rows - 1) / rows;
    splits = std::min<int64_t>(splits, (Skv + 15) / 16);
    splits = std::min<int64_t>(splits, 256);
    splits = std::max<int64_t>(splits, 1);
    const int64_t per = (Skv + splits - 1) / splits;
    splits = (Skv + per - 1) / per;  // no empty split
  }
  float* ws = nullptr;
  if (splits > 1)
    ws = static_cast<float*>(c.res.workspace(size_t(attn::workspace_floats(p, int(splits))) * sizeof(float)));
  attn::launch_rowwise(p, t, int(splits), ws, c.stream());
}

}  // namespace

void register_cached_attention_kernel();  // kernels_attention_cached.cu

void register_attention_kernels() {
  register_kernel("shardrt.Attention", attention_kernel);
  register_cached_attention_kernel();
}

}  // namespace shardrt::cuda
