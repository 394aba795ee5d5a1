// cuBLASLt plans: descriptors, algorithm choice (tactic attribute, else timing, else the
// heuristic's first), and the enqueue. See gemm_lt.h.
#include "backends/cuda/gemm_lt.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <limits>

namespace shardrt::cuda::gemm {

namespace {

// Most workspace a GEMM may use (cuBLAS's own default on Hopper is 32 MiB).
constexpr size_t kMaxWorkspace = size_t(32) << 20;

void lt_check(const KernelCtx& c, cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) c.fail(std::string("cuBLASLt ") + what + " failed: " + cublasLtGetStatusString(s));
}

cudaDataType_t data_type(const KernelCtx& c, DType t) {
  switch (t) {
    case DType::F32: return CUDA_R_32F;
    case DType::F16: return CUDA_R_16F;
    case DType::BF16: return CUDA_R_16BF;
    case DType::F64: return CUDA_R_64F;
    default: c.fail(std::string("dtype ") + dtype_name(t) + " has no cuBLASLt GEMM");
  }
}

std::string serialize(const cublasLtMatmulAlgo_t& a) {
  std::string s = std::to_string(cublasLtGetVersion());
  char buf[24];
  for (uint64_t w : a.data) {
    std::snprintf(buf, sizeof buf, ":%016" PRIx64, w);
    s += buf;
  }
  return s;
}

// Parses serialize()'s form; false when malformed or written by another cuBLASLt version
// (algorithm descriptors are opaque and only meaningful to the version that made them).
bool deserialize(const std::string& s, cublasLtMatmulAlgo_t& a) {
  const std::string ver = std::to_string(cublasLtGetVersion());
  if (s.size() != ver.size() + 8 * 17 || s.compare(0, ver.size(), ver) != 0) return false;
  size_t pos = ver.size();
  for (uint64_t& w : a.data) {
    if (s[pos] != ':') return false;
    w = 0;
    for (size_t i = pos + 1; i < pos + 17; ++i) {
      const char ch = s[i];
      int v = ch >= '0' && ch <= '9' ? ch - '0' : (ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1);
      if (v < 0) return false;
      w = (w << 4) | uint64_t(v);
    }
    pos += 17;
  }
  return true;
}

}  // namespace

int ptr_align(const void* p) {
  const uintptr_t v = reinterpret_cast<uintptr_t>(p);
  int a = 1;
  while (a < 256 && (v % uintptr_t(a * 2)) == 0) a *= 2;
  return a;
}

int bytes_align(int64_t n) {
  if (n == 0) return 256;
  int a = 1;
  while (a < 256 && (n % (a * 2)) == 0) a *= 2;
  return a;
}

std::string LtProblem::key() const {
  auto s = [](int64_t v) { return std::to_string(v); };
  return std::string("lt.") + dtype_name(dtype) + "." + (trans_a ? "T" : "N") + (trans_b ? "T" : "N") + "." + s(m) +
         "x" + s(n) + "x" + s(k) + ".ld" + s(lda) + "_" + s(ldb) + "_" + s(ldd) + ".b" + s(batch) + "_" +
         s(stride_a) + "_" + s(stride_b) + "_" + s(stride_d) + ".e" + s(epilogue) + ".a" + s(align);
}

