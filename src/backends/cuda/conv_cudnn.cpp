// Conv and ConvTranspose through cuDNN's legacy convolution API, NCHW (NCDHW) as the IR has
// them; fp32, fp16, bf16 and fp64.
// - 1-D convolutions run as 2-D ones with a height of 1; 2-D and 3-D directly; more spatial
//   dims are refused (cuDNN's legacy descriptors stop at 3).
// - cuDNN pads symmetrically only. With asymmetric pads (explicit, or SAME_* with an even
//   window) Conv pads the input into the workspace first; ConvTranspose, when cuDNN cannot
//   take its pads as they are, computes the uncropped output and crops it.
// - ConvTranspose is cuDNN's backward-data convolution: the forward convolution that maps the
//   output's space onto the input's has filter [C_in, C_out/group, k...], exactly ONNX's
//   ConvTranspose weight.
// - The algorithm is chosen once per input shape, outside graph capture: the node's
//   "cuda_tactics" attribute first (what the builder recorded), else cuDNN's timed search
//   (Find...AlgorithmEx) within a workspace budget; the choice is recorded with
//   record_tactic. A shape first seen during capture (not expected: an eager run precedes
//   every capture) takes cuDNN's heuristic choice, which needs no timing.
// - Math: fp32 with CUDNN_FMA_MATH (no TF32, so results agree with the CPU's fp32); fp16 and
//   bf16 on tensor cores, accumulating in fp32; fp64 with the default math.
// - Bias: own kernel after the convolution (conv_helpers.cu). cuDNN's fused
//   ConvolutionBiasActivationForward would save that pass, but it blends in a `z` tensor
//   whose reading when alpha2 is 0 is not documented, and output buffers may hold NaN.
#include <cudnn.h>

#include <algorithm>
#include <climits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/cuda/conv_kernels.h"
#include "backends/cuda/cuda_common.h"
#include "ir/ops/nn_ops_window.h"

