// cuBLASLt plans for the GEMM ops: one plan per problem (sizes, layouts, dtype, epilogue,
// pointer alignment), holding its descriptors and the algorithm chosen for it. The kernels
// keep plans in node state, so descriptors are built once and the choice (read from the
// node's "cuda_tactics" attribute, else timed at the first eager run of the problem's size
// class, else cuBLASLt's heuristic first) is made once.
//
// Everything here is in cuBLASLt's column-major terms: D[m,n] = alpha·op(A)·op(B) + beta·D
// (+ epilogue), op(A) [m,k], op(B) [k,n]. The row-major callers swap operands (Y^T = W^T X^T).
#pragma once
#include <cublasLt.h>

#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "backends/cuda/cuda_common.h"

namespace shardrt::cuda::gemm {

struct LtProblem {
  DType dtype = DType::F32;
  bool trans_a = false, trans_b = false;  // A stored [k,m] (col-major) when trans_a, else [m,k]
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0, ldd = 0;
  int64_t batch = 1;                      // strided batch; strides in elements (0: broadcast)
  int64_t stride_a = 0, stride_b = 0, stride_d = 0;
  int epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  int align = 256;  // bytes every operand pointer (and batch item) is aligned to

  auto tie() const {
    return std::tie(dtype, trans_a, trans_b, m, n, k, lda, ldb, ldd, batch, stride_a, stride_b, stride_d, epilogue,
                    align);
  }
  bool operator<(const LtProblem& o) const { return tie() < o.tie(); }
  // The tactic key ("lt.f16.NT.4096x768x3072.ld...."): no '=' in it.
  std::string key() const;
};

// Pointers of one call. `d_in_ws`: D lies at the start of the workspace (the caller reserved
// `ws_prefix` bytes there), so its address is only known once the workspace is sized.
struct LtArgs {
  const void* a = nullptr;
  const void* b = nullptr;
  void* d = nullptr;
  const void* bias = nullptr;
  bool d_in_ws = false;
  size_t ws_prefix = 0;  // multiple of 256
};

class LtPlan {
 public:
  // Builds the descriptors; `ok()` is false when cuBLASLt has no algorithm for the problem
  // (e.g. an epilogue or a zero stride it does not support): the caller then takes another route.
  LtPlan(KernelCtx& c, const LtProblem& p);
  ~LtPlan();
  LtPlan(const LtPlan&) = delete;
  LtPlan& operator=(const LtPlan&) = delete;

  bool ok() const { return ok_; }
  const LtProblem& problem() const { return p_; }
  size_t workspace_bytes() const { return ws_bytes_; }

  // Enqueues D = alpha·op(A)·op(B) + beta·D (+ bias epilogue) on ctx.stream(). Chooses the
  // algorithm on the first call (which, outside capture, may time candidates by running
  // them on these buffers with beta = 0: callers that accumulate onto D call prepare()
  // before they fill D). Requests its workspace (prefix included) itself and returns its
  // start (where D is when args.d_in_ws).
  void* run(KernelCtx& c, const LtArgs& args, double alpha, double beta);
  // Chooses the algorithm now (see run); no-op once chosen.
  void prepare(KernelCtx& c, const LtArgs& args);
  // Whether the choice may time candidates (else the heuristic's first is taken).
  void set_may_time(bool on) { may_time_ = on; }

 private:
  void enqueue(KernelCtx& c, const cublasLtMatmulAlgo_t& algo, const LtArgs& args, void* ws, size_t ws_bytes,
               double alpha, double beta, cublasStatus_t* status);

  LtProblem p_;
  bool ok_ = false;
  bool chosen_ = false;
  bool may_time_ = true;
  cublasLtMatmulDesc_t op_ = nullptr;
  cublasLtMatrixLayout_t la_ = nullptr, lb_ = nullptr, ld_ = nullptr;
  cublasLtMatmulPreference_t pref_ = nullptr;
  cublasLtMatmulHeuristicResult_t heur_[8];
  int nheur_ = 0;
  cublasLtMatmulAlgo_t algo_{};
  size_t ws_bytes_ = 0;
};

// Largest power of two (≤ 256) dividing the address.
int ptr_align(const void* p);
// Largest power of two (≤ 256) dividing n bytes (256 for 0).
int bytes_align(int64_t n);

// Plans of one node, by problem. Timing candidates costs a few runs and a synchronisation,
// so a node times one problem per size class (m, n, k each rounded up to a power of two, with
// the rest of the problem): a dynamic dimension that takes a new value on every call (a
// growing sequence) is timed about log2(range) times, the other problems of a class take
// cuBLASLt's heuristic choice.
struct PlanCache {
  std::map<LtProblem, std::unique_ptr<LtPlan>> plans;
  std::map<LtProblem, bool> timed_classes;
  LtPlan& get(KernelCtx& c, const LtProblem& p) {
    auto& slot = plans[p];
    if (!slot) {
      slot = std::make_unique<LtPlan>(c, p);
      LtProblem cls = p;
      cls.m = pow2_ceil(p.m), cls.n = pow2_ceil(p.n), cls.k = pow2_ceil(p.k);
      cls.lda = cls.ldb = cls.ldd = cls.stride_a = cls.stride_b = cls.stride_d = 0;
      slot->set_may_time(timed_classes.emplace(cls, true).second);
    }
    return *slot;
  }
  static int64_t pow2_ceil(int64_t v) {
    int64_t r = 1;
    while (r < v) r <<= 1;
    return r;
  }
};

}  // namespace shardrt::cuda::gemm
