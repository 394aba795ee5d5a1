// Tests of the neural-network ops (schemas and CPU kernels): MatMul, Gemm, Conv,
// ConvTranspose, pools, normalizations, LRN, Resize, Einsum, and the GEMM helper.
// References: plain loops in this file (obviously right, computed in double) or values
// produced with torch / numpy and pasted in (see each constant's comment).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/gemm.h"
#include "ir/graph.h"
#include "ir/op_schema.h"

using namespace shardrt;

namespace {

// The deterministic input pattern the pasted references were generated from:
// x[i] = ((i * mul) % mod) / 50 - 1, rounded to fp32.
Tensor seq(Dims d, int mul = 37, int mod = 101) {
  Tensor t(DType::F32, d);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = float(double((i * mul) % mod) / 50.0 - 1.0);
  return t;
}

Tensor rnd(Dims d, uint32_t seed, DType t = DType::F32) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  Tensor f(DType::F32, d);
  for (int64_t i = 0; i < f.numel(); ++i) f.data<float>()[i] = u(g);
  return t == DType::F32 ? f : f.cast(t);
}

Tensor rnd_int(Dims d, uint32_t seed, DType t) {
  std::mt19937 g(seed);
  std::uniform_int_distribution<int> u(-5, 5);
  Tensor r(t, d);
  for (int64_t i = 0; i < r.numel(); ++i) r.set_f(i, u(g));
  return r;
}

// Builds a one-node graph over inputs of the given tensors, runs build-time inference
// (which must agree with the run-time shapes) and the CPU kernel.
struct OneNode {
  Graph g;
  Node* n = nullptr;
  std::vector<Tensor> out;
  OneNode(const std::string& op, std::vector<const Tensor*> ins, std::map<std::string, Attr> attrs = {},
          size_t n_out = 1, bool inputs_constant = false) {
    std::vector<Value*> vs;
    for (size_t i = 0; i < ins.size(); ++i) {
      if (!ins[i]) { vs.push_back(nullptr); continue; }
      if (inputs_constant) vs.push_back(g.add_constant("in" + std::to_string(i), ins[i]->clone()));
      else vs.push_back(g.add_input("in" + std::to_string(i), ins[i]->dtype(), dims_shape(ins[i]->dims())));
      vs.back()->shape_inferred = true;
    }
    std::vector<std::string> outs;
    for (size_t i = 0; i < n_out; ++i) outs.push_back("out" + std::to_string(i));
    n = g.add_node(op, "node", vs, outs, attrs);
    const OpSchema* s = find_schema(op);
    EXPECT_NE(s, nullptr);
    if (s && s->validate) EXPECT_EQ(s->validate(*n), "");
    infer_node(g, *n);
    out = cpu::eval_node(*n, ins);
    for (size_t i = 0; i < n_out; ++i) {
      const Shape& sh = n->outputs[i]->shape;
      if (shape_known(sh)) EXPECT_EQ(shape_dims(sh), out[i].dims()) << op << " output " << i;
    }
  }
};

void expect_near(const Tensor& got, const std::vector<double>& want, double atol, double rtol, const std::string& what) {
  ASSERT_EQ(got.numel(), int64_t(want.size())) << what;
  for (int64_t i = 0; i < got.numel(); ++i) {
    const double w = want[size_t(i)];
    ASSERT_NEAR(got.get_f(i), w, atol + rtol * std::fabs(w)) << what << " at " << i;
  }
}

std::vector<double> as_vec(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// Naive numpy-style matmul in double.
std::vector<double> ref_matmul(const Tensor& A, const Tensor& B, const Dims& yd) {
  Dims a = A.dims(), b = B.dims();
  const bool a1 = a.size() == 1, b1 = b.size() == 1;
  if (a1) a.insert(a.begin(), 1);
  if (b1) b.push_back(1);
  const int64_t M = a[a.size() - 2], K = a.back(), N = b.back();
  Dims ab(a.begin(), a.end() - 2), bb(b.begin(), b.end() - 2);
  const size_t r = std::max(ab.size(), bb.size());
  while (ab.size() < r) ab.insert(ab.begin(), 1);
  while (bb.size() < r) bb.insert(bb.begin(), 1);
  Dims ob(r);
  for (size_t i = 0; i < r; ++i) ob[i] = std::max(ab[i], bb[i]);
  std::vector<double> y;
  const int64_t cnt = numel(ob);
  for (int64_t bi = 0; bi < cnt; ++bi) {
    int64_t rem = bi, oa = 0, obb = 0, sa = 1, sb = 1;
    for (size_t d = r; d-- > 0;) {
      const int64_t id = rem % ob[d];
      rem /= ob[d];
      oa += (ab[d] == 1 ? 0 : id) * sa;
      obb += (bb[d] == 1 ? 0 : id) * sb;
      sa *= ab[d];
      sb *= bb[d];
    }
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += A.get_f(oa * M * K + i * K + k) * B.get_f(obb * K * N + k * N + j);
        y.push_back(s);
      }
  }
  EXPECT_EQ(int64_t(y.size()), numel(yd));
  return y;
}

}  // namespace

// resize bilinear half_pixel 1x2x3x4 -> 5x7
const std::vector<float> kResizeBilinear = {-1.0f, -0.7357142f, -0.3128571f, 0.1100001f, 0.3885711f, -0.3428574f, -0.8f, -0.624f, -0.3597142f, 0.0631429f, 0.08199998f, 0.01428557f, -0.2554286f, -0.424f, -0.06f, 0.2042858f, 0.6271429f, 0.03999985f, -0.5471427f, -0.1242856f, 0.14f, 0.5040001f, 0.3354286f, 0.06571411f, -0.002000031f, -0.06971429f, -0.3394287f, -0.5080001f, 0.88f, 0.4228571f, -0.3085715f, -0.02999992f, 0.2485712f, -0.4828573f, -0.94f, -0.2f, 0.06428576f, 0.4871429f, -0.1000002f, -0.6871427f, -0.2642856f, 0.0f, 0.176f, 0.1517143f, 0.1128571f, -0.1280001f, -0.3111427f, 0.1117144f, 0.376f, 0.74f, 0.2828571f, -0.4485715f, -0.1699999f, 0.2528573f, 0.6757144f, 0.94f, 0.09199984f, 0.06771424f, 0.02885726f, -0.2120001f, -0.3951428f, 0.02771426f, 0.2919998f, -0.34f, -0.07571425f, 0.3471429f, -0.2400001f, -0.8271427f, -0.4042856f, -0.14f};

// resize bilinear align_corners -> 5x7
const std::vector<float> kResizeBilinearAC = {-1.0f, -0.63f, -0.26f, 0.11f, 0.48f, -0.16f, -0.8f, -0.53f, -0.16f, 0.21f, 0.07499999f, -0.06000002f, -0.195f, -0.33f, -0.06f, 0.31f, 0.68f, 0.03999999f, -0.6f, -0.23f, 0.14f, 0.41f, 0.275f, 0.14f, 0.004999995f, -0.13f, -0.265f, -0.4f, 0.88f, 0.24f, -0.4f, -0.03f, 0.34f, -0.3f, -0.94f, -0.2f, 0.17f, 0.54f, -0.09999999f, -0.74f, -0.37f, 0.0f, 0.27f, 0.135f, 0.0f, -0.135f, -0.27f, 0.09999999f, 0.47f, 0.74f, 0.09999999f, -0.54f, -0.17f, 0.2f, 0.57f, 0.94f, 0.2f, 0.065f, -0.07000001f, -0.205f, -0.34f, 0.03f, 0.4f, -0.34f, 0.03f, 0.4f, -0.24f, -0.88f, -0.51f, -0.14f};

