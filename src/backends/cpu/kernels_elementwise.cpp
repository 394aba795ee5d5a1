// The elementwise family's CPU kernels: broadcasting machinery, Where and Clip here; unary,
// binary and cast kernels in their own files, registered from here.
#include <algorithm>
#include <limits>

#include "backends/cpu/elementwise_impl.h"

namespace shardrt::cpu {

Broadcast::Broadcast(const Dims& out, const std::vector<const Dims*>& ins) {
  size_t k = ins.size(), r = out.size();
  // Per output dim (size-1 dims dropped): its size, and for each input whether it runs
  // along it (true) or repeats (false).
  std::vector<int64_t> sizes;
  std::vector<std::vector<bool>> full;
  for (size_t i = 0; i < r; ++i) {
    if (out[i] == 1) continue;
    std::vector<bool> f(k);
    for (size_t j = 0; j < k; ++j) {
      const Dims& d = *ins[j];
      size_t off = r - d.size();
      if (d.size() > r) throw GraphError("broadcast: input of rank " + std::to_string(d.size()) +
                                         " into output of rank " + std::to_string(r));
      int64_t v = i >= off ? d[i - off] : 1;
      if (v != out[i] && v != 1)
        throw GraphError("broadcast: cannot broadcast " + dims_str(d) + " to " + dims_str(out));
      f[j] = v == out[i];
    }
    // Merge into the previous dim when every input behaves the same on both.
    if (!sizes.empty() && full.back() == f) sizes.back() *= out[i];
    else { sizes.push_back(out[i]); full.push_back(f); }
  }
  inner_stride.assign(k, 1);
  outer_strides.assign(k, {});
  if (sizes.empty()) return;  // a single element
  // Strides of each input over the collapsed dims, innermost first.
  std::vector<std::vector<int64_t>> strides(k, std::vector<int64_t>(sizes.size()));
  for (size_t j = 0; j < k; ++j) {
    int64_t s = 1;
    for (size_t i = sizes.size(); i-- > 0;) {
      strides[j][i] = full[i][j] ? s : 0;
      if (full[i][j]) s *= sizes[i];
    }
  }
  inner = sizes.back();
  outer_dims.assign(sizes.begin(), sizes.end() - 1);
  rows = 1;
  for (int64_t d : outer_dims) rows *= d;
  for (size_t j = 0; j < k; ++j) {
    inner_stride[j] = strides[j].back();
    outer_strides[j].assign(strides[j].begin(), strides[j].end() - 1);
  }
}

void Broadcast::row_offsets(int64_t r, int64_t* offs) const {
  size_t k = inner_stride.size();
  for (size_t j = 0; j < k; ++j) offs[j] = 0;
  for (size_t i = outer_dims.size(); i-- > 0;) {
    int64_t idx = r % outer_dims[i];
    r /= outer_dims[i];
    for (size_t j = 0; j < k; ++j) offs[j] += idx * outer_strides[j][i];
  }
}

namespace {

void where_kernel(KernelCtx& c) {
  const Tensor& cond = *c.in[0];
  const Tensor& x = *c.in[1];
  const Tensor& y = *c.in[2];
  Tensor& out = *c.out[0];
  if (cond.dtype() != DType::Bool) c.fail("condition must be bool");
  if (x.dtype() != y.dtype()) c.fail("X and Y have different types");
  Broadcast bc(out.dims(), {&cond.dims(), &x.dims(), &y.dims()});
  // Elements are moved as raw bits of their size: Where never looks at the values.
  auto run = [&](auto tg) {
    using T = typename decltype(tg)::type;
    const uint8_t* pc = cond.data<uint8_t>();
    const T* px = x.data<T>();
    const T* py = y.data<T>();
    T* po = out.data<T>();
    int64_t sc = bc.inner_stride[0], sx = bc.inner_stride[1], sy = bc.inner_stride[2];
    for_each_piece(bc, [&](const int64_t* off, int64_t oo, int64_t n) {
      const uint8_t* cc = pc + off[0];
      const T* xx = px + off[1];
      const T* yy = py + off[2];
      T* o = po + oo;
      if (sc && sx && sy) {
        for (int64_t i = 0; i < n; ++i) o[i] = cc[i] ? xx[i] : yy[i];
      } else if (sc && !sx && sy) {
        T xv = xx[0];
        for (int64_t i = 0; i < n; ++i) o[i] = cc[i] ? xv : yy[i];
      } else if (sc && sx && !sy) {
        T yv = yy[0];
        for (int64_t i = 0; i < n; ++i) o[i] = cc[i] ? xx[i] : yv;
      } else {
        for (int64_t i = 0; i < n; ++i) o[i] = cc[i * sc] ? xx[i * sx] : yy[i * sy];
      }
    });
  };
  switch (dtype_size(x.dtype())) {
    case 1: run(tag<uint8_t>{}); break;
    case 2: run(tag<uint16_t>{}); break;
    case 4: run(tag<uint32_t>{}); break;
    case 8: run(tag<uint64_t>{}); break;
    default: c.fail(std::string("unsupported element type ") + dtype_name(x.dtype()));
  }
}

void clip_kernel(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  Tensor& y = *c.out[0];
  const Tensor* lo_t = c.input(1);
  const Tensor* hi_t = c.input(2);
  for (const Tensor* t : {lo_t, hi_t})
    if (t && (t->dtype() != x.dtype() || t->numel() != 1)) c.fail("min/max must be scalars of the input's type");
  dispatch(x.dtype(), [&](auto tg) {
    using T = typename decltype(tg)::type;
    if constexpr (is_floating_v<T> || is_integer_v<T>) {
      using V = compute_t<T>;
      V lo = lo_t ? ld(lo_t->data<T>()[0]) : std::numeric_limits<V>::lowest();
      V hi = hi_t ? ld(hi_t->data<T>()[0]) : std::numeric_limits<V>::max();
      if constexpr (std::is_floating_point_v<V>) {
        if (!lo_t) lo = -std::numeric_limits<V>::infinity();
        if (!hi_t) hi = std::numeric_limits<V>::infinity();
      }
      const T* p = x.data<T>();
      T* o = y.data<T>();
      // min(max(x, lo), hi): when lo > hi every element becomes hi, as ONNX specifies.
      parallel_for(x.numel(), 16384, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          V v = ld(p[i]);
          v = v < lo ? lo : v;
          o[i] = st<T>(v > hi ? hi : v);
        }
      });
    } else {
      c.fail(std::string("Clip does not take ") + dtype_name(x.dtype()));
    }
  });
}

}  // namespace

void register_elementwise_kernels() {
  register_unary_kernels();
  register_binary_kernels();
  register_cast_kernels();
  register_kernel("Where", where_kernel);
  register_kernel("Clip", clip_kernel);
}

}  // namespace shardrt::cpu
