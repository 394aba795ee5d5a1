// CPU kernels of shardrt.AddLayerNorm(A, B, Scale, [Bias]) and shardrt.AddRMSNorm(A, B, W):
// Sum = A + B (rounded to the dtype, as the unfused Add stores it), then the registered
// LayerNormalization / shardrt.RMSNorm kernel runs on Sum, so the fused op gives exactly
// what the unfused pair does. shardrt.NormLinear(X, [R], Scale, [NormBias], W, [B]) →
// (Y, Normed, [Sum]) runs the same norm (with the add when R is given) into Normed, then the
// registered shardrt.Linear kernel on Normed: again exactly the unfused ops.
#include <string>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/elementwise_impl.h"

namespace shardrt::cpu {

namespace {

template <class T> void add_same_shape(const Tensor& a, const Tensor& b, Tensor& s) {
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  T* ps = s.data<T>();
  parallel_for(a.numel(), 16384, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) ps[i] = st<T>(ld(pa[i]) + ld(pb[i]));
  });
}

const Kernel& kernel_of(const KernelCtx& c, const char* op) {
  const Kernel* k = find_kernel(op);
  if (!k) c.fail(std::string("internal: no CPU kernel for ") + op);
  return *k;
}

void add_norm(KernelCtx& c, const char* norm_op) {
  const Tensor& a = *c.input(0);
  const Tensor& b = *c.input(1);
  if (a.dims() != b.dims()) c.fail("A and B must have the same shape");
  if (a.dtype() != b.dtype()) c.fail("A and B must have the same dtype");
  if (c.out.size() < 2 || !c.out[1]) c.fail("the Sum output is required");
  Tensor& sum = *c.out[1];
  switch (a.dtype()) {
    case DType::F32: add_same_shape<float>(a, b, sum); break;
    case DType::F16: add_same_shape<f16_t>(a, b, sum); break;
    case DType::BF16: add_same_shape<bf16_t>(a, b, sum); break;
    default: c.fail(std::string("unsupported type ") + dtype_name(a.dtype()));
  }
  // The norm kernel reads epsilon (and LayerNormalization's axis, -1 here) from this node.
  KernelCtx inner{c.node, {&sum, c.input(2), c.input(3)}, {c.out[0]}, c.comm};
  kernel_of(c, norm_op)(inner);
}

void norm_linear(KernelCtx& c) {
  const bool rms = c.node.attr_s("norm", "layer") == "rms";
  const bool res = c.input(1) != nullptr;
  if (c.out.size() < 2 || !c.out[0] || !c.out[1]) c.fail("the Y and Normed outputs are required");
  if (res && (c.out.size() < 3 || !c.out[2])) c.fail("R is given: the Sum output is required");
  // The norm kernels read epsilon from this node (LayerNormalization's axis: its default, -1).
  if (res) {
    KernelCtx nc{c.node, {c.input(0), c.input(1), c.input(2), c.input(3)}, {c.out[1], c.out[2]}, c.comm};
    add_norm(nc, rms ? "shardrt.RMSNorm" : "LayerNormalization");
  } else {
    KernelCtx nc{c.node, {c.input(0), c.input(2), c.input(3)}, {c.out[1]}, c.comm};
    kernel_of(c, rms ? "shardrt.RMSNorm" : "LayerNormalization")(nc);
  }
  // shardrt.Linear reads trans_b and activation from this node.
  KernelCtx lc{c.node, {c.out[1], c.input(4), c.input(5)}, {c.out[0]}, c.comm, c.state};
  kernel_of(c, "shardrt.Linear")(lc);
}

}  // namespace

void register_fused_norm_kernels() {
  register_kernel("shardrt.AddLayerNorm", [](KernelCtx& c) { add_norm(c, "LayerNormalization"); });
  register_kernel("shardrt.AddRMSNorm", [](KernelCtx& c) { add_norm(c, "shardrt.RMSNorm"); });
  register_kernel("shardrt.NormLinear", norm_linear);
}

}  // namespace shardrt::cpu