// resize bicubic half_pixel (A=-0.75) -> 5x7
const std::vector<float> kResizeBicubic = {-1.163661f, -0.8955244f, -0.4357192f, 0.3242751f, 0.5424875f, -0.3305776f, -1.036477f, -0.79081f, -0.3896165f, 0.1405583f, 0.2037774f, -0.03553108f, -0.2496226f, -0.392325f, -0.1334202f, 0.2708676f, 0.6967859f, 0.03999984f, -0.6167858f, -0.1908672f, 0.2134202f, 0.6321954f, 0.4255048f, 0.1238521f, -0.02151498f, -0.1312908f, -0.3453826f, -0.4880855f, 1.116478f, 0.4105775f, -0.4624879f, -0.0367199f, 0.3890475f, -0.4840176f, -1.189917f, -0.3829004f, 0.1186303f, 0.6583281f, -0.07510018f, -0.8559834f, -0.4330328f, -0.01681977f, 0.2612519f, 0.1995849f, 0.08030925f, -0.2092326f, -0.2713841f, 0.1687565f, 0.5159002f, 0.8669974f, 0.25834f, -0.5009457f, -0.3593749f, 0.2765221f, 0.7333581f, 1.01342f, 0.1654915f, 0.1038249f, -0.01545036f, -0.3049925f, -0.3671445f, 0.07299622f, 0.42014f, -0.5363405f, -0.03480972f, 0.5048881f, -0.2285402f, -1.009423f, -0.5864727f, -0.1702598f};

// resize nearest (asymmetric floor) -> 5x7
const std::vector<float> kResizeNearest = {-1.0f, -1.0f, -0.26f, -0.26f, 0.48f, 0.48f, -0.8f, -1.0f, -1.0f, -0.26f, -0.26f, 0.48f, 0.48f, -0.8f, -0.06f, -0.06f, 0.68f, 0.68f, -0.6f, -0.6f, 0.14f, -0.06f, -0.06f, 0.68f, 0.68f, -0.6f, -0.6f, 0.14f, 0.88f, 0.88f, -0.4f, -0.4f, 0.34f, 0.34f, -0.94f, -0.2f, -0.2f, 0.54f, 0.54f, -0.74f, -0.74f, 0.0f, -0.2f, -0.2f, 0.54f, 0.54f, -0.74f, -0.74f, 0.0f, 0.74f, 0.74f, -0.54f, -0.54f, 0.2f, 0.2f, 0.94f, 0.74f, 0.74f, -0.54f, -0.54f, 0.2f, 0.2f, 0.94f, -0.34f, -0.34f, 0.4f, 0.4f, -0.88f, -0.88f, -0.14f};

// Resize linear antialias=1, sizes [1,2,2,3], from onnx.reference.ReferenceEvaluator (onnxruntime
// agrees to 1e-7; torch's antialiased interpolate treats the borders differently).
const std::vector<float> kResizeAntialias = {-0.48484847f, 0.08666667f, -0.32121214f, 0.40121213f, -0.00666667f, -0.41454545f,
                                             0.13151516f, -0.12333333f, 0.11151515f, 0.03818182f, -0.21666667f, 0.01818182f};

// avgpool k3 s2 p1 ceil count_include_pad=False 5x5
const std::vector<float> kAvgCeilExcl = {-0.295f, -0.02666668f, -0.09500001f, 0.03666667f, 0.02444444f, 0.2366667f, 0.2f, -0.03666667f, 0.4f};

// avgpool k3 s2 p1 ceil count_include_pad=True 5x5
const std::vector<float> kAvgCeilIncl = {-0.1311111f, -0.01777779f, -0.04222222f, 0.02444445f, 0.02444444f, 0.1577778f, 0.08888889f, -0.02444445f, 0.1777778f};

// maxpool k2 s2 ceil 5x5
const std::vector<float> kMaxCeil = {0.68f, 0.88f, -0.06f, 0.74f, 0.54f, 0.94f, 0.4f, -0.14f, 0.6f};

// maxpool indices
const std::vector<float> kMaxCeilIdx = {5.0f, 8.0f, 4.0f, 16.0f, 13.0f, 19.0f, 21.0f, 23.0f, 24.0f};