namespace shardrt::cuda {

namespace {

// Most workspace the timed search may give an algorithm (the fastest SD-1.5 convolutions
// need far less).
constexpr size_t kSearchBudget = size_t(256) << 20;

void ok(const KernelCtx& c, cudnnStatus_t s, const char* what) {
  if (s != CUDNN_STATUS_SUCCESS) c.fail(std::string("cuDNN ") + what + " failed: " + cudnnGetErrorString(s));
}

size_t align256(size_t b) { return (b + 255) / 256 * 256; }

cudnnDataType_t cudnn_type(const KernelCtx& c, DType t) {
  switch (t) {
    case DType::F32: return CUDNN_DATA_FLOAT;
    case DType::F16: return CUDNN_DATA_HALF;
    case DType::BF16: return CUDNN_DATA_BFLOAT16;
    case DType::F64: return CUDNN_DATA_DOUBLE;
    default: c.unsupported(std::string("dtype ") + dtype_name(t) + " is not supported on CUDA");
  }
}

// fp16 and bf16 accumulate in fp32 ("pseudo-half" configuration).
cudnnDataType_t compute_type(DType t) { return t == DType::F64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT; }

bool tensor_ops_ok(DType t) { return t == DType::F16 || t == DType::BF16; }

cudnnMathType_t base_math(DType t) {
  if (t == DType::F32) return CUDNN_FMA_MATH;  // no TF32
  if (tensor_ops_ok(t)) return CUDNN_TENSOR_OP_MATH;
  return CUDNN_DEFAULT_MATH;
}

// Scaling factors: double for fp64 data, float otherwise (cuDNN's rule).
struct Scale {
  float f;
  double d;
  explicit Scale(double v) : f(float(v)), d(v) {}
  const void* of(DType t) const { return t == DType::F64 ? static_cast<const void*>(&d) : static_cast<const void*>(&f); }
};

std::vector<int64_t> spatial(const Dims& d) { return std::vector<int64_t>(d.begin() + 2, d.end()); }

int64_t prod(const std::vector<int64_t>& v) {
  int64_t p = 1;
  for (int64_t x : v) p *= x;
  return p;
}

int to_int(const KernelCtx& c, int64_t v) {
  if (v < INT_MIN || v > INT_MAX) c.fail("size " + std::to_string(v) + " exceeds cuDNN's 32-bit sizes");
  return int(v);
}

// cuDNN's view of [n, ch, spatial...]: a 1-D problem gets a leading spatial dim of 1.
std::vector<int> nd_dims(const KernelCtx& c, int64_t n, int64_t ch, std::vector<int64_t> sp) {
  if (sp.size() == 1) sp.insert(sp.begin(), 1);
  // Offsets inside a tensor are 32-bit in the legacy API.
  if (n * ch * prod(sp) > INT_MAX) c.fail("a tensor of " + std::to_string(n * ch * prod(sp)) +
                                          " elements exceeds cuDNN's 32-bit indexing; split the batch");
  std::vector<int> r{to_int(c, n), to_int(c, ch)};
  for (int64_t v : sp) r.push_back(to_int(c, v));
  return r;
}

// Per-axis convolution parameters for cuDNN (1-D gets the neutral leading axis `lead`).
std::vector<int> nd_params(const KernelCtx& c, std::vector<int64_t> v, int64_t lead) {
  if (v.size() == 1) v.insert(v.begin(), lead);
  std::vector<int> r;
  for (int64_t x : v) r.push_back(to_int(c, x));
  return r;
}

// The last `sp.size()` of WindowCopy's three axes.
void fill3(int64_t (&dst)[3], const std::vector<int64_t>& sp, int64_t fill) {
  for (int i = 0; i < 3; ++i) dst[i] = fill;
  for (size_t i = 0; i < sp.size(); ++i) dst[3 - sp.size() + i] = sp[i];
}

struct Descs {
  cudnnTensorDescriptor_t x = nullptr;  // Conv: input (padded when Plan::aux); ConvTranspose: input (cuDNN's dy)
  cudnnTensorDescriptor_t y = nullptr;  // what cuDNN writes: Conv: Y; ConvTranspose: Y or the uncropped output (dx)
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  Descs(const KernelCtx& c) {
    ok(c, cudnnCreateTensorDescriptor(&x), "CreateTensorDescriptor");
    ok(c, cudnnCreateTensorDescriptor(&y), "CreateTensorDescriptor");
    ok(c, cudnnCreateFilterDescriptor(&w), "CreateFilterDescriptor");
    ok(c, cudnnCreateConvolutionDescriptor(&conv), "CreateConvolutionDescriptor");
  }
  ~Descs() {
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
  }
  Descs(const Descs&) = delete;
  Descs& operator=(const Descs&) = delete;
};

// One input shape's setup: descriptors, algorithm, workspace, and the pad/crop copy.
struct Plan {
  explicit Plan(const KernelCtx& c) : d(c) {}
  Descs d;
  int algo = 0;      // cudnnConvolutionFwdAlgo_t (Conv) or cudnnConvolutionBwdDataAlgo_t (ConvTranspose)
  size_t ws = 0;     // cuDNN's workspace bytes for `algo`
  size_t aux = 0;    // bytes of the padded input (Conv) or uncropped output (ConvTranspose); 0: none
  WindowCopy copy;   // the pad (Conv) or crop (ConvTranspose) when aux > 0
};

struct ConvState {
  std::map<std::string, std::unique_ptr<Plan>> plans;  // by input and weight dims
};

// An algorithm candidate, forward or backward-data alike.
struct Candidate {
  int algo;
  cudnnStatus_t status;
  size_t memory;
  cudnnMathType_t math;
};

template <class Perf>
std::vector<Candidate> candidates(const Perf* p, int n) {
  std::vector<Candidate> r;
  for (int i = 0; i < n; ++i) r.push_back({int(p[i].algo), p[i].status, p[i].memory, p[i].mathType});
  return r;
}

// What choose_algo needs of one direction (forward or backward data).
struct AlgoOps {
  const char* tactic_key;
  std::function<std::vector<Candidate>()> heuristic;                  // cuDNN's ranking, no timing
  std::function<std::vector<Candidate>(void* ws, size_t bytes)> find;  // timed, runs the convolution
  std::function<bool(int algo, size_t& bytes)> ws_size;               // false: algo unsupported here
};

// Picks the algorithm (and the math type it runs with) into `p`; see the file comment.
void choose_algo(KernelCtx& c, Plan& p, DType t, const AlgoOps& ops) {
  auto try_use = [&](int algo, cudnnMathType_t math) {
    if (!tensor_ops_ok(t)) math = base_math(t);  // never tensor-op math (TF32) for fp32/fp64
    if (cudnnSetConvolutionMathType(p.d.conv, math) != CUDNN_STATUS_SUCCESS) return false;
    size_t bytes = 0;
    if (!ops.ws_size(algo, bytes)) return false;
    p.algo = algo;
    p.ws = bytes;
    c.res.record_tactic(c.node, ops.tactic_key, std::to_string(algo));
    c.res.record_tactic(c.node, "cudnn_math", std::to_string(int(math)));
    return true;
  };
  // 1. What the builder recorded (it may not suit this shape: then search).
  const std::string algo_s = tactic_from_attr(c.node, ops.tactic_key), math_s = tactic_from_attr(c.node, "cudnn_math");
  if (!algo_s.empty()) {
    try {
      const int algo = std::stoi(algo_s);
      const cudnnMathType_t math = math_s.empty() ? base_math(t) : cudnnMathType_t(std::stoi(math_s));
      if (try_use(algo, math)) return;
    } catch (const std::logic_error&) {  // a malformed value: search instead
    }
  }
  ok(c, cudnnSetConvolutionMathType(p.d.conv, base_math(t)), "SetConvolutionMathType");
  const std::vector<Candidate> ranked = ops.heuristic();
  std::vector<Candidate> timed;
  size_t budget = SIZE_MAX;
  if (!c.res.capturing()) {
    // 2. Time the algorithms that fit the budget (the workspace holds the pad/crop buffer first).
    budget = 0;
    for (const Candidate& k : ranked)
      if (k.status == CUDNN_STATUS_SUCCESS && k.memory <= kSearchBudget) budget = std::max(budget, k.memory);
    char* ws = static_cast<char*>(c.res.workspace(align256(p.aux) + budget));
    timed = ops.find(ws, budget);
  }
  // 3. The fastest (else the best ranked) that works here.
  for (const std::vector<Candidate>* list : {static_cast<const std::vector<Candidate>*>(&timed), &ranked})
    for (const Candidate& k : *list) {
      if (k.status != CUDNN_STATUS_SUCCESS || k.memory > budget) continue;
      if (!tensor_ops_ok(t) && (k.math == CUDNN_TENSOR_OP_MATH || k.math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
        continue;
      if (try_use(k.algo, k.math)) return;
    }
  c.fail("cuDNN offers no algorithm for this convolution");
}

void set_tensor(const KernelCtx& c, cudnnTensorDescriptor_t d, DType t, const std::vector<int>& dims) {
  ok(c, cudnnSetTensorNdDescriptorEx(d, CUDNN_TENSOR_NCHW, cudnn_type(c, t), int(dims.size()), dims.data()),
     "SetTensorNdDescriptorEx");
}

void set_filter(const KernelCtx& c, cudnnFilterDescriptor_t d, DType t, const std::vector<int>& dims) {
  ok(c, cudnnSetFilterNdDescriptor(d, cudnn_type(c, t), CUDNN_TENSOR_NCHW, int(dims.size()), dims.data()),
     "SetFilterNdDescriptor");
}

void set_conv(const KernelCtx& c, cudnnConvolutionDescriptor_t d, DType t, const std::vector<int64_t>& pads,
              const WindowGeom& g, int64_t group) {
  const std::vector<int> pa = nd_params(c, pads, 0), st = nd_params(c, g.strides, 1), di = nd_params(c, g.dilations, 1);
  ok(c, cudnnSetConvolutionNdDescriptor(d, int(pa.size()), pa.data(), st.data(), di.data(), CUDNN_CROSS_CORRELATION,
                                        compute_type(t)),
     "SetConvolutionNdDescriptor");
  ok(c, cudnnSetConvolutionGroupCount(d, to_int(c, group)), "SetConvolutionGroupCount");
}

void check_kernel_attr(const KernelCtx& c, const std::vector<int64_t>& k) {
  if (c.node.has_attr("kernel_shape") && c.node.attr_ints("kernel_shape") != k)
    c.fail("kernel_shape " + dims_str(c.node.attr_ints("kernel_shape")) + " differs from the weight's " + dims_str(k));
}

ConvState& state(KernelCtx& c) {
  return c.res.node_state<ConvState>(c.node, [] { return std::make_shared<ConvState>(); });
}

// Y = 0 (+ bias) where no input channel contributes (C_in = 0; cuDNN cannot describe it).
void zeros_plus_bias(KernelCtx& c, const DevTensor& Y, const DevTensor* B) {
  SHARDRT_CUDA_CHECK(cudaMemsetAsync(Y.data, 0, Y.nbytes(), c.stream()));
  if (B) launch_bias_add(Y.dtype, Y.data, B->data, Y.dim(0), Y.dim(1), Y.numel() / (Y.dim(0) * Y.dim(1)), c.stream());
}

void check_common(const KernelCtx& c, const DevTensor& X, const DevTensor& W, const DevTensor* B) {
  const size_t ns = size_t(X.rank()) - 2;
  if (X.rank() < 3 || ns > 3)
    c.fail("cuDNN convolutions take 1 to 3 spatial dims, the input is " + dims_str(X.dims));
  if (W.dtype != X.dtype || (B && B->dtype != X.dtype)) c.fail("inputs differ in dtype");
  cudnn_type(c, X.dtype);  // fails for dtypes cuDNN lacks
}

// Sets the plan's descriptors: x as `xd`, y as `yd`, the filter and the convolution; then
// checks the forward geometry, which maps x onto y for Conv and y onto x for ConvTranspose
// (`transposed`: cuDNN's backward data runs the forward convolution the other way).
void set_descriptors(const KernelCtx& c, Plan& p, DType t, const std::vector<int>& xd, const std::vector<int>& yd,
                     const std::vector<int>& wd, const std::vector<int64_t>& pads, const WindowGeom& g, int64_t group,
                     bool transposed, const std::string& mismatch) {
  set_tensor(c, p.d.x, t, xd);
  set_tensor(c, p.d.y, t, yd);
  set_filter(c, p.d.w, t, wd);
  set_conv(c, p.d.conv, t, pads, g, group);
  const std::vector<int>& want = transposed ? xd : yd;
  std::vector<int> got(want.size());
  ok(c, cudnnGetConvolutionNdForwardOutputDim(p.d.conv, transposed ? p.d.y : p.d.x, p.d.w, int(got.size()), got.data()),
     "GetConvolutionNdForwardOutputDim");
  if (got != want) c.fail(mismatch);
}

// ---- Conv ----

std::unique_ptr<Plan> conv_plan(KernelCtx& c, const DevTensor& X, const DevTensor& W, const DevTensor& Y,
                                const WindowGeom& g, int64_t group) {
  auto p = std::make_unique<Plan>(c);
  const DType t = X.dtype;
  const int64_t N = X.dim(0), C = X.dim(1), M = W.dim(0);
  const size_t ns = g.kernel.size();
  bool asym = false;
  for (size_t i = 0; i < ns; ++i) asym = asym || g.pad_begin[i] != g.pad_end[i];
  std::vector<int64_t> xs = g.in, pads = g.pad_begin;
  if (asym) {
    // cuDNN convolves the zero-padded copy with no padding of its own.
    for (size_t i = 0; i < ns; ++i) {
      xs[i] = g.in[i] + g.pad_begin[i] + g.pad_end[i];
      pads[i] = 0;
    }
    p->aux = size_t(N * C * prod(xs)) * dtype_size(t);
    p->copy.planes = N * C;
    fill3(p->copy.src, g.in, 1);
    fill3(p->copy.dst, xs, 1);
    std::vector<int64_t> neg(ns);
    for (size_t i = 0; i < ns; ++i) neg[i] = -g.pad_begin[i];
    fill3(p->copy.off, neg, 0);
  }
  set_descriptors(c, *p, t, nd_dims(c, N, C, xs), nd_dims(c, N, M, g.out), nd_dims(c, M, C / group, g.kernel), pads, g,
                  group, false, "internal: cuDNN's output dims differ from the shape rule's " + dims_str(Y.dims));

  cudnnHandle_t h = static_cast<cudnnHandle_t>(c.res.cudnn());
  Plan& pr = *p;
  AlgoOps ops;
  ops.tactic_key = "cudnn_fwd_algo";
  ops.heuristic = [&] {
    int n = 0;
    ok(c, cudnnGetConvolutionForwardAlgorithmMaxCount(h, &n), "GetConvolutionForwardAlgorithmMaxCount");
    std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(size_t(std::max(n, 1)));
    int got_n = 0;
    ok(c, cudnnGetConvolutionForwardAlgorithm_v7(h, pr.d.x, pr.d.w, pr.d.conv, pr.d.y, n, &got_n, perf.data()),
       "GetConvolutionForwardAlgorithm_v7");
    return candidates(perf.data(), got_n);
  };
  ops.find = [&](void* ws, size_t bytes) {
    int n = 0;
    ok(c, cudnnGetConvolutionForwardAlgorithmMaxCount(h, &n), "GetConvolutionForwardAlgorithmMaxCount");
    std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(size_t(std::max(n, 1)));
    int got_n = 0;
    char* base = static_cast<char*>(ws);
    // The input's contents do not matter for timing: the padded buffer need not be filled.
    const void* x = pr.aux ? base : X.data;
    ok(c, cudnnFindConvolutionForwardAlgorithmEx(h, pr.d.x, x, pr.d.w, W.data, pr.d.conv, pr.d.y, Y.data, n, &got_n,
                                                 perf.data(), base + align256(pr.aux), bytes),
       "FindConvolutionForwardAlgorithmEx");
    return candidates(perf.data(), got_n);
  };
  ops.ws_size = [&](int algo, size_t& bytes) {
    return cudnnGetConvolutionForwardWorkspaceSize(h, pr.d.x, pr.d.w, pr.d.conv, pr.d.y,
                                                   cudnnConvolutionFwdAlgo_t(algo), &bytes) == CUDNN_STATUS_SUCCESS;
  };
  choose_algo(c, pr, t, ops);
  return p;
}

void conv_kernel(KernelCtx& c) {
  const DevTensor& X = *c.in[0];
  const DevTensor& W = *c.in[1];
  const DevTensor* B = c.input(2);
  const DevTensor& Y = *c.out[0];
  check_common(c, X, W, B);
  const std::vector<int64_t> k = spatial(W.dims);
  check_kernel_attr(c, k);
  WindowGeom g;
  if (auto e = window_geom(c.node, spatial(X.dims), k, false, g); !e.empty()) c.fail(e);
  if (g.out != spatial(Y.dims)) c.fail("output dims disagree with the shape rule");
  const int64_t C = X.dim(1), M = W.dim(0), G = c.node.attr_i("group", 1);
  if (G < 1 || C % G != 0 || M % G != 0 || W.dim(1) * G != C) c.fail("channels do not match group " + std::to_string(G));
  if (Y.numel() == 0) return;
  if (C == 0) return zeros_plus_bias(c, Y, B);

  ConvState& st = state(c);
  std::unique_ptr<Plan>& slot = st.plans[dims_str(X.dims) + dims_str(W.dims)];
  if (!slot) slot = conv_plan(c, X, W, Y, g, G);
  const Plan& p = *slot;

  cudnnHandle_t h = static_cast<cudnnHandle_t>(c.res.cudnn());
  char* ws = static_cast<char*>(c.res.workspace(align256(p.aux) + p.ws));
  const void* x = X.data;
  if (p.aux) {
    launch_window_copy(p.copy, dtype_size(X.dtype), X.data, ws, c.stream());
    x = ws;
  }
  const Scale one(1.0), zero(0.0);
  ok(c, cudnnConvolutionForward(h, one.of(X.dtype), p.d.x, x, p.d.w, W.data, p.d.conv, cudnnConvolutionFwdAlgo_t(p.algo),
                                ws + align256(p.aux), p.ws, zero.of(X.dtype), p.d.y, Y.data),
     "ConvolutionForward");
  if (B) launch_bias_add(Y.dtype, Y.data, B->data, Y.dim(0), M, prod(g.out), c.stream());
}

// ---- ConvTranspose ----

std::unique_ptr<Plan> conv_transpose_plan(KernelCtx& c, const DevTensor& X, const DevTensor& W, const DevTensor& Y,
                                          const WindowGeom& g, int64_t group) {
  auto p = std::make_unique<Plan>(c);
  const DType t = X.dtype;
  const int64_t N = X.dim(0), C = X.dim(1), M = Y.dim(1);
  const size_t ns = g.kernel.size();
  // cuDNN's backward data takes pads `pb` when the forward convolution with symmetric pads
  // pb maps an output-sized tensor back onto exactly the input's size: output position
  // o = i·stride + k·dilation − pb, as ConvTranspose places them (positions past the output
  // are dropped either way).
  bool direct = true;
  for (size_t i = 0; i < ns; ++i) {
    const int64_t ek = (g.kernel[i] - 1) * g.dilations[i] + 1;
    const int64_t span = g.out[i] + 2 * g.pad_begin[i] - ek;
    direct = direct && g.pad_begin[i] >= 0 && span >= 0 && span / g.strides[i] + 1 == g.in[i];
  }
  std::vector<int64_t> ys = g.out, pads = g.pad_begin;
  if (!direct) {
    // The uncropped output (every position an input touches, no padding) and a crop:
    // Y[o] = full[o + pad_begin], zero past the full extent.
    for (size_t i = 0; i < ns; ++i) {
      ys[i] = g.strides[i] * (g.in[i] - 1) + (g.kernel[i] - 1) * g.dilations[i] + 1;
      pads[i] = 0;
    }
    p->aux = size_t(N * M * prod(ys)) * dtype_size(t);
    p->copy.planes = N * M;
    fill3(p->copy.src, ys, 1);
    fill3(p->copy.dst, g.out, 1);
    fill3(p->copy.off, g.pad_begin, 0);
  }
  set_descriptors(c, *p, t, nd_dims(c, N, C, g.in), nd_dims(c, N, M, ys), nd_dims(c, C, M / group, g.kernel), pads, g,
                  group, true,
                  "internal: the transposed geometry does not map the output back onto the input " + dims_str(X.dims));

  cudnnHandle_t h = static_cast<cudnnHandle_t>(c.res.cudnn());
  Plan& pr = *p;
  AlgoOps ops;
  ops.tactic_key = "cudnn_bwd_data_algo";
  ops.heuristic = [&] {
    int n = 0;
    ok(c, cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &n), "GetConvolutionBackwardDataAlgorithmMaxCount");
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(size_t(std::max(n, 1)));
    int got_n = 0;
    ok(c, cudnnGetConvolutionBackwardDataAlgorithm_v7(h, pr.d.w, pr.d.x, pr.d.conv, pr.d.y, n, &got_n, perf.data()),
       "GetConvolutionBackwardDataAlgorithm_v7");
    return candidates(perf.data(), got_n);
  };
  ops.find = [&](void* ws, size_t bytes) {
    int n = 0;
    ok(c, cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &n), "GetConvolutionBackwardDataAlgorithmMaxCount");
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(size_t(std::max(n, 1)));
    int got_n = 0;
    char* base = static_cast<char*>(ws);
    void* y = pr.aux ? static_cast<void*>(base) : Y.data;
    ok(c, cudnnFindConvolutionBackwardDataAlgorithmEx(h, pr.d.w, W.data, pr.d.x, X.data, pr.d.conv, pr.d.y, y, n, &got_n,
                                                      perf.data(), base + align256(pr.aux), bytes),
       "FindConvolutionBackwardDataAlgorithmEx");
    return candidates(perf.data(), got_n);
  };
  ops.ws_size = [&](int algo, size_t& bytes) {
    return cudnnGetConvolutionBackwardDataWorkspaceSize(h, pr.d.w, pr.d.x, pr.d.conv, pr.d.y,
                                                        cudnnConvolutionBwdDataAlgo_t(algo), &bytes) == CUDNN_STATUS_SUCCESS;
  };
  choose_algo(c, pr, t, ops);
  return p;
}

void conv_transpose_kernel(KernelCtx& c) {
  const DevTensor& X = *c.in[0];
  const DevTensor& W = *c.in[1];
  const DevTensor* B = c.input(2);
  const DevTensor& Y = *c.out[0];
  check_common(c, X, W, B);
  const std::vector<int64_t> k = spatial(W.dims);
  check_kernel_attr(c, k);
  WindowGeom g;
  if (auto e = conv_transpose_geom(c.node, spatial(X.dims), k, g); !e.empty()) c.fail(e);
  if (g.out != spatial(Y.dims)) c.fail("output dims disagree with the shape rule");
  const int64_t C = X.dim(1), G = c.node.attr_i("group", 1), M = W.dim(1) * G;
  if (G < 1 || C % G != 0 || W.dim(0) != C || Y.dim(1) != M) c.fail("channels do not match group " + std::to_string(G));
  if (Y.numel() == 0) return;
  if (C == 0 || W.dim(1) == 0) return zeros_plus_bias(c, Y, B);

  ConvState& st = state(c);
  std::unique_ptr<Plan>& slot = st.plans[dims_str(X.dims) + dims_str(W.dims)];
  if (!slot) slot = conv_transpose_plan(c, X, W, Y, g, G);
  const Plan& p = *slot;

  cudnnHandle_t h = static_cast<cudnnHandle_t>(c.res.cudnn());
  char* ws = static_cast<char*>(c.res.workspace(align256(p.aux) + p.ws));
  void* y = p.aux ? static_cast<void*>(ws) : Y.data;
  const Scale one(1.0), zero(0.0);
  ok(c, cudnnConvolutionBackwardData(h, one.of(X.dtype), p.d.w, W.data, p.d.x, X.data, p.d.conv,
                                     cudnnConvolutionBwdDataAlgo_t(p.algo), ws + align256(p.aux), p.ws, zero.of(X.dtype),
                                     p.d.y, y),
     "ConvolutionBackwardData");
  if (p.aux) launch_window_copy(p.copy, dtype_size(X.dtype), ws, Y.data, c.stream());
  if (B) launch_bias_add(Y.dtype, Y.data, B->data, Y.dim(0), M, prod(g.out), c.stream());
}

}  // namespace

void register_conv_kernels() {
  register_kernel("Conv", conv_kernel);
  register_kernel("ConvTranspose", conv_transpose_kernel);
  register_pool_kernels();
}

}  // namespace shardrt::cuda
