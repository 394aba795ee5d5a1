// CUDA kernel of shardrt.NormLinear(X, [R], Scale, [NormBias], W, [B]) → (Y, Normed, [Sum]):
// a decode step's rows (at most kGemvMaxRows, W as [N, K]) take one GEMV launch with the
// norm (and the residual add) in its prologue; every other case runs the registered norm
// kernel into Normed (and Sum), then the registered shardrt.Linear kernel on Normed — the
// unfused pair's launches, reading the same attributes from this node.
#include <cstdlib>
#include <cstring>
#include <string>

#include "backends/cuda/gemm_epilogue.h"
#include "backends/cuda/gemv.h"

namespace shardrt::cuda::gemm {

namespace {

// SHARDRT_GEMV_NORM=0: the norm kernel, then the Linear, even for decode rows (comparison).
bool gemv_norm_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("SHARDRT_GEMV_NORM");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}

const Kernel& kernel_of(const KernelCtx& c, const char* op) {
  const Kernel* k = find_kernel(op);
  if (!k) c.fail(std::string("internal: no CUDA kernel for ") + op);
  return *k;
}

// A [K] parameter (leading dims 1) of X's dtype, or null.
void check_param(const KernelCtx& c, const DevTensor* p, int64_t K, DType t, const char* what) {
  if (!p) return;
  if (p->dtype != t) c.fail(std::string(what) + "'s dtype differs from X's");
  if (p->rank() < 1 || p->dim(-1) != K || p->numel() != K) c.fail(std::string(what) + " must be [K]");
}

void norm_linear_kernel(KernelCtx& c) {
  const DevTensor& X = *c.in[0];
  const DevTensor* R = c.input(1);
  const DevTensor* scale = c.input(2);
  const DevTensor* shift = c.input(3);
  const DevTensor* W = c.input(4);
  const DevTensor* B = c.input(5);
  const bool rms = c.node.attr_s("norm", "layer") == "rms";
  const DType t = X.dtype;
  if (t != DType::F32 && t != DType::F16 && t != DType::BF16)
    c.unsupported(std::string("dtype ") + dtype_name(t) + " is not supported (fp32, fp16, bf16)");
  if (!scale || !W) c.fail("Scale and W are required");
  if (c.out.size() < 2 || !c.out[0] || !c.out[1]) c.fail("the Y and Normed outputs are required");
  DevTensor* sum = c.out.size() > 2 ? c.out[2] : nullptr;
  if (R && !sum) c.fail("R is given: the Sum output is required");
  if (X.rank() < 1) c.fail("X must have rank >= 1");
  if (R && (R->dims != X.dims || R->dtype != t)) c.fail("R must have X's shape and dtype");
  const int64_t K = X.dim(-1);
  check_param(c, scale, K, t, "Scale");
  check_param(c, shift, K, t, "NormBias");
  const int64_t M = K > 0 ? X.numel() / K : 0;
  const bool tb = c.node.attr_i("trans_b", 0) != 0;
  const bool swiglu = c.node.attr_s("activation", "none") == "swiglu";
  DevTensor& Y = *c.out[0];
  const int64_t N = Y.dim(-1), WN = swiglu ? 2 * N : N;

  if (tb && M >= 1 && M <= kGemvMaxRows && gemv_enabled() && gemv_norm_enabled() && W->dtype == t && W->rank() == 2 && W->dim(1) == K &&
      W->dim(0) == WN && (!B || (B->dtype == t && B->numel() == WN))) {
    GemvNorm nrm;
    nrm.res = R ? R->data : nullptr;
    nrm.scale = scale->data;
    nrm.shift = shift ? shift->data : nullptr;
    nrm.sum = R ? sum->data : nullptr;
    nrm.normed = c.out[1]->data;
    nrm.eps = c.node.attr_f("epsilon", rms ? 1e-6f : 1e-5f);
    nrm.rms = rms;
    nrm.params_const = c.host_input(2) != nullptr && (!shift || c.host_input(3) != nullptr);
    const Act act = swiglu ? Act::Silu : parse_act(c);
    if (launch_gemv_norm(t, M, N, K, X.data, nrm, W->data, B ? B->data : nullptr, act, swiglu, Y.data,
                         c.host_input(4) != nullptr, c.stream()))
      return;
  }
  // The unfused pair. The norm kernels read epsilon (and LayerNormalization its default axis,
  // -1) from this node; shardrt.Linear reads trans_b and activation, and takes W's host copy
  // as the sign of a constant weight.
  if (R) {
    KernelCtx nc{c.node, {&X, R, scale, shift}, {}, {c.out[1], sum}, c.res, c.comm, c.dcomm};
    kernel_of(c, rms ? "shardrt.AddRMSNorm" : "shardrt.AddLayerNorm")(nc);
  } else {
    KernelCtx nc{c.node, {&X, scale, shift}, {}, {c.out[1]}, c.res, c.comm, c.dcomm};
    kernel_of(c, rms ? "shardrt.RMSNorm" : "LayerNormalization")(nc);
  }
  KernelCtx lc{c.node, {c.out[1], W, B}, {nullptr, c.host_input(4), c.host_input(5)}, {&Y}, c.res, c.comm, c.dcomm};
  kernel_of(c, "shardrt.Linear")(lc);
}

}  // namespace

void register_norm_linear_kernel() { register_kernel("shardrt.NormLinear", norm_linear_kernel); }

}  // namespace shardrt::cuda::gemm