// convT group2 s(2,1) p(1,0,0,1)->torch padding (1,0) op(1,0) d(1,2)
const std::vector<float> kConvT = {0.104f, -1.0504f, 0.0704f, -1.0296f, 0.3987999f, -1.0552f, -0.642f, -0.008000016f, -1.4584f, -0.2376f, -1.3336f, -0.5132f, -1.2088f, -1.0008f, -0.2079999f, -1.3624f, -0.4496f, -1.2376f, -0.1452f, -1.3912f, -0.978f, -0.4f, -1.8504f, -0.9175999f, -1.6216f, -0.9851999f, -1.3928f, -1.1848f, -0.52f, -1.6744f, -0.9696f, -1.4456f, -0.6892f, -1.7272f, -1.314f, 0.4960001f, -0.9248f, 0.5452f, -0.904f, 0.2936f, -1.0804f, -0.1408f, -0.268f, -1.1264f, 0.05839998f, -1.28f, -0.1824f, -1.1552f, -0.85f, 0.112f, -1.3088f, -0.1188f, -1.184f, -0.2784f, -1.3724f, -0.4328f, -0.5f, -1.3584f, -0.5336f, -1.64f, -0.7983999f, -1.4112f, -1.106f, -0.272f, -1.6928f, -0.7828f, -1.464f, -0.8504f, -1.6644f, -0.7248f, -0.144f, -0.9728f, 0.5332f, -0.9984f, 0.3164f, -0.9776f, -0.6832f, -0.168f, -1.2928f, -0.4108f, -1.168f, -0.1064f, -1.3216f, -0.9192f, -0.368f, -1.1968f, -0.04280001f, -1.3504f, -0.2835999f, -1.2256f, -0.9312f, -0.472f, -1.5968f, -0.9147999f, -1.368f, -0.6344f, -1.6496f, -1.2472f, -0.592f, -1.4208f, -0.6187999f, -1.7024f, -0.8836f, -1.4736f, -1.1792f, -1.488f, -1.1504f, -1.624f, -0.7524f, -1.6516f, -1.178f, -0.7272f, -2.048f, 0.256f, -1.96f, -0.0456f, -2.3248f, 0.3256f, -1.0952f, -1.768f, 0.02399999f, -2.196f, -0.1152f, -2.2476f, 0.09359998f, -1.0312f, -0.6304001f, -0.104f, -1.3236f, -0.3016f, -1.066f, -0.05839998f, -1.4792f, -0.6744f, -0.256f, -0.748f, -0.4072f, -1.3488f, -0.2104f, -1.3352f, -1.748f, -1.3132f, -1.4056f, -1.1936f, -1.7464f, -1.3408f, -0.7928f, -1.568f, -0.288f, -2.164f, 0.08319998f, -1.9024f, -0.2184f, -1.0472f, -2.1f, 0.1528f, -2.0056f, -0.1488f, -2.3704f, 0.2224f, -1.1688f, -0.7984f, -0.488f, -1.076f, -0.2448f, -1.3636f, -0.4424f, -1.2712f, -0.7148f, -0.1992f, -1.3936f, -0.3968f, -1.136f, -0.1536f, -1.5448f, -1.428f, -1.2092f, -1.6976f, -1.3564f, -1.412f, -1.2368f, -0.9047999f, -1.9f, -0.1592f, -2.3216f, -0.2984f, -2.3732f, -0.08959997f, -1.1848f, -1.62f, -0.3912f, -2.2096f, -0.01999998f, -1.948f, -0.3216f, -1.1208f, -0.8388f, -0.4312f, -0.898f, -0.5824f, -1.4988f, -0.3856f, -1.4808f, -0.8828f, -0.5832f, -1.146f, -0.34f, -1.4336f, -0.5376f, -1.3368f, -0.4888f, -1.6432f, -0.9176f, -1.4248f, -0.6348f, -1.6936f, -1.2804f, -0.7528f, -2.2032f, 0.4904f, -1.8808f, 0.0848f, -1.5584f, -0.3808f, -0.8008f, -1.9552f, 0.1784f, -1.6328f, -0.088f, -2.0296f, 0.1208f, -1.1448f, -0.656f, -0.1896001f, -0.7548f, -0.3872f, -0.8536f, -0.5648f, -1.1128f, -0.732f, -0.3416001f, -0.8308001f, -0.632f, -0.7092f, -0.2152f, -0.2336f, -1.6544f, -0.7164f, -1.436f, -0.7932f, -1.6352f, -0.6956f, -0.7088f, -1.5672f, 0.1456f, -1.964f, 0.5056001f, -1.6416f, -0.003199995f, -0.6176f, -2.0384f, 0.5992f, -1.716f, 0.08920002f, -1.9272f, -0.05840003f, -0.9408f, -0.668f, -0.4464f, -0.5464001f, -0.1104f, -0.6452f, -0.2592f, -1.0016f, -0.5236f, -0.06480002f, -0.6224f, -0.4828f, -0.1992f, -0.3504f, -0.5696f, -1.3984f, -0.5612f, -1.6672f, -0.8236f, -1.4488f, -1.1544f, -0.7456f, -1.8704f, 0.2072f, -1.548f, -0.05920011f, -1.9448f, 0.1543999f, -0.7936f, -1.6224f, 0.03439993f, -2.0192f, 0.3943999f, -1.6968f, -0.1096f, -1.0496f, -0.6796f, -0.2968001f, -0.7784f, -0.5872f, -0.6568f, -0.1736f, -1.0176f, -0.7556f, -0.5416f, -0.6339999f, -0.2056f, -0.7327999f, -0.3576f, -0.6464f, -0.228f, -0.6908f, -0.378f, -1.2892f, -0.1800001f, -1.3048f, -0.9544f, -0.428f, -1.878f, -0.532f, -1.642f, -0.404f, -1.8248f, -0.9264001f, -0.508f, -1.2628f, -0.67f, -1.8852f, -0.484f, -1.6088f, -1.3144f, -0.788f, -0.7164f, -0.788f, -1.0296f, -0.788f, -0.31f, -1.2064f, -0.788f, -0.4612f, -0.962f, -0.4612f, -0.788f, -0.418f, -0.6795999f, -0.164f, -1.3336f, -0.372f, -1.0736f, -0.116f, -1.5072f, -0.9784f, -0.668f, -1.5512f, -0.54f, -1.8604f, -0.644f, -1.4728f, -1.0316f, -0.516f, -1.9336f, -0.62f, -1.6976f, -0.492f, -1.8832f, -1.1784f, -0.868f, -1.1096f, -0.868f, -0.7964f, -0.868f, -0.6059999f, -1.3836f, -0.868f, -0.7964f, -0.868f, -1.1096f, -0.868f, -0.4008f, -0.8636f, -0.564f, -1.0948f, -0.308f, -1.38f, -0.516f, -1.3152f, -1.0836f, -0.676f, -1.3984f, -0.838f, -2.0208f, -0.652f, -1.7472f, -1.0556f, -0.756f, -1.6068f, -0.628f, -1.916f, -0.732f, -1.5312f, -1.3556f, -0.948f, -0.6212f, -1.122f, -0.6212f, -0.948f, -0.5888f, -1.2476f, -0.948f, -1.1896f, -0.948f, -0.8764f, -0.948f, -0.6968f};

// einsum bij,jk->bki
const std::vector<float> kEinBijJk = {1.642f, -0.2424f, 0.09520006f, 1.0736f, 0.06879997f, -0.08759999f, 1.2136f, -0.2732f, 0.5024f, 1.1052f, 0.06560001f, -0.08519995f, 1.2452f, -0.2764f, 0.5048f, 0.2308f, -1.29f, 0.704f, 0.4832f, -1.0872f, 0.8976f, 0.1468f, -0.9764f, 0.5668f, 0.4912f, -1.114f, 0.9168f, 0.1548f, -1.0032f, 0.586f};

// einsum ...ii->...i
const std::vector<float> kEinDiag = {-1.0f, -0.06f, 0.88f, -0.4f, 0.54f, -0.54f};

// einsum bhid,bhjd->bhij
const std::vector<float> kEinAttn = {1.574f, 1.1772f, 1.2404f, 1.3036f, 1.3668f, -0.2464f, -0.2804f, -0.2868f, -0.2932f, -0.2996f, -0.00639993f, 0.4032f, 0.408f, 0.4128f, 0.4175999f, 0.1812f, 0.4456f, 0.4615999f, 0.4776f, 0.4936f, -1.1104f, -0.98f, -1.0336f, -1.0872f, -1.1408f, 0.6683999f, 0.8264f, 0.8648f, 0.9032f, 0.9416f, -0.724f, -0.7552001f, -0.4828f, -0.514f, -0.5452f, -0.4888f, -0.5088f, -0.2896f, -0.3095999f, -0.3296f, -0.2536f, -0.2624001f, -0.09640002f, -0.1052001f, -0.114f, 0.104f, 0.1064f, -0.0844f, -0.02679998f, -0.02440003f, 0.3308f, 0.3444f, 0.5972f, 0.1691999f, 0.1828f, 0.5576f, 0.5824f, 0.3496f, 0.3652f, 0.3899999f};

// einsum ij,jk (implicit -> ik)
const std::vector<float> kEinImplicit = {1.642f, 1.0736f, 1.2136f, 1.1052f, 1.2452f, -0.2424f, 0.06879997f, -0.2732f, 0.06560001f, -0.2764f, 0.09520006f, -0.08759999f, 0.5024f, -0.08519995f, 0.5048f};

// einsum i,j->ij
const std::vector<float> kEinOuter = {1.0f, 0.78f, 0.26f, 0.2028f, -0.48f, -0.3744f};

// ---------------------------------------------------------------- MatMul / Gemm / GEMM helper

TEST(NnMatMul, Fp32ShapesAgainstLoop) {
  const std::vector<std::pair<Dims, Dims>> cases = {
      {{3, 4}, {4, 5}},       {{2, 3, 4}, {4, 6}},  {{2, 1, 3, 4}, {5, 4, 6}}, {{4}, {4, 3}},
      {{2, 3, 4}, {4}},       {{4}, {4}},           {{1, 3, 4}, {2, 4, 2}},    {{3, 0}, {0, 2}},
      {{2, 33, 70}, {2, 70, 65}}};
  uint32_t seed = 1;
  for (auto& [ad, bd] : cases) {
    Tensor A = rnd(ad, seed++), B = rnd(bd, seed++);
    OneNode r("MatMul", {&A, &B});
    // fp32 sums of <= 70 products of values in [-1, 1]: rounding stays below 1e-4.
    expect_near(r.out[0], ref_matmul(A, B, r.out[0].dims()), 1e-4, 1e-5, "MatMul " + dims_str(ad) + "x" + dims_str(bd));
  }
}