LtPlan::LtPlan(KernelCtx& c, const LtProblem& p) : p_(p) {
  auto h = static_cast<cublasLtHandle_t>(c.res.cublaslt());
  const cudaDataType_t dt = data_type(c, p.dtype);
  const bool f64 = p.dtype == DType::F64;
  // fp32 computes in plain fp32 (no TF32: results as exact as the CPU backend's); half
  // types accumulate in fp32 with fp32 alpha/beta.
  lt_check(c, cublasLtMatmulDescCreate(&op_, f64 ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F, f64 ? CUDA_R_64F : CUDA_R_32F),
           "MatmulDescCreate");
  const cublasOperation_t ta = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int32_t pm = CUBLASLT_POINTER_MODE_HOST;
  const cublasLtEpilogue_t epi = cublasLtEpilogue_t(p.epilogue);
  lt_check(c, cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "set TRANSA");
  lt_check(c, cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "set TRANSB");
  lt_check(c, cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_POINTER_MODE, &pm, sizeof pm), "set POINTER_MODE");
  lt_check(c, cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi), "set EPILOGUE");

  auto layout = [&](cublasLtMatrixLayout_t& l, int64_t rows, int64_t cols, int64_t ld, int64_t stride) {
    lt_check(c, cublasLtMatrixLayoutCreate(&l, dt, uint64_t(rows), uint64_t(cols), ld), "MatrixLayoutCreate");
    if (p.batch > 1) {
      const int32_t bc = int32_t(p.batch);
      lt_check(c, cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc), "set BATCH_COUNT");
      lt_check(c, cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride),
               "set STRIDED_BATCH_OFFSET");
    }
  };
  if (p.batch > std::numeric_limits<int32_t>::max()) c.fail("GEMM batch of " + std::to_string(p.batch) + " is too large");
  layout(la_, p.trans_a ? p.k : p.m, p.trans_a ? p.m : p.k, p.lda, p.stride_a);
  layout(lb_, p.trans_b ? p.n : p.k, p.trans_b ? p.k : p.n, p.ldb, p.stride_b);
  layout(ld_, p.m, p.n, p.ldd, p.stride_d);

  lt_check(c, cublasLtMatmulPreferenceCreate(&pref_), "MatmulPreferenceCreate");
  // Plans made during graph capture cannot grow the workspace: they take algorithms without one.
  const uint64_t max_ws = c.res.capturing() ? 0 : kMaxWorkspace;
  lt_check(c, cublasLtMatmulPreferenceSetAttribute(pref_, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_ws, sizeof max_ws),
           "set MAX_WORKSPACE_BYTES");
  const uint32_t al = uint32_t(p.align);
  for (auto a : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                 CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
    lt_check(c, cublasLtMatmulPreferenceSetAttribute(pref_, a, &al, sizeof al), "set MIN_ALIGNMENT");

  cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(h, op_, la_, lb_, ld_, ld_, pref_, 8, heur_, &nheur_);
  if (s != CUBLAS_STATUS_SUCCESS) nheur_ = 0;  // NOT_SUPPORTED: no algorithm for this combination
  // Keep only the results cuBLASLt marks usable.
  int k = 0;
  for (int i = 0; i < nheur_; ++i)
    if (heur_[i].state == CUBLAS_STATUS_SUCCESS) heur_[k++] = heur_[i];
  nheur_ = k;
  ok_ = nheur_ > 0;
}

LtPlan::~LtPlan() {
  if (pref_) cublasLtMatmulPreferenceDestroy(pref_);
  if (la_) cublasLtMatrixLayoutDestroy(la_);
  if (lb_) cublasLtMatrixLayoutDestroy(lb_);
  if (ld_) cublasLtMatrixLayoutDestroy(ld_);
  if (op_) cublasLtMatmulDescDestroy(op_);
}

void LtPlan::enqueue(KernelCtx& c, const cublasLtMatmulAlgo_t& algo, const LtArgs& a, void* ws, size_t ws_bytes,
                     double alpha, double beta, cublasStatus_t* status) {
  const int e = p_.epilogue;
  if (e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_RELU_BIAS || e == CUBLASLT_EPILOGUE_GELU_BIAS) {
    const void* bias = a.bias;
    lt_check(c, cublasLtMatmulDescSetAttribute(op_, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias),
             "set BIAS_POINTER");
  }
  const float af = float(alpha), bf = float(beta);
  const bool f64 = p_.dtype == DType::F64;
  const void* pa = f64 ? static_cast<const void*>(&alpha) : &af;
  const void* pb = f64 ? static_cast<const void*>(&beta) : &bf;
  *status = cublasLtMatmul(static_cast<cublasLtHandle_t>(c.res.cublaslt()), op_, pa, a.a, la_, a.b, lb_, pb, a.d, ld_,
                           a.d, ld_, &algo, ws, ws_bytes, c.stream());
}

