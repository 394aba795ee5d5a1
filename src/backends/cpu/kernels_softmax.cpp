// CPU kernels of Softmax, LogSoftmax and Hardmax over one axis (opset-13 semantics).
// fp32 over the last axis runs straight on the rows; any other case gathers each line
// into a float (double for fp64) buffer. Lines are spread across the cores.
#include <algorithm>
#include <cmath>
#include <limits>

#include "backends/cpu/elementwise_impl.h"

namespace shardrt::cpu {

namespace {

enum class Mode { Soft, LogSoft, Hard };

constexpr int kLanes = 16;

template <class V> inline V exp_v(V x) {
  if constexpr (std::is_same_v<V, float>) return fast_expf(x);
  else return std::exp(x);
}

template <class V> V row_max(const V* x, int64_t n) {
  V lane[kLanes];
  for (int j = 0; j < kLanes; ++j) lane[j] = -std::numeric_limits<V>::infinity();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) lane[j] = x[i + j] > lane[j] ? x[i + j] : lane[j];
  V m = lane[0];
  for (int j = 1; j < kLanes; ++j) m = lane[j] > m ? lane[j] : m;
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// One line: x and y contiguous, n elements (y may alias x).
template <class V> void line(const V* x, V* y, int64_t n, Mode mode) {
  if (n == 0) return;
  if (mode == Mode::Hard) {
    // One-hot at the first maximum.
    int64_t best = 0;
    for (int64_t i = 1; i < n; ++i) if (x[i] > x[best]) best = i;
    for (int64_t i = 0; i < n; ++i) y[i] = V(0);
    y[best] = V(1);
    return;
  }
  // Subtracting the max keeps exp in range. A line of only -inf gives NaN, as the
  // reference math does.
  V m = row_max(x, n);
  V lane[kLanes] = {};
  int64_t i = 0;
  if (mode == Mode::Soft) {
    for (; i + kLanes <= n; i += kLanes)
      for (int j = 0; j < kLanes; ++j) {
        V e = exp_v(x[i + j] - m);
        y[i + j] = e;
        lane[j] += e;
      }
    V s = 0;
    for (int j = 0; j < kLanes; ++j) s += lane[j];
    for (; i < n; ++i) { V e = exp_v(x[i] - m); y[i] = e; s += e; }
    V inv = V(1) / s;
    for (int64_t k = 0; k < n; ++k) y[k] *= inv;
  } else {
    for (; i + kLanes <= n; i += kLanes)
      for (int j = 0; j < kLanes; ++j) lane[j] += exp_v(x[i + j] - m);
    V s = 0;
    for (int j = 0; j < kLanes; ++j) s += lane[j];
    for (; i < n; ++i) s += exp_v(x[i] - m);
    V sub = m + std::log(s);
    for (int64_t k = 0; k < n; ++k) y[k] = x[k] - sub;
  }
}

template <class T> void run(const Tensor& in, Tensor& out, int64_t axis, Mode mode) {
  AxisView v(in.dims(), axis);
  const T* x = in.data<T>();
  T* y = out.data<T>();
  int64_t lines = v.outer * v.inner;
  int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(v.n, 1));
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    if (v.inner == 1) {
      parallel_for(lines, grain, [&](int64_t b, int64_t e) {
        for (int64_t l = b; l < e; ++l) line<T>(x + l * v.n, y + l * v.n, v.n, mode);
      });
      return;
    }
  }
  using V = std::conditional_t<std::is_same_v<T, double>, double, float>;
  parallel_for(lines, grain, [&](int64_t b, int64_t e) {
    std::vector<V> buf(size_t(v.n));
    for (int64_t l = b; l < e; ++l) {
      int64_t o = l / v.inner, i = l % v.inner;
      int64_t base = o * v.n * v.inner + i;
      for (int64_t k = 0; k < v.n; ++k) buf[size_t(k)] = V(ld(x[base + k * v.inner]));
      line<V>(buf.data(), buf.data(), v.n, mode);
      for (int64_t k = 0; k < v.n; ++k) y[base + k * v.inner] = st<T>(buf[size_t(k)]);
    }
  });
}

void reg(const char* name, Mode mode) {
  register_kernel(name, [mode](KernelCtx& c) {
    const Tensor& x = *c.in[0];
    int64_t r = x.rank();
    int64_t a = c.node.attr_i("axis", -1);
    if (a < -r || a >= r) c.fail("axis " + std::to_string(a) + " is out of range for rank " + std::to_string(r));
    if (a < 0) a += r;
    dispatch(x.dtype(), [&](auto tg) {
      using T = typename decltype(tg)::type;
      if constexpr (is_floating_v<T>) run<T>(x, *c.out[0], a, mode);
      else c.fail(std::string("unsupported element type ") + dtype_name(x.dtype()));
    });
  });
}

}  // namespace

void register_softmax_kernels() {
  reg("Softmax", Mode::Soft);
  reg("LogSoftmax", Mode::LogSoft);
  reg("Hardmax", Mode::Hard);
}

}  // namespace shardrt::cpu