TEST(NnMatMul, HalfTypes) {
  for (DType t : {DType::F16, DType::BF16}) {
    Tensor A = rnd({2, 5, 16}, 3, t), B = rnd({16, 7}, 4, t);
    OneNode r("MatMul", {&A, &B});
    EXPECT_EQ(r.out[0].dtype(), t);
    // Inputs are already rounded to t, products accumulate in fp32; only the final rounding
    // to t remains: 2^-8 relative for bf16 (2^-11 for fp16) of values up to ~4.
    const double tol = t == DType::BF16 ? 4.0 / 128 : 4.0 / 1024;
    expect_near(r.out[0], ref_matmul(A, B, r.out[0].dims()), tol, 0, dtype_name(t));
  }
}

TEST(NnMatMul, IntegersExact) {
  for (DType t : {DType::I32, DType::I64}) {
    Tensor A = rnd_int({2, 3, 4}, 5, t), B = rnd_int({2, 4, 3}, 6, t);
    OneNode r("MatMul", {&A, &B});
    expect_near(r.out[0], ref_matmul(A, B, r.out[0].dims()), 0, 0, dtype_name(t));  // exact
  }
}

TEST(NnMatMul, SymbolicBatchShape) {
  Graph g;
  Value* a = g.add_input("a", DType::F32, {Dim::symbol("batch"), Dim::symbol("seq"), Dim(64)});
  Value* b = g.add_input("b", DType::F32, {Dim(64), Dim(32)});
  Node* n = g.add_node("MatMul", "mm", {a, b}, {"y"});
  infer_node(g, *n);
  const Shape& s = n->outputs[0]->shape;
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].sym, "batch");
  EXPECT_EQ(s[1].sym, "seq");
  EXPECT_EQ(s[2].value, 32);
  Value* bad = g.add_input("c", DType::F32, {Dim(63), Dim(32)});
  Node* m = g.add_node("MatMul", "bad", {a, bad}, {"z"});
  EXPECT_THROW(infer_node(g, *m), GraphError);
}

TEST(NnGemm, AttributesAndBroadcastC) {
  struct Case { bool ta, tb; float alpha, beta; Dims cd; };
  const std::vector<Case> cases = {{false, false, 1.f, 1.f, {}},        {true, false, 0.5f, 2.f, {5}},
                                   {false, true, 1.f, 1.f, {3, 1}},    {true, true, -1.f, 0.25f, {3, 5}},
                                   {false, false, 1.f, 1.f, {1}},      {false, true, 2.f, 0.f, {3, 5}}};
  uint32_t seed = 10;
  for (const auto& cs : cases) {
    const int64_t M = 3, N = 5, K = 4;
    Tensor A = rnd(cs.ta ? Dims{K, M} : Dims{M, K}, seed++), B = rnd(cs.tb ? Dims{N, K} : Dims{K, N}, seed++);
    Tensor C = rnd(cs.cd.empty() ? Dims{1} : cs.cd, seed++);
    std::map<std::string, Attr> at{{"transA", Attr::of(int64_t(cs.ta))}, {"transB", Attr::of(int64_t(cs.tb))},
                                   {"alpha", Attr::of(cs.alpha)}, {"beta", Attr::of(cs.beta)}};
    OneNode r("Gemm", {&A, &B, cs.cd.empty() ? nullptr : &C}, at);
    std::vector<double> want;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k)
          s += A.get_f(cs.ta ? k * M + i : i * K + k) * B.get_f(cs.tb ? j * K + k : k * N + j);
        double cv = 0;
        if (!cs.cd.empty()) {
          const int64_t cm = cs.cd.size() == 2 ? cs.cd[0] : 1, cn = cs.cd.back();
          cv = C.get_f((cm == 1 ? 0 : i) * cn + (cn == 1 ? 0 : j));
        }
        want.push_back(cs.alpha * s + cs.beta * cv);
      }
    // A handful of fp32 products: rounding well below 1e-5.
    expect_near(r.out[0], want, 1e-5, 1e-5, "Gemm");
  }
}

TEST(NnGemm, IntegerGemm) {
  Tensor A = rnd_int({3, 4}, 1, DType::I64), B = rnd_int({4, 2}, 2, DType::I64), C = rnd_int({2}, 3, DType::I64);
  OneNode r("Gemm", {&A, &B, &C});
  std::vector<double> want = ref_matmul(A, B, {3, 2});
  for (int64_t i = 0; i < 6; ++i) want[size_t(i)] += C.get_f(i % 2);
  expect_near(r.out[0], want, 0, 0, "int Gemm");  // exact
}

TEST(NnGemmHelper, BatchedWithRepeatedOffsets) {
  // Grouped-query style: 4 query heads share 2 KV heads; S = Q K^T per head (trans_b).
  const int64_t H = 4, Hkv = 2, S = 3, D = 8, T = 5;
  for (DType t : {DType::F32, DType::F16}) {
    Tensor Q = rnd({H, S, D}, 7, t), K = rnd({Hkv, T, D}, 8, t);
    Tensor Y(t, {H, S, T});
    std::vector<int64_t> ao, bo, co;
    for (int64_t h = 0; h < H; ++h) { ao.push_back(h * S * D); bo.push_back((h / 2) * T * D); co.push_back(h * S * T); }
    cpu::gemm_batched(t, false, true, S, T, D, 0.5f, Q.raw(), D, ao.data(), K.raw(), D, bo.data(), 0.f, Y.raw(), T,
                      co.data(), H);
    std::vector<double> want;
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < S; ++i)
        for (int64_t j = 0; j < T; ++j) {
          double s = 0;
          for (int64_t d = 0; d < D; ++d) s += Q.get_f(h * S * D + i * D + d) * K.get_f((h / 2) * T * D + j * D + d);
          want.push_back(0.5 * s);
        }
    // fp16 output rounding of values up to ~4: 2^-11 * 4; fp32: sum of 8 products.
    expect_near(Y, want, t == DType::F16 ? 4.0 / 2048 : 1e-5, 0, dtype_name(t));
  }
}

TEST(NnGemmHelper, MatmulNdTransposeFlags) {
  Tensor A = rnd({2, 4, 3}, 1), B = rnd({5, 4}, 2);  // A^T: [2,3,4], B^T: [4,5]
  Tensor Y(DType::F32, {2, 3, 5});
  cpu::matmul_nd(A, B, Y, true, true);
  std::vector<double> want;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 5; ++j) {
        double s = 0;
        for (int64_t k = 0; k < 4; ++k) s += A.get_f(b * 12 + k * 3 + i) * B.get_f(j * 4 + k);
        want.push_back(s);
      }
  expect_near(Y, want, 1e-5, 1e-5, "matmul_nd trans");  // 4 fp32 products per value
}

// ---------------------------------------------------------------- Conv / ConvTranspose

