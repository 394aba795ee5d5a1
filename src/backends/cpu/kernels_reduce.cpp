// CPU kernels of ReduceSum/Mean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare.
// The input is viewed as [outer, reduced, inner] after merging adjacent dims that are
// reduced alike; the common shapes (last axis, one middle axis) reduce in place, and any
// other set of axes first gathers the reduced dims to the end. fp16/bf16 (and fp32)
// accumulate in fp32, fp64 in fp64, integers in int64.
#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "backends/cpu/elementwise_impl.h"

namespace shardrt::cpu {

namespace {

enum class Op { Sum, Mean, Max, Min, Prod, L1, L2, LogSum, LogSumExp, SumSquare };

template <class T> struct acc_of { using type = int64_t; };
template <> struct acc_of<float> { using type = float; };
template <> struct acc_of<f16_t> { using type = float; };
template <> struct acc_of<bf16_t> { using type = float; };
template <> struct acc_of<double> { using type = double; };
template <class T> using acc_t = typename acc_of<T>::type;

constexpr int kLanes = 16;

// acc[o*I + i] = comb over r of pre(x[(o*R + r)*I + i]), starting from init.
template <class T, class Acc, class Pre, class Comb>
void reduce_core(const T* x, int64_t O, int64_t R, int64_t I, Acc init, const Pre& pre, const Comb& comb,
                 Acc* acc) {
  if (I == 1) {
    // Rows: kLanes partial accumulators so the loop vectorises without reassociation flags.
    parallel_for(O, std::max<int64_t>(1, 32768 / std::max<int64_t>(R, 1)), [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const T* row = x + o * R;
        Acc lane[kLanes];
        for (int j = 0; j < kLanes; ++j) lane[j] = init;
        int64_t r = 0;
        for (; r + kLanes <= R; r += kLanes)
          for (int j = 0; j < kLanes; ++j) lane[j] = comb(lane[j], pre(Acc(ld(row[r + j]))));
        Acc s = init;
        for (int j = 0; j < kLanes; ++j) s = comb(s, lane[j]);
        for (; r < R; ++r) s = comb(s, pre(Acc(ld(row[r]))));
        acc[o] = s;
      }
    });
    return;
  }
  // Columns: each task owns a block of the inner extent and sweeps the reduced rows.
  constexpr int64_t kBlk = 1024;
  int64_t blocks = (I + kBlk - 1) / kBlk;
  parallel_for(O * blocks, std::max<int64_t>(1, 32768 / std::max<int64_t>(R * std::min(I, kBlk), 1)),
               [&](int64_t b, int64_t e) {
                 for (int64_t t = b; t < e; ++t) {
                   int64_t o = t / blocks, i0 = (t % blocks) * kBlk, n = std::min(kBlk, I - i0);
                   Acc* a = acc + o * I + i0;
                   for (int64_t i = 0; i < n; ++i) a[i] = init;
                   for (int64_t r = 0; r < R; ++r) {
                     const T* row = x + (o * R + r) * I + i0;
                     for (int64_t i = 0; i < n; ++i) a[i] = comb(a[i], pre(Acc(ld(row[i]))));
                   }
                 }
               });
}

// A reduction problem in [O, R, I] form, after any gathering.
template <class T> struct Plan {
  const T* x = nullptr;
  int64_t O = 1, R = 1, I = 1;
  std::vector<T> gathered;  // owns x when the reduced axes were not contiguous
};

template <class T>
Plan<T> make_plan(const Tensor& in, const std::set<int64_t>& axes) {
  Plan<T> p;
  const Dims& d = in.dims();
  // Merge adjacent dims reduced alike; size-1 dims do not matter either way.
  std::vector<int64_t> sz;
  std::vector<bool> red;
  for (int64_t i = 0; i < int64_t(d.size()); ++i) {
    if (d[size_t(i)] == 1) continue;
    bool r = axes.count(i) != 0;
    if (!sz.empty() && red.back() == r) sz.back() *= d[size_t(i)];
    else { sz.push_back(d[size_t(i)]); red.push_back(r); }
  }
  int groups = int(std::count(red.begin(), red.end(), true));
  p.x = in.data<T>();
  if (groups == 0) {
    p.O = in.numel();
    return p;
  }
  if (groups == 1) {
    size_t k = size_t(std::find(red.begin(), red.end(), true) - red.begin());
    for (size_t i = 0; i < sz.size(); ++i) {
      if (i < k) p.O *= sz[i];
      else if (i == k) p.R = sz[i];
      else p.I *= sz[i];
    }
    return p;
  }
  // Several separate reduced groups: gather into [kept..., reduced...] order.
  std::vector<int64_t> stride(sz.size());
  int64_t s = 1;
  for (size_t i = sz.size(); i-- > 0;) { stride[i] = s; s *= sz[i]; }
  std::vector<size_t> order;
  for (size_t i = 0; i < sz.size(); ++i) if (!red[i]) { order.push_back(i); p.O *= sz[i]; }
  for (size_t i = 0; i < sz.size(); ++i) if (red[i]) { order.push_back(i); p.R *= sz[i]; }
  int64_t n = in.numel();
  p.gathered.resize(size_t(n));
  const T* src = in.data<T>();
  std::vector<int64_t> idx(order.size(), 0);
  int64_t off = 0;
  for (int64_t k = 0; k < n; ++k) {
    p.gathered[size_t(k)] = src[off];
    for (size_t j = order.size(); j-- > 0;) {
      size_t dim = order[j];
      off += stride[dim];
      if (++idx[j] < sz[dim]) break;
      off -= stride[dim] * sz[dim];
      idx[j] = 0;
    }
  }
  p.x = p.gathered.data();
  return p;
}

template <class T> void run(Op op, const Tensor& in, const std::set<int64_t>& axes, Tensor& out) {
  using Acc = acc_t<T>;
  Plan<T> p = make_plan<T>(in, axes);
  int64_t n_out = p.O * p.I;
  if (n_out != out.numel()) throw GraphError("reduce: output size does not match the reduction");
  std::vector<Acc> acc(static_cast<size_t>(n_out));
  constexpr bool fl = std::is_floating_point_v<Acc>;
  // Max/Min start from the extremes of T's own range (ONNX: a max over an empty set is -inf,
  // or the lowest value of the type: INT32_MIN for int32, false for bool), not of the int64
  // accumulator, whose extremes do not survive the store into a narrower T.
  Acc lowest, highest;
  if constexpr (fl) {
    lowest = -std::numeric_limits<Acc>::infinity();
    highest = std::numeric_limits<Acc>::infinity();
  } else if constexpr (std::is_same_v<T, bool_t>) {
    lowest = Acc(0);
    highest = Acc(1);
  } else {
    lowest = Acc(std::numeric_limits<T>::lowest());
    highest = Acc(std::numeric_limits<T>::max());
  }
  auto id = [](Acc v) { return v; };
  auto add = [](Acc a, Acc b) { return Acc(a + b); };
  auto sq = [](Acc v) { return Acc(v * v); };
  auto absf = [](Acc v) { return v < Acc(0) ? Acc(-v) : v; };
  auto mx = [](Acc a, Acc b) { return b > a ? b : a; };
  auto mn = [](Acc a, Acc b) { return b < a ? b : a; };
  Acc* a = acc.data();
  switch (op) {
    case Op::Sum: case Op::Mean: case Op::LogSum: reduce_core(p.x, p.O, p.R, p.I, Acc(0), id, add, a); break;
    case Op::SumSquare: case Op::L2: reduce_core(p.x, p.O, p.R, p.I, Acc(0), sq, add, a); break;
    case Op::L1: reduce_core(p.x, p.O, p.R, p.I, Acc(0), absf, add, a); break;
    case Op::Max: reduce_core(p.x, p.O, p.R, p.I, lowest, id, mx, a); break;
    case Op::Min: reduce_core(p.x, p.O, p.R, p.I, highest, id, mn, a); break;
    case Op::Prod: reduce_core(p.x, p.O, p.R, p.I, Acc(1), id, [](Acc x, Acc y) { return Acc(x * y); }, a); break;
    case Op::LogSumExp: {
      if constexpr (fl) {
        // max first, then log(sum(exp(x - max))) + max; an all -inf (or empty) line gives -inf.
        reduce_core(p.x, p.O, p.R, p.I, lowest, id, mx, a);
        std::vector<Acc> m(acc);
        parallel_for(n_out, std::max<int64_t>(1, 32768 / std::max<int64_t>(p.R, 1)), [&](int64_t b, int64_t e) {
          for (int64_t k = b; k < e; ++k) {
            int64_t o = k / p.I, i = k % p.I;
            Acc mk = m[size_t(k)];
            if (std::isinf(mk)) { a[k] = mk; continue; }
            Acc s = 0;
            for (int64_t r = 0; r < p.R; ++r) s += std::exp(Acc(ld(p.x[(o * p.R + r) * p.I + i])) - mk);
            a[k] = std::log(s) + mk;
          }
        });
      }
      break;
    }
  }
  T* o = out.data<T>();
  Acc R = Acc(p.R);
  for (int64_t k = 0; k < n_out; ++k) {
    Acc v = a[k];
    switch (op) {
      case Op::Mean:
        if constexpr (fl) v = v / R;
        else v = p.R ? Acc(v / R) : Acc(0);
        break;
      case Op::L2: v = Acc(std::sqrt(double(v))); break;
      case Op::LogSum: v = Acc(std::log(double(v))); break;
      default: break;
    }
    o[k] = st<T>(v);
  }
}

void reg(const char* name, Op op) {
  register_kernel(name, [op](KernelCtx& c) {
    const Tensor& x = *c.in[0];
    int64_t r = x.rank();
    bool noop = c.node.attr_i("noop_with_empty_axes", 0) != 0;
    std::vector<int64_t> ax;
    if (const Tensor* t = c.input(1)) ax = t->to_i64_vector();
    std::set<int64_t> axes;
    for (int64_t v : ax) {
      if (v < -r || v >= r) c.fail("axis " + std::to_string(v) + " is out of range for rank " + std::to_string(r));
      axes.insert(v < 0 ? v + r : v);
    }
    if (ax.empty() && !noop)
      for (int64_t i = 0; i < r; ++i) axes.insert(i);
    dispatch(x.dtype(), [&](auto tg) {
      using T = typename decltype(tg)::type;
      bool ok = is_floating_v<T> || ((is_integer_v<T> && op != Op::LogSum && op != Op::LogSumExp)) ||
                (std::is_same_v<T, bool_t> && (op == Op::Max || op == Op::Min));
      if (!ok) c.fail(std::string("unsupported element type ") + dtype_name(x.dtype()));
      run<T>(op, x, axes, *c.out[0]);
    });
  });
}

}  // namespace

void register_reduce_kernels() {
  reg("ReduceSum", Op::Sum);
  reg("ReduceMean", Op::Mean);
  reg("ReduceMax", Op::Max);
  reg("ReduceMin", Op::Min);
  reg("ReduceProd", Op::Prod);
  reg("ReduceL1", Op::L1);
  reg("ReduceL2", Op::L2);
  reg("ReduceLogSum", Op::LogSum);
  reg("ReduceLogSumExp", Op::LogSumExp);
  reg("ReduceSumSquare", Op::SumSquare);
  register_softmax_kernels();
  register_index_kernels();
}

}  // namespace shardrt::cpu