void LtPlan::prepare(KernelCtx& c, const LtArgs& args) {
  if (chosen_) return;
  if (!ok_) c.fail("internal: cuBLASLt has no algorithm for GEMM " + p_.key());
  auto h = static_cast<cublasLtHandle_t>(c.res.cublaslt());
  const std::string key = p_.key();
  const size_t max_ws = c.res.capturing() ? 0 : kMaxWorkspace;

  // 1. The tactic stored at build time, if this cuBLASLt still accepts it here.
  cublasLtMatmulAlgo_t stored{};
  const std::string t = tactic_from_attr(c.node, key);
  if (!t.empty() && deserialize(t, stored)) {
    cublasLtMatmulHeuristicResult_t r{};
    if (cublasLtMatmulAlgoCheck(h, op_, la_, lb_, ld_, ld_, &stored, &r) == CUBLAS_STATUS_SUCCESS &&
        r.workspaceSize <= max_ws) {
      algo_ = stored;
      ws_bytes_ = r.workspaceSize;
      chosen_ = true;
      c.res.record_tactic(c.node, key, t);
      return;
    }
  }

  // 2. Time the heuristic's candidates (eager runs; the first problem of its size class in
  //    this node, see PlanCache); 3. else its first.
  int best = 0;
  if (!c.res.capturing() && nheur_ > 1 && may_time_) {
    size_t most = 0;
    for (int i = 0; i < nheur_; ++i) most = std::max(most, heur_[i].workspaceSize);
    char* base = static_cast<char*>(c.res.workspace(args.ws_prefix + most));
    LtArgs a = args;
    if (a.d_in_ws) a.d = base;
    void* ws = base + args.ws_prefix;
    cudaEvent_t ev0 = nullptr, ev1 = nullptr;
    SHARDRT_CUDA_CHECK(cudaEventCreate(&ev0));
    SHARDRT_CUDA_CHECK(cudaEventCreate(&ev1));
    const float inf = std::numeric_limits<float>::infinity();
    float ms[8];
    constexpr int kReps = 5;
    for (int i = 0; i < nheur_; ++i) {
      ms[i] = inf;
      cublasStatus_t st;
      enqueue(c, heur_[i].algo, a, ws, heur_[i].workspaceSize, 1.0, 0.0, &st);  // warm-up
      if (st != CUBLAS_STATUS_SUCCESS) continue;
      SHARDRT_CUDA_CHECK(cudaEventRecord(ev0, c.stream()));
      for (int r = 0; r < kReps && st == CUBLAS_STATUS_SUCCESS; ++r)
        enqueue(c, heur_[i].algo, a, ws, heur_[i].workspaceSize, 1.0, 0.0, &st);
      SHARDRT_CUDA_CHECK(cudaEventRecord(ev1, c.stream()));
      SHARDRT_CUDA_CHECK(cudaEventSynchronize(ev1));
      float t_ms = 0;
      SHARDRT_CUDA_CHECK(cudaEventElapsedTime(&t_ms, ev0, ev1));
      if (st == CUBLAS_STATUS_SUCCESS) ms[i] = t_ms;
    }
    cudaEventDestroy(ev0);
    cudaEventDestroy(ev1);
    SHARDRT_CUDA_CHECK(cudaGetLastError());
    for (int i = 1; i < nheur_; ++i)
      if (ms[i] < ms[best]) best = i;
    if (ms[best] == inf) c.fail("cuBLASLt could run none of its " + std::to_string(nheur_) + " algorithms for GEMM " + key);
    // Within 2% of the fastest, prefer less workspace (split-K reductions cost memory and
    // an extra pass that timing on an idle GPU understates).
    const float limit = ms[best] * 1.02f;
    for (int i = 0; i < nheur_; ++i)
      if (ms[i] <= limit && heur_[i].workspaceSize < heur_[best].workspaceSize) best = i;
  }
  algo_ = heur_[best].algo;
  ws_bytes_ = heur_[best].workspaceSize;
  chosen_ = true;
  c.res.record_tactic(c.node, key, serialize(algo_));
}

void* LtPlan::run(KernelCtx& c, const LtArgs& args, double alpha, double beta) {
  prepare(c, args);
  char* base = static_cast<char*>(c.res.workspace(args.ws_prefix + ws_bytes_));
  LtArgs a = args;
  if (a.d_in_ws) a.d = base;
  cublasStatus_t st;
  enqueue(c, algo_, a, ws_bytes_ ? base + args.ws_prefix : nullptr, ws_bytes_, alpha, beta, &st);
  lt_check(c, st, ("Matmul (" + p_.key() + ")").c_str());
  return base;
}

}  // namespace shardrt::cuda::gemm