namespace {

struct ConvCfg {
  Dims x, w;
  int64_t group = 1;
  std::vector<int64_t> strides, dil, pads;
  std::string auto_pad = "NOTSET";
};

// Direct convolution in double with explicit pads (begin..., end...).
std::vector<double> ref_conv(const Tensor& X, const Tensor& W, const Tensor* B, int64_t group,
                             const std::vector<int64_t>& s, const std::vector<int64_t>& d,
                             const std::vector<int64_t>& pb, const Dims& yd) {
  const size_t ns = X.dims().size() - 2;
  const int64_t N = X.dim(0), C = X.dim(1), M = W.dim(0), Cg = C / group, Mg = M / group;
  Dims in(X.dims().begin() + 2, X.dims().end()), k(W.dims().begin() + 2, W.dims().end()),
      out(yd.begin() + 2, yd.end());
  const int64_t I = numel(in), K = numel(k), P = numel(out);
  std::vector<double> y(size_t(N * M * P), 0.0);
  std::vector<int64_t> o(ns), kk(ns);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t p = 0; p < P; ++p) {
        int64_t rem = p;
        for (size_t a = ns; a-- > 0;) { o[a] = rem % out[a]; rem /= out[a]; }
        double acc = B ? B->get_f(m) : 0.0;
        const int64_t g = m / Mg;
        for (int64_t c = 0; c < Cg; ++c)
          for (int64_t q = 0; q < K; ++q) {
            int64_t r2 = q, off = 0;
            bool ok = true;
            for (size_t a = ns; a-- > 0;) { kk[a] = r2 % k[a]; r2 /= k[a]; }
            for (size_t a = 0; a < ns; ++a) {
              const int64_t ic = o[a] * s[a] - pb[a] + kk[a] * d[a];
              if (ic < 0 || ic >= in[a]) ok = false;
              off = off * in[a] + ic;
            }
            if (ok) acc += X.get_f((n * C + g * Cg + c) * I + off) * W.get_f((m * Cg + c) * K + q);
          }
        y[size_t((n * M + m) * P + p)] = acc;
      }
  return y;
}

}  // namespace

TEST(NnConv, ConfigurationsAgainstDirectLoop) {
  // {x, w, group, strides, dilations, pads(begin..., end...), auto_pad}
  const std::vector<ConvCfg> cases = {
      {{1, 3, 7}, {4, 3, 3}, 1, {1}, {1}, {1, 1}},
      {{2, 4, 9}, {6, 2, 3}, 2, {2}, {2}, {0, 2}},
      {{2, 3, 6, 7}, {5, 3, 3, 3}, 1, {1, 1}, {1, 1}, {1, 1, 1, 1}},
      {{1, 4, 8, 8}, {4, 1, 3, 3}, 4, {2, 2}, {1, 1}, {1, 0, 0, 1}},     // depthwise, asymmetric pads
      {{1, 6, 7, 5}, {6, 2, 2, 3}, 3, {1, 2}, {2, 1}, {0, 1, 1, 0}},     // grouped, dilated
      {{2, 8, 5, 5}, {16, 8, 1, 1}, 1, {1, 1}, {1, 1}, {0, 0, 0, 0}},    // 1x1 (no im2col)
      {{1, 2, 7, 6}, {3, 2, 3, 2}, 1, {2, 2}, {1, 1}, {}, "SAME_UPPER"},
      {{1, 2, 7, 6}, {3, 2, 3, 2}, 1, {2, 2}, {1, 1}, {}, "SAME_LOWER"},
      {{1, 2, 7, 6}, {3, 2, 3, 2}, 1, {2, 1}, {1, 1}, {}, "VALID"},
      {{1, 2, 4, 5, 6}, {3, 2, 2, 3, 2}, 1, {1, 2, 1}, {1, 1, 2}, {1, 0, 1, 0, 1, 1}},  // 3-D
  };
  uint32_t seed = 100;
  for (const auto& cs : cases) {
    for (DType t : {DType::F32, DType::F16}) {
      Tensor X = rnd(cs.x, seed, t), W = rnd(cs.w, seed + 1, t), B = rnd({cs.w[0]}, seed + 2, t);
      std::map<std::string, Attr> at{{"group", Attr::of(cs.group)}, {"strides", Attr::of(cs.strides)},
                                     {"dilations", Attr::of(cs.dil)}, {"auto_pad", Attr::of(cs.auto_pad)}};
      if (!cs.pads.empty()) at["pads"] = Attr::of(cs.pads);
      OneNode r("Conv", {&X, &W, &B}, at);
      // Pads the reference uses: explicit, or what SAME_* means (total split, extra at the end
      // for UPPER / the beginning for LOWER).
      const size_t ns = cs.x.size() - 2;
      std::vector<int64_t> pb(ns, 0);
      for (size_t a = 0; a < ns; ++a) {
        if (!cs.pads.empty()) pb[a] = cs.pads[a];
        if (cs.auto_pad.rfind("SAME", 0) == 0) {
          const int64_t in = cs.x[a + 2], out = (in + cs.strides[a] - 1) / cs.strides[a];
          const int64_t total = std::max<int64_t>(0, (out - 1) * cs.strides[a] + (cs.w[a + 2] - 1) * cs.dil[a] + 1 - in);
          pb[a] = cs.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
          EXPECT_EQ(r.out[0].dim(int64_t(a + 2)), out);
        }
      }
      // fp32: sums of <= 72 products in [-1,1]. fp16: output rounding 2^-11 of values up to ~8.
      const double tol = t == DType::F32 ? 1e-4 : 8.0 / 2048;
      expect_near(r.out[0], ref_conv(X, W, &B, cs.group, cs.strides, cs.dil, pb, r.out[0].dims()), tol, 0,
                  "Conv " + dims_str(cs.x) + " " + cs.auto_pad + " " + dtype_name(t));
    }
    seed += 3;
  }
}

TEST(NnConv, SymbolicSpatialAndChannelMismatch) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim::symbol("N"), Dim(3), Dim::symbol("H"), Dim(32)});
  Value* w = g.add_constant("w", rnd({8, 3, 3, 3}, 1));
  Node* n = g.add_node("Conv", "c", {x, w}, {"y"}, {{"strides", Attr::of(std::vector<int64_t>{2, 2})},
                                                   {"pads", Attr::of(std::vector<int64_t>{1, 1, 1, 1})}});
  infer_node(g, *n);
  const Shape& s = n->outputs[0]->shape;
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[0].sym, "N");
  EXPECT_EQ(s[1].value, 8);
  EXPECT_FALSE(s[2].known());
  EXPECT_EQ(s[3].value, 16);
  Value* w2 = g.add_constant("w2", rnd({8, 4, 3, 3}, 1));
  Node* bad = g.add_node("Conv", "bad", {x, w2}, {"z"});
  EXPECT_THROW(infer_node(g, *bad), GraphError);
}

TEST(NnConvTranspose, AgainstTorchGroupStrideDilationOutputPadding) {
  // torch.nn.functional.conv_transpose2d(x, w, b, stride=(2,1), padding=(1,0),
  // output_padding=(1,0), groups=2, dilation=(1,2)) on seq() inputs.
  Tensor X = seq({2, 4, 3, 3}), W = seq({4, 3, 2, 3}, 13, 29), B = seq({6}, 7, 11);
  std::map<std::string, Attr> at{{"group", Attr::of(int64_t(2))},
                                 {"strides", Attr::of(std::vector<int64_t>{2, 1})},
                                 {"pads", Attr::of(std::vector<int64_t>{1, 0, 1, 0})},
                                 {"output_padding", Attr::of(std::vector<int64_t>{1, 0})},
                                 {"dilations", Attr::of(std::vector<int64_t>{1, 2})}};
  OneNode r("ConvTranspose", {&X, &W, &B}, at);
  EXPECT_EQ(r.out[0].dims(), (Dims{2, 6, 5, 7}));
  // Pasted fp32 values printed with 7 significant digits; sums of <= 12 products.
  expect_near(r.out[0], as_vec(kConvT), 1e-5, 1e-5, "ConvTranspose");
}

