// The seed's simple model, built with the Network API: an MLP 10→3200→1600→500→100 with
// ReLUs on a 20×10 input. Builds an engine, saves and reloads it, runs it, and checks the
// result against a plain loop evaluation of the same weights.
//
//   simple_mlp [ENGINE_PATH]
#include <cmath>
#include <cstdio>
#include <random>

#include "shardrt/engine.h"
#include "shardrt/network.h"

using namespace shardrt;

namespace {

Tensor random_tensor(Dims d, std::mt19937& rng, float scale) {
  std::normal_distribution<float> nd(0.f, scale);
  Tensor t(DType::F32, d);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = nd(rng);
  return t;
}

// y = relu?(x · wᵀ + b), x [m, k], w [n, k]
std::vector<float> dense(const std::vector<float>& x, int64_t m, const Tensor& w, const Tensor& b, bool relu) {
  int64_t n = w.dim(0), k = w.dim(1);
  std::vector<float> y(size_t(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = b.data<float>()[j];
      for (int64_t p = 0; p < k; ++p) s += double(x[size_t(i * k + p)]) * w.data<float>()[j * k + p];
      y[size_t(i * n + j)] = relu && s < 0 ? 0.f : float(s);
    }
  return y;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path = argc > 1 ? argv[1] : "simple_mlp.engine";
  std::mt19937 rng(42);
  const std::vector<int64_t> sizes = {10, 3200, 1600, 500, 100};
  std::vector<Tensor> ws, bs;
  Network net("simple_mlp");
  ITensor h = net.input("x", DType::F32, {-1, 10}, {"batch"});
  for (size_t l = 0; l + 1 < sizes.size(); ++l) {
    ws.push_back(random_tensor({sizes[l + 1], sizes[l]}, rng, 1.f / std::sqrt(float(sizes[l]))));
    bs.push_back(random_tensor({sizes[l + 1]}, rng, 0.1f));
    std::string nm = "layer" + std::to_string(l);
    ITensor w = net.weight(nm + ".weight", ws.back());
    ITensor b = net.weight(nm + ".bias", bs.back());
    h = net.linear(h, w, b, l + 2 < sizes.size() ? Activation::Relu : Activation::None, nm);
  }
  net.output(h, "y");

  BuildConfig cfg;
  cfg.shapes["x"] = ShapeProfile{{1, 10}, {20, 10}, {64, 10}};
  try {
    build_engine(net, cfg).save(path);
    Engine engine = Engine::load(path);
    ExecutionContext ctx(engine);
    Tensor x = random_tensor({20, 10}, rng, 1.f);
    Tensor y = ctx.run({{"x", x}}).at("y");

    std::vector<float> ref(x.data<float>(), x.data<float>() + x.numel());
    int64_t m = 20;
    for (size_t l = 0; l < ws.size(); ++l) ref = dense(ref, m, ws[l], bs[l], l + 1 < ws.size());
    // fp32 GEMMs sum 3200 products in a different order than the double-precision loop:
    // errors of a few ulp per term stay far below 1e-4 relative to the output's scale.
    double max_err = 0, max_ref = 0;
    for (int64_t i = 0; i < y.numel(); ++i) {
      max_err = std::max(max_err, double(std::fabs(y.data<float>()[i] - ref[size_t(i)])));
      max_ref = std::max(max_ref, double(std::fabs(ref[size_t(i)])));
    }
    bool ok = max_err <= 1e-4 * std::max(1.0, max_ref);
    std::printf("simple_mlp: engine %s, output %s, max |err| %.3g (max |y| %.3g): %s\n", path.c_str(),
                dims_str(y.dims()).c_str(), max_err, max_ref, ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "simple_mlp: error: %s\n", e.what());
    return 1;
  }
}
