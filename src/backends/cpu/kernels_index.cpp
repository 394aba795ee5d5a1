// CPU kernels of the index-producing and scanning ops over one axis: ArgMax, ArgMin,
// CumSum and TopK. Each works on lines of the [outer, n, inner] view, spread across cores.
#include <algorithm>
#include <numeric>

#include "backends/cpu/elementwise_impl.h"

namespace shardrt::cpu {

namespace {

int64_t norm_axis(KernelCtx& c, int64_t a, int64_t r) {
  if (a < -r || a >= r) c.fail("axis " + std::to_string(a) + " is out of range for rank " + std::to_string(r));
  return a < 0 ? a + r : a;
}

void arg_kernel(KernelCtx& c, bool is_max) {
  const Tensor& x = *c.in[0];
  int64_t axis = norm_axis(c, c.node.attr_i("axis", 0), x.rank());
  bool last = c.node.attr_i("select_last_index", 0) != 0;
  AxisView v(x.dims(), axis);
  if (v.n == 0) c.fail("cannot take ArgMax/ArgMin over an empty axis");
  int64_t* y = c.out[0]->data<int64_t>();
  dispatch(x.dtype(), [&](auto tg) {
    using T = typename decltype(tg)::type;
    if constexpr (is_floating_v<T> || is_integer_v<T>) {
      const T* p = x.data<T>();
      parallel_for(v.outer * v.inner, std::max<int64_t>(1, 16384 / v.n), [&](int64_t b, int64_t e) {
        for (int64_t l = b; l < e; ++l) {
          int64_t o = l / v.inner, i = l % v.inner;
          const T* q = p + o * v.n * v.inner + i;
          auto best = ld(q[0]);
          int64_t bi = 0;
          for (int64_t k = 1; k < v.n; ++k) {
            auto val = ld(q[k * v.inner]);
            bool better = is_max ? (last ? val >= best : val > best) : (last ? val <= best : val < best);
            if (better) { best = val; bi = k; }
          }
          y[l] = bi;
        }
      });
    } else {
      c.fail(std::string("unsupported element type ") + dtype_name(x.dtype()));
    }
  });
}

void cumsum_kernel(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  const Tensor* at = c.input(1);
  if (!at || at->numel() != 1) c.fail("axis must hold one value");
  int64_t axis = norm_axis(c, at->get_i(0), x.rank());
  bool excl = c.node.attr_i("exclusive", 0) != 0, rev = c.node.attr_i("reverse", 0) != 0;
  AxisView v(x.dims(), axis);
  dispatch(x.dtype(), [&](auto tg) {
    using T = typename decltype(tg)::type;
    if constexpr (is_floating_v<T> || is_integer_v<T>) {
      using A = compute_t<T>;
      const T* p = x.data<T>();
      T* y = c.out[0]->data<T>();
      // Per outer index: a running sum over the whole inner extent, so the inner loop is
      // contiguous.
      parallel_for(v.outer, std::max<int64_t>(1, 16384 / std::max<int64_t>(v.n * v.inner, 1)),
                   [&](int64_t b, int64_t e) {
                     std::vector<A> acc(size_t(v.inner));
                     for (int64_t o = b; o < e; ++o) {
                       std::fill(acc.begin(), acc.end(), A(0));
                       for (int64_t s = 0; s < v.n; ++s) {
                         int64_t k = rev ? v.n - 1 - s : s;
                         const T* xi = p + (o * v.n + k) * v.inner;
                         T* yi = y + (o * v.n + k) * v.inner;
                         for (int64_t i = 0; i < v.inner; ++i) {
                           A cur = acc[size_t(i)];
                           acc[size_t(i)] = A(cur + ld(xi[i]));
                           yi[i] = st<T>(excl ? cur : acc[size_t(i)]);
                         }
                       }
                     }
                   });
    } else {
      c.fail(std::string("unsupported element type ") + dtype_name(x.dtype()));
    }
  });
}

void topk_kernel(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  const Tensor* kt = c.input(1);
  if (!kt || kt->numel() != 1) c.fail("K must hold one value");
  int64_t k = kt->get_i(0);
  int64_t axis = norm_axis(c, c.node.attr_i("axis", -1), x.rank());
  bool largest = c.node.attr_i("largest", 1) != 0;
  AxisView v(x.dims(), axis);
  if (k < 0 || k > v.n) c.fail("K=" + std::to_string(k) + " is out of range for axis size " + std::to_string(v.n));
  int64_t* yi = c.out[1]->data<int64_t>();
  dispatch(x.dtype(), [&](auto tg) {
    using T = typename decltype(tg)::type;
    if constexpr (is_floating_v<T> || is_integer_v<T>) {
      using V = compute_t<T>;
      const T* p = x.data<T>();
      T* yv = c.out[0]->data<T>();
      parallel_for(v.outer * v.inner, std::max<int64_t>(1, 4096 / std::max<int64_t>(v.n, 1)), [&](int64_t b, int64_t e) {
        std::vector<std::pair<V, int64_t>> items(size_t(v.n));
        for (int64_t l = b; l < e; ++l) {
          int64_t o = l / v.inner, i = l % v.inner;
          const T* q = p + o * v.n * v.inner + i;
          for (int64_t j = 0; j < v.n; ++j) items[size_t(j)] = {ld(q[j * v.inner]), j};
          // Always sorted (allowed for sorted=0 too); equal values keep the lower index first.
          auto cmp = [largest](const std::pair<V, int64_t>& a, const std::pair<V, int64_t>& b2) {
            if (a.first != b2.first) return largest ? a.first > b2.first : a.first < b2.first;
            return a.second < b2.second;
          };
          std::partial_sort(items.begin(), items.begin() + k, items.end(), cmp);
          for (int64_t j = 0; j < k; ++j) {
            int64_t off = (o * k + j) * v.inner + i;
            yv[off] = st<T>(items[size_t(j)].first);
            yi[off] = items[size_t(j)].second;
          }
        }
      });
    } else {
      c.fail(std::string("unsupported element type ") + dtype_name(x.dtype()));
    }
  });
}

}  // namespace

void register_index_kernels() {
  register_kernel("ArgMax", [](KernelCtx& c) { arg_kernel(c, true); });
  register_kernel("ArgMin", [](KernelCtx& c) { arg_kernel(c, false); });
  register_kernel("CumSum", cumsum_kernel);
  register_kernel("TopK", topk_kernel);
}

}  // namespace shardrt::cpu