TEST(NnConvTranspose, OneDAndOutputShapeAgainstScatterLoop) {
  // 1-D with output_shape larger than the natural size (the extra tail gets only the bias)
  // and SAME_UPPER; the reference scatters each input element through the kernel.
  Tensor X = rnd({2, 3, 5}, 1), W = rnd({3, 2, 3}, 2), B = rnd({2}, 3);
  for (int mode = 0; mode < 2; ++mode) {
    std::map<std::string, Attr> at{{"strides", Attr::of(std::vector<int64_t>{2})}};
    int64_t out = 0, pb = 0;
    if (mode == 0) { at["output_shape"] = Attr::of(std::vector<int64_t>{12}); out = 12; pb = 0; }
    else { at["auto_pad"] = Attr::of(std::string("SAME_UPPER")); out = 10; pb = (2 * 4 + 3 - 10) / 2; }
    OneNode r("ConvTranspose", {&X, &W, &B}, at);
    ASSERT_EQ(r.out[0].dims(), (Dims{2, 2, out}));
    std::vector<double> want(size_t(2 * 2 * out));
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t m = 0; m < 2; ++m) {
        for (int64_t o = 0; o < out; ++o) want[size_t((n * 2 + m) * out + o)] = B.get_f(m);
        for (int64_t c = 0; c < 3; ++c)
          for (int64_t i = 0; i < 5; ++i)
            for (int64_t k = 0; k < 3; ++k) {
              const int64_t o = i * 2 + k - pb;
              if (o >= 0 && o < out) want[size_t((n * 2 + m) * out + o)] += X.get_f((n * 3 + c) * 5 + i) * W.get_f((c * 2 + m) * 3 + k);
            }
      }
    expect_near(r.out[0], want, 1e-5, 1e-5, "ConvTranspose 1-D");  // a few fp32 products
  }
}

// ---------------------------------------------------------------- pools

TEST(NnPool, CeilModeAgainstTorch) {
  Tensor X = seq({1, 1, 5, 5});
  auto at = [](int64_t incl) {
    return std::map<std::string, Attr>{{"kernel_shape", Attr::of(std::vector<int64_t>{3, 3})},
                                       {"strides", Attr::of(std::vector<int64_t>{2, 2})},
                                       {"pads", Attr::of(std::vector<int64_t>{1, 1, 1, 1})},
                                       {"ceil_mode", Attr::of(int64_t(1))},
                                       {"count_include_pad", Attr::of(incl)}};
  };
  // torch avg_pool2d(k=3, s=2, p=1, ceil_mode=True, count_include_pad=False/True); pasted
  // with 7 significant digits.
  OneNode a0("AveragePool", {&X}, at(0));
  expect_near(a0.out[0], as_vec(kAvgCeilExcl), 1e-6, 1e-6, "avg exclude pad");
  OneNode a1("AveragePool", {&X}, at(1));
  expect_near(a1.out[0], as_vec(kAvgCeilIncl), 1e-6, 1e-6, "avg include pad");
  // torch max_pool2d(k=2, s=2, ceil_mode=True, return_indices=True).
  OneNode m("MaxPool", {&X},
            {{"kernel_shape", Attr::of(std::vector<int64_t>{2, 2})}, {"strides", Attr::of(std::vector<int64_t>{2, 2})},
             {"ceil_mode", Attr::of(int64_t(1))}},
            2);
  expect_near(m.out[0], as_vec(kMaxCeil), 0, 0, "max");  // max is exact
  EXPECT_EQ(m.out[1].dtype(), DType::I64);
  expect_near(m.out[1], as_vec(kMaxCeilIdx), 0, 0, "indices");
}

TEST(NnPool, MaxPoolStorageOrderAndDtypes) {
  Tensor X = rnd({2, 2, 4, 3}, 9);
  OneNode m("MaxPool", {&X},
            {{"kernel_shape", Attr::of(std::vector<int64_t>{2, 2})}, {"storage_order", Attr::of(int64_t(1))}}, 2);
  // Check each index points (column-major within the plane) at the max of its window.
  for (int64_t pl = 0; pl < 4; ++pl)
    for (int64_t oh = 0; oh < 3; ++oh)
      for (int64_t ow = 0; ow < 2; ++ow) {
        double best = -1e9;
        int64_t bi = -1;
        for (int64_t kh = 0; kh < 2; ++kh)
          for (int64_t kw = 0; kw < 2; ++kw) {
            const int64_t h = oh + kh, w = ow + kw;
            const double v = X.get_f(pl * 12 + h * 3 + w);
            if (v > best) { best = v; bi = pl * 12 + w * 4 + h; }
          }
        EXPECT_EQ(m.out[0].get_f(pl * 6 + oh * 2 + ow), best);
        EXPECT_EQ(m.out[1].get_i(pl * 6 + oh * 2 + ow), bi);
      }
  Tensor U(DType::U8, {1, 1, 3, 3});
  for (int i = 0; i < 9; ++i) U.data<uint8_t>()[i] = uint8_t(250 - i * 7);
  OneNode mu("MaxPool", {&U}, {{"kernel_shape", Attr::of(std::vector<int64_t>{2, 2})}});
  EXPECT_EQ(mu.out[0].dtype(), DType::U8);
  EXPECT_EQ(mu.out[0].data<uint8_t>()[3], 250 - 4 * 7);  // window {4,5,7,8}: max at 4
}

TEST(NnPool, AveragePool1dDilatedAndGlobalPools) {
  Tensor X = rnd({2, 3, 11}, 4, DType::BF16);
  OneNode a("AveragePool", {&X},
            {{"kernel_shape", Attr::of(std::vector<int64_t>{3})}, {"dilations", Attr::of(std::vector<int64_t>{2})},
             {"pads", Attr::of(std::vector<int64_t>{2, 1})}, {"strides", Attr::of(std::vector<int64_t>{3})}});
  ASSERT_EQ(a.out[0].dims(), (Dims{2, 3, 4}));  // (11 + 3 - 5) / 3 + 1
  std::vector<double> want;
  for (int64_t pl = 0; pl < 6; ++pl)
    for (int64_t o = 0; o < 4; ++o) {
      double s = 0;
      int cnt = 0;
      for (int64_t k = 0; k < 3; ++k) {
        const int64_t i = o * 3 - 2 + 2 * k;
        if (i >= 0 && i < 11) { s += X.get_f(pl * 11 + i); ++cnt; }
      }
      want.push_back(s / cnt);
    }
  expect_near(a.out[0], want, 1.0 / 128, 0, "avg bf16");  // bf16 output rounding (2^-8 of <= 1)
  Tensor Y = rnd({2, 3, 4, 5}, 5);
  OneNode ga("GlobalAveragePool", {&Y});
  OneNode gm("GlobalMaxPool", {&Y});
  ASSERT_EQ(ga.out[0].dims(), (Dims{2, 3, 1, 1}));
  for (int64_t pl = 0; pl < 6; ++pl) {
    double s = 0, mx = -1e9;
    for (int64_t i = 0; i < 20; ++i) { s += Y.get_f(pl * 20 + i); mx = std::max(mx, Y.get_f(pl * 20 + i)); }
    EXPECT_NEAR(ga.out[0].get_f(pl), s / 20, 1e-6);  // 20 fp32 values summed in double
    EXPECT_EQ(gm.out[0].get_f(pl), mx);
  }
}

// ---------------------------------------------------------------- normalizations

namespace {

// Layer-norm of rows of length `inner` in double.
std::vector<double> ref_layernorm(const Tensor& X, int64_t inner, const Tensor* S, const Tensor* B, double eps,
                                  std::vector<double>* mean = nullptr, std::vector<double>* inv = nullptr) {
  std::vector<double> y;
  for (int64_t r = 0; r < X.numel() / inner; ++r) {
    double m = 0, v = 0;
    for (int64_t i = 0; i < inner; ++i) m += X.get_f(r * inner + i);
    m /= double(inner);
    for (int64_t i = 0; i < inner; ++i) v += (X.get_f(r * inner + i) - m) * (X.get_f(r * inner + i) - m);
    v /= double(inner);
    const double iv = 1 / std::sqrt(v + eps);
    if (mean) mean->push_back(m);
    if (inv) inv->push_back(iv);
    for (int64_t i = 0; i < inner; ++i)
      y.push_back((X.get_f(r * inner + i) - m) * iv * (S ? S->get_f(i % S->numel()) : 1.0) +
                  (B ? B->get_f(i % B->numel()) : 0.0));
  }
  return y;
}

}  // namespace

TEST(NnNorm, LayerNormLastAxisAllTypes) {
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    Tensor X = rnd({3, 5, 77}, 21, t), S = rnd({77}, 22, t), B = rnd({77}, 23, t);
    OneNode r("LayerNormalization", {&X, &S, &B}, {{"epsilon", Attr::of(1e-5f)}}, 3);
    std::vector<double> mean, inv;
    auto want = ref_layernorm(X, 77, &S, &B, 1e-5, &mean, &inv);
    // fp32: single-precision stats over 77 values (~1e-5 relative); half types: output
    // rounding of values up to ~4 (2^-11 * 4 for fp16, 2^-8 * 4 for bf16).
    const double tol = t == DType::F32 ? 1e-4 : t == DType::F16 ? 4.0 / 2048 : 4.0 / 256;
    expect_near(r.out[0], want, tol, 0, std::string("LayerNorm ") + dtype_name(t));
    EXPECT_EQ(r.out[1].dims(), (Dims{3, 5, 1}));
    EXPECT_EQ(r.out[1].dtype(), DType::F32);
    expect_near(r.out[1], mean, 1e-5, 0, "Mean");   // fp32 mean of 77 values
    expect_near(r.out[2], inv, 0, 1e-4, "InvStdDev");  // fp32 variance, relative
  }
}

TEST(NnNorm, LayerNormInnerAxisBroadcastScaleNoBias) {
  Tensor X = rnd({2, 3, 4, 5}, 31), S = rnd({1, 5}, 32);
  OneNode r("LayerNormalization", {&X, &S}, {{"axis", Attr::of(int64_t(-3))}});
  // Normalized over 60 values; scale [1,5] broadcasts over [3,4,5].
  expect_near(r.out[0], ref_layernorm(X, 60, &S, nullptr, 1e-5), 1e-4, 0, "LayerNorm axis=-3");
}

TEST(NnNorm, BatchInstanceGroupNorm) {
  Tensor X = rnd({2, 4, 3, 5}, 41);
  Tensor s = rnd({4}, 42), b = rnd({4}, 43), mean = rnd({4}, 44), var = rnd({4}, 45);
  for (int64_t i = 0; i < 4; ++i) var.data<float>()[i] = std::fabs(var.data<float>()[i]) + 0.1f;
  OneNode bn("BatchNormalization", {&X, &s, &b, &mean, &var}, {{"epsilon", Attr::of(1e-3f)}});
  std::vector<double> want;
  for (int64_t i = 0; i < X.numel(); ++i) {
    const int64_t c = (i / 15) % 4;
    want.push_back((X.get_f(i) - mean.get_f(c)) / std::sqrt(var.get_f(c) + 1e-3) * s.get_f(c) + b.get_f(c));
  }
  expect_near(bn.out[0], want, 1e-5, 1e-5, "BatchNorm");  // one fp32 multiply-add per value
  // InstanceNorm == LayerNorm over each (n, c) plane with per-channel affine.
  OneNode in("InstanceNormalization", {&X, &s, &b}, {{"epsilon", Attr::of(1e-5f)}});
  want.clear();
  for (int64_t pl = 0; pl < 8; ++pl) {
    Tensor plane = X.reshaped({8, 15});
    auto v = ref_layernorm(plane, 15, nullptr, nullptr, 1e-5);
    for (int64_t i = 0; i < 15; ++i) want.push_back(v[size_t(pl * 15 + i)] * s.get_f(pl % 4) + b.get_f(pl % 4));
  }
  expect_near(in.out[0], want, 1e-5, 1e-5, "InstanceNorm");  // fp64 stats, fp32 affine
  // GroupNorm, 2 groups of 2 channels: per-channel (opset 21) and per-group (opset 18) affine.
  for (int64_t pc : {4, 2}) {
    Tensor gs = rnd({pc}, 46), gb = rnd({pc}, 47);
    OneNode gn("GroupNormalization", {&X, &gs, &gb}, {{"num_groups", Attr::of(int64_t(2))}, {"epsilon", Attr::of(1e-5f)}});
    auto v = ref_layernorm(X.reshaped({4, 30}), 30, nullptr, nullptr, 1e-5);
    want.clear();
    for (int64_t i = 0; i < X.numel(); ++i) {
      const int64_t c = (i / 15) % 4, pi = pc == 4 ? c : c / 2;
      want.push_back(v[size_t(i)] * gs.get_f(pi) + gb.get_f(pi));
    }
    expect_near(gn.out[0], want, 1e-5, 1e-5, "GroupNorm");  // fp64 stats, fp32 affine
  }
}

TEST(NnNorm, Lrn) {
  Tensor X = rnd({2, 5, 3, 2}, 51);
  OneNode r("LRN", {&X}, {{"size", Attr::of(int64_t(4))}, {"alpha", Attr::of(2e-2f)}, {"beta", Attr::of(0.6f)}, {"bias", Attr::of(1.5f)}});
  std::vector<double> want;
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 5; ++c)
      for (int64_t i = 0; i < 6; ++i) {
        double sq = 0;
        // ONNX: channels c - floor((size-1)/2) .. c + ceil((size-1)/2).
        for (int64_t k = std::max<int64_t>(0, c - 1); k <= std::min<int64_t>(4, c + 2); ++k)
          sq += X.get_f((n * 5 + k) * 6 + i) * X.get_f((n * 5 + k) * 6 + i);
        want.push_back(X.get_f((n * 5 + c) * 6 + i) / std::pow(1.5 + 2e-2 / 4 * sq, 0.6));
      }
  expect_near(r.out[0], want, 1e-6, 1e-5, "LRN");  // fp32 pow of values near 1
}

TEST(NnNorm, ValidationRefusals) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim(1), Dim(2)});
  Node* bn = g.add_node("BatchNormalization", "bn", {x, x, x, x, x}, {"y"}, {{"training_mode", Attr::of(int64_t(1))}});
  EXPECT_NE(find_schema("BatchNormalization")->validate(*bn), "");
  Node* rs = g.add_node("Resize", "rs", {x}, {"z"}, {{"mode", Attr::of(std::string("area"))}});
  EXPECT_NE(find_schema("Resize")->validate(*rs), "");
}

// ---------------------------------------------------------------- Resize

namespace {

std::vector<Tensor> resize_run(const Tensor& X, const Dims& sizes, std::map<std::string, Attr> at) {
  Tensor sz = Tensor::from_i64(std::vector<int64_t>(sizes.begin(), sizes.end()));
  OneNode r("Resize", {&X, nullptr, nullptr, &sz}, std::move(at), 1, /*inputs_constant=*/true);
  return r.out;
}

}  // namespace

TEST(NnResize, AgainstTorchInterpolate) {
  const Tensor X = seq({1, 2, 3, 4});
  const Dims sz{1, 2, 5, 7};
  auto s = [](const char* v) { return Attr::of(std::string(v)); };
  // Pasted from torch.nn.functional.interpolate(size=(5, 7)) (antialias: from ONNX's
  // reference) with 7-8 significant digits; the interpolation itself is computed in double.
  expect_near(resize_run(X, sz, {{"mode", s("linear")}})[0], as_vec(kResizeBilinear), 1e-6, 1e-6, "bilinear");
  expect_near(resize_run(X, sz, {{"mode", s("linear")}, {"coordinate_transformation_mode", s("align_corners")}})[0],
              as_vec(kResizeBilinearAC), 1e-6, 1e-6, "bilinear align_corners");
  expect_near(resize_run(X, sz, {{"mode", s("cubic")}})[0], as_vec(kResizeBicubic), 1e-6, 1e-6, "bicubic");
  expect_near(resize_run(X, sz, {{"mode", s("nearest")}, {"coordinate_transformation_mode", s("asymmetric")},
                                 {"nearest_mode", s("floor")}})[0],
              as_vec(kResizeNearest), 0, 0, "nearest");  // copies: exact
  expect_near(resize_run(X, {1, 2, 2, 3}, {{"mode", s("linear")}, {"antialias", Attr::of(int64_t(1))}})[0],
              as_vec(kResizeAntialias), 1e-6, 1e-6, "bilinear antialias");
}

TEST(NnResize, ScalesAxesAndIntNearest) {
  Tensor X(DType::I64, {1, 3, 2});
  for (int64_t i = 0; i < 6; ++i) X.data<int64_t>()[i] = (int64_t(1) << 40) + i;  // exactness beyond fp32
  Tensor sc = Tensor::from_f32({1}, {2.0f});
  OneNode r("Resize", {&X, nullptr, &sc}, {{"axes", Attr::of(std::vector<int64_t>{2})}, {"mode", Attr::of(std::string("nearest"))}},
            1, true);
  ASSERT_EQ(r.out[0].dims(), (Dims{1, 3, 4}));
  // half_pixel + round_prefer_floor doubling: 0,0,1,1 per row.
  const int64_t want[] = {0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5};
  for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(r.out[0].data<int64_t>()[i], (int64_t(1) << 40) + want[i]);
}

TEST(NnResize, UnknownScalesGiveUnknownDims) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim(1), Dim(3), Dim(8), Dim(8)});
  Value* sc = g.add_input("scales", DType::F32, {Dim(2)});
  Node* n = g.add_node("Resize", "r", {x, nullptr, sc}, {"y"},
                       {{"axes", Attr::of(std::vector<int64_t>{2, 3})}});
  infer_node(g, *n);
  const Shape& s = n->outputs[0]->shape;
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[1].value, 3);
  EXPECT_FALSE(s[2].known());
  EXPECT_FALSE(s[3].known());
}

// ---------------------------------------------------------------- Einsum

TEST(NnEinsum, AgainstNumpy) {
  auto eq = [](const char* e) { return std::map<std::string, Attr>{{"equation", Attr::of(std::string(e))}}; };
  // Pasted from numpy.einsum with 7 significant digits.
  {
    Tensor A = seq({2, 3, 4}), B = seq({4, 5}, 11, 23);
    OneNode r("Einsum", {&A, &B}, eq("bij,jk->bki"));
    EXPECT_EQ(r.out[0].dims(), (Dims{2, 5, 3}));
    expect_near(r.out[0], as_vec(kEinBijJk), 1e-6, 1e-6, "bij,jk->bki");
  }
  {
    Tensor C = seq({2, 3, 3});
    OneNode r("Einsum", {&C}, eq("...ii ->...i"));
    expect_near(r.out[0], as_vec(kEinDiag), 0, 0, "diagonal");  // copies: exact
  }
  {
    Tensor D = seq({2, 2, 3, 4}), E = seq({2, 2, 5, 4}, 11, 23);
    OneNode r("Einsum", {&D, &E}, eq("bhid,bhjd->bhij"));
    expect_near(r.out[0], as_vec(kEinAttn), 1e-6, 1e-6, "bhid,bhjd->bhij");
  }
  {
    Tensor A = seq({3, 4}), B = seq({4, 5}, 11, 23);
    OneNode r("Einsum", {&A, &B}, eq("ij,jk"));
    EXPECT_EQ(r.out[0].dims(), (Dims{3, 5}));
    expect_near(r.out[0], as_vec(kEinImplicit), 1e-6, 1e-6, "implicit ij,jk");
  }
  {
    Tensor A = seq({3}), B = seq({2}, 11, 23);
    OneNode r("Einsum", {&A, &B}, eq("i,j->ij"));
    expect_near(r.out[0], as_vec(kEinOuter), 1e-6, 1e-6, "outer");
  }
}

TEST(NnEinsum, LoopPathsAndIntegers) {
  auto eq = [](const char* e) { return std::map<std::string, Attr>{{"equation", Attr::of(std::string(e))}}; };
  // Three operands, a label summed within one operand, a broadcast ellipsis, integers.
  Tensor A = rnd_int({2, 3}, 1, DType::I32), B = rnd_int({3, 4}, 2, DType::I32), C = rnd_int({4}, 3, DType::I32);
  OneNode r("Einsum", {&A, &B, &C}, eq("ij,jk,k->i"));
  ASSERT_EQ(r.out[0].dtype(), DType::I32);
  for (int64_t i = 0; i < 2; ++i) {
    int64_t s = 0;
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t k = 0; k < 4; ++k) s += A.get_i(i * 3 + j) * B.get_i(j * 4 + k) * C.get_i(k);
    EXPECT_EQ(r.out[0].get_i(i), s);
  }
  Tensor X = rnd({1, 3, 4}, 4), Y = rnd({2, 4, 5}, 5);
  OneNode b("Einsum", {&X, &Y}, eq("...ij,...jk->...ik"));  // X's batch of 1 broadcasts
  EXPECT_EQ(b.out[0].dims(), (Dims{2, 3, 5}));
  expect_near(b.out[0], ref_matmul(X, Y, {2, 3, 5}), 1e-5, 1e-5, "broadcast ellipsis");  // 4 products
  Tensor Z = rnd({3, 4}, 6);
  OneNode s("Einsum", {&Z, &Y}, eq("ij,bjk->bk"));  // i summed within Z alone
  for (int64_t bb = 0; bb < 2; ++bb)
    for (int64_t k = 0; k < 5; ++k) {
      double acc = 0;
      for (int64_t i = 0; i < 3; ++i)
        for (int64_t j = 0; j < 4; ++j) acc += Z.get_f(i * 4 + j) * Y.get_f((bb * 4 + j) * 5 + k);
      EXPECT_NEAR(s.out[0].get_f(bb * 5 + k), acc, 1e-5);  // 12 products, double accumulation
    }
}
