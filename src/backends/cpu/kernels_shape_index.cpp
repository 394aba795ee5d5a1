// CPU kernels that select or scatter by index: Gather, GatherElements, GatherND,
// ScatterND, ScatterElements (and old Scatter), Compress, NonZero, OneHot, ReverseSequence,
// shardrt.PositionalEmbedding.
// Indices are validated before any parallel loop (kernels may not throw inside one).
#include <algorithm>

#include "backends/cpu/kernels_shape_common.h"
#include "ir/ops/ops.h"

namespace shardrt::cpu::shape_k {

namespace {

constexpr int64_t kGrainBytes = 64 << 10;

// Element arithmetic for scatter reductions: storage type S, loaded to a compute type.
struct AF32 { using S = float; static float ld(S v) { return v; } static S st(float v) { return v; } };
struct AF64 { using S = double; static double ld(S v) { return v; } static S st(double v) { return v; } };
struct AF16 { using S = uint16_t; static float ld(S v) { return half_to_float(v); } static S st(float v) { return float_to_half(v); } };
struct ABF16 { using S = uint16_t; static float ld(S v) { return bf16_to_float(v); } static S st(float v) { return float_to_bf16(v); } };
template <class T> struct AInt { using S = T; static int64_t ld(S v) { return v; } static S st(int64_t v) { return S(v); } };
// bool: add is "or", mul is "and", as numpy computes them.
struct ABool { using S = uint8_t; static int64_t ld(S v) { return v != 0; } static S st(int64_t v) { return v != 0; } };

template <class F>
void with_arith(DType t, F&& f) {
  switch (t) {
    case DType::F32: f(AF32{}); break;
    case DType::F64: f(AF64{}); break;
    case DType::F16: f(AF16{}); break;
    case DType::BF16: f(ABF16{}); break;
    case DType::I64: f(AInt<int64_t>{}); break;
    case DType::I32: f(AInt<int32_t>{}); break;
    case DType::I8: f(AInt<int8_t>{}); break;
    case DType::U8: f(AInt<uint8_t>{}); break;
    case DType::Bool: f(ABool{}); break;
    default: break;
  }
}

enum class Red { None, Add, Mul, Max, Min };

Red reduction(const KernelCtx& c) {
  std::string r = c.node.attr_s("reduction", "none");
  if (r == "none") return Red::None;
  if (r == "add") return Red::Add;
  if (r == "mul") return Red::Mul;
  if (r == "max") return Red::Max;
  if (r == "min") return Red::Min;
  c.fail("reduction '" + r + "' is not supported");
}

// dst[i] = dst[i] (op) src[i] for n elements of dtype t.
void reduce_into(void* dst, const void* src, int64_t n, DType t, Red red) {
  with_arith(t, [&](auto a) {
    using A = decltype(a);
    using S = typename A::S;
    S* d = static_cast<S*>(dst);
    const S* s = static_cast<const S*>(src);
    for (int64_t i = 0; i < n; ++i) {
      auto x = A::ld(d[i]), y = A::ld(s[i]);
      switch (red) {
        case Red::Add: x = x + y; break;
        case Red::Mul: x = x * y; break;
        case Red::Max: x = std::max(x, y); break;
        case Red::Min: x = std::min(x, y); break;
        case Red::None: x = y; break;
      }
      d[i] = A::st(x);
    }
  });
}

// Every index in [-n, n), or fail naming the first bad one.
void check_indices(const KernelCtx& c, const Tensor& idx, int64_t n) {
  for (int64_t i = 0; i < idx.numel(); ++i) {
    int64_t k = index_at(idx, i);
    if (k < -n || k >= n) c.fail("index " + std::to_string(k) + " is out of range for an axis of " + std::to_string(n));
  }
}

void k_gather(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  const Tensor& idx = *c.in[1];
  Tensor& y = *c.out[0];
  int64_t r = x.rank();
  int64_t ax = c.node.attr_i("axis", 0);
  if (ax < 0) ax += r;
  int64_t n = x.dim(ax), outer = 1, inner = 1;
  for (int64_t i = 0; i < ax; ++i) outer *= x.dim(i);
  for (int64_t i = ax + 1; i < r; ++i) inner *= x.dim(i);
  check_indices(c, idx, n);
  int64_t ni = idx.numel();
  size_t es = dtype_size(x.dtype());
  size_t row = size_t(inner) * es;
  const char* src = static_cast<const char*>(x.raw());
  char* dst = static_cast<char*>(y.raw());
  std::vector<int64_t> k(static_cast<size_t>(ni));
  for (int64_t i = 0; i < ni; ++i) k[size_t(i)] = wrap_index(index_at(idx, i), n);
  if (row == 0 || ni == 0 || outer == 0) return;
  parallel_for(outer * ni, std::max<int64_t>(1, kGrainBytes / int64_t(row)), [&](int64_t b, int64_t e) {
    for (int64_t u = b; u < e; ++u) {
      int64_t o = u / ni, j = u % ni;
      std::memcpy(dst + size_t(u) * row, src + size_t(o * n + k[size_t(j)]) * row, row);
    }
  });
}

// Visits every element of `dims` in order over [b, e), keeping `base` = the offset in a
// tensor with strides `st` of the element with the `skip` axis coordinate set to 0.
template <class F>
void walk_skip(const Dims& dims, const std::vector<int64_t>& st, int64_t skip, int64_t b, int64_t e, F&& f) {
  int64_t r = int64_t(dims.size());
  std::vector<int64_t> idx(size_t(r), 0);
  int64_t base = 0, rem = b;
  for (int64_t a = r - 1; a >= 0; --a) {
    idx[size_t(a)] = rem % dims[size_t(a)];
    rem /= dims[size_t(a)];
    if (a != skip) base += idx[size_t(a)] * st[size_t(a)];
  }
  for (int64_t i = b; i < e; ++i) {
    f(i, base);
    for (int64_t a = r - 1; a >= 0; --a) {
      if (++idx[size_t(a)] < dims[size_t(a)]) {
        if (a != skip) base += st[size_t(a)];
        break;
      }
      if (a != skip) base -= (dims[size_t(a)] - 1) * st[size_t(a)];
      idx[size_t(a)] = 0;
    }
  }
}

void k_gather_elements(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  const Tensor& idx = *c.in[1];
  Tensor& y = *c.out[0];
  int64_t r = x.rank(), ax = c.node.attr_i("axis", 0);
  if (ax < 0) ax += r;
  for (int64_t a = 0; a < r; ++a)
    if (a != ax && idx.dim(a) > x.dim(a)) c.fail("indices dim " + std::to_string(a) + " exceeds data's");
  int64_t n = x.dim(ax);
  check_indices(c, idx, n);
  auto xs = strides_of(x.dims());
  with_elem(dtype_size(x.dtype()), [&](auto z) {
    using T = decltype(z);
    const T* src = static_cast<const T*>(x.raw());
    T* dst = static_cast<T*>(y.raw());
    parallel_for(idx.numel(), 1 << 14, [&](int64_t b, int64_t e) {
      walk_skip(idx.dims(), xs, ax, b, e, [&](int64_t i, int64_t base) {
        dst[i] = src[base + wrap_index(index_at(idx, i), n) * xs[size_t(ax)]];
      });
    });
  });
}

void k_scatter_elements(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  const Tensor& idx = *c.in[1];
  const Tensor& upd = *c.in[2];
  Tensor& y = *c.out[0];
  Red red = reduction(c);
  int64_t r = x.rank(), ax = c.node.attr_i("axis", 0);
  if (ax < 0) ax += r;
  if (idx.dims() != upd.dims()) c.fail("indices and updates differ in shape");
  for (int64_t a = 0; a < r; ++a)
    if (a != ax && idx.dim(a) > x.dim(a)) c.fail("indices dim " + std::to_string(a) + " exceeds data's");
  int64_t n = x.dim(ax);
  check_indices(c, idx, n);
  copy_bytes(y.raw(), x.raw(), x.nbytes());
  auto xs = strides_of(x.dims());
  size_t es = dtype_size(x.dtype());
  char* dst = static_cast<char*>(y.raw());
  const char* src = static_cast<const char*>(upd.raw());
  // Serial: with duplicate indices the updates apply in order.
  walk_skip(idx.dims(), xs, ax, 0, idx.numel(), [&](int64_t i, int64_t base) {
    int64_t off = base + wrap_index(index_at(idx, i), n) * xs[size_t(ax)];
    if (red == Red::None) std::memcpy(dst + off * int64_t(es), src + i * int64_t(es), es);
    else reduce_into(dst + off * int64_t(es), src + i * int64_t(es), 1, x.dtype(), red);
  });
}

// Offsets (in elements) into data of each index tuple of the last axis of `idx`, which
// indexes data axes [first, first + k).
std::vector<int64_t> tuple_offsets(const KernelCtx& c, const Tensor& data, const Tensor& idx, int64_t first) {
  int64_t k = idx.dim(-1), rows = 1;
  for (int64_t i = 0; i + 1 < idx.rank(); ++i) rows *= idx.dim(i);
  auto ds = strides_of(data.dims());
  std::vector<int64_t> off(size_t(rows), 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < k; ++j) {
      int64_t n = data.dim(first + j), v = index_at(idx, r * k + j);
      int64_t w = wrap_index(v, n);
      if (w < 0) c.fail("index " + std::to_string(v) + " is out of range for an axis of " + std::to_string(n));
      off[size_t(r)] += w * ds[size_t(first + j)];
    }
  return off;
}

void k_gather_nd(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  const Tensor& idx = *c.in[1];
  Tensor& y = *c.out[0];
  int64_t b = c.node.attr_i("batch_dims", 0), k = idx.dim(-1);
  int64_t batch = 1, slice = 1;
  for (int64_t i = 0; i < b; ++i) batch *= x.dim(i);
  for (int64_t i = b + k; i < x.rank(); ++i) slice *= x.dim(i);
  int64_t batch_stride = 1;
  for (int64_t i = b; i < x.rank(); ++i) batch_stride *= x.dim(i);
  // Offsets within one batch: index tuples address data axes [b, b+k).
  Dims inner_dims(x.dims().begin() + b, x.dims().end());
  Tensor view(x.dtype(), inner_dims, const_cast<void*>(x.raw()), nullptr);
  auto off = tuple_offsets(c, view, idx, 0);
  int64_t per_batch = int64_t(off.size()) / std::max<int64_t>(1, batch);
  size_t es = dtype_size(x.dtype()), row = size_t(slice) * es;
  const char* src = static_cast<const char*>(x.raw());
  char* dst = static_cast<char*>(y.raw());
  if (row == 0) return;
  parallel_for(int64_t(off.size()), std::max<int64_t>(1, kGrainBytes / int64_t(row)), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r) {
      int64_t bi = per_batch ? r / per_batch : 0;
      std::memcpy(dst + size_t(r) * row, src + size_t(bi * batch_stride + off[size_t(r)]) * es, row);
    }
  });
}

void k_scatter_nd(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  const Tensor& idx = *c.in[1];
  const Tensor& upd = *c.in[2];
  Tensor& y = *c.out[0];
  Red red = reduction(c);
  int64_t k = idx.dim(-1), slice = 1;
  for (int64_t i = k; i < x.rank(); ++i) slice *= x.dim(i);
  auto off = tuple_offsets(c, x, idx, 0);
  if (upd.numel() != int64_t(off.size()) * slice) c.fail("updates have the wrong number of elements");
  copy_bytes(y.raw(), x.raw(), x.nbytes());
  size_t es = dtype_size(x.dtype());
  char* dst = static_cast<char*>(y.raw());
  const char* src = static_cast<const char*>(upd.raw());
  for (size_t r = 0; r < off.size(); ++r) {
    char* d = dst + size_t(off[r]) * es;
    const char* s = src + r * size_t(slice) * es;
    if (red == Red::None) std::memcpy(d, s, size_t(slice) * es);
    else reduce_into(d, s, slice, x.dtype(), red);
  }
}

void k_compress(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  const Tensor& cond = *c.in[1];
  Tensor& y = *c.out[0];
  size_t es = dtype_size(x.dtype());
  bool has_axis = c.node.has_attr("axis");
  int64_t ax = has_axis ? c.node.attr_i("axis") : 0;
  if (ax < 0) ax += x.rank();
  int64_t outer = 1, n = has_axis ? x.dim(ax) : x.numel(), inner = 1;
  if (has_axis) {
    for (int64_t i = 0; i < ax; ++i) outer *= x.dim(i);
    for (int64_t i = ax + 1; i < x.rank(); ++i) inner *= x.dim(i);
  }
  std::vector<int64_t> sel;
  for (int64_t i = 0; i < std::min(n, cond.numel()); ++i)
    if (cond.data<uint8_t>()[i]) sel.push_back(i);
  int64_t ns = int64_t(sel.size());
  if (y.numel() != outer * ns * inner) c.fail("output size does not match the condition");
  size_t row = size_t(inner) * es;
  const char* src = static_cast<const char*>(x.raw());
  char* dst = static_cast<char*>(y.raw());
  if (row == 0 || ns == 0) return;
  parallel_for(outer * ns, std::max<int64_t>(1, kGrainBytes / int64_t(row)), [&](int64_t b, int64_t e) {
    for (int64_t u = b; u < e; ++u)
      std::memcpy(dst + size_t(u) * row, src + size_t((u / ns) * n + sel[size_t(u % ns)]) * row, row);
  });
}

void k_nonzero(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  Tensor& y = *c.out[0];
  int64_t r = x.rank(), n = y.dim(1);
  int64_t* out = y.data<int64_t>();
  std::vector<int64_t> idx(size_t(r), 0);
  int64_t j = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (x.get_f(i) != 0) {
      if (j >= n) c.fail("more nonzeros than the output holds");
      for (int64_t a = 0; a < r; ++a) out[a * n + j] = idx[size_t(a)];
      ++j;
    }
    for (int64_t a = r - 1; a >= 0; --a) {
      if (++idx[size_t(a)] < x.dim(a)) break;
      idx[size_t(a)] = 0;
    }
  }
  if (j != n) c.fail("fewer nonzeros than the output holds");
}

void k_onehot(KernelCtx& c) {
  const Tensor& idx = *c.in[0];
  const Tensor& vals = *c.in[2];
  Tensor& y = *c.out[0];
  int64_t r = y.rank(), ax = c.node.attr_i("axis", -1);
  if (ax < 0) ax += r;
  int64_t depth = y.dim(ax), outer = 1, inner = 1;
  for (int64_t i = 0; i < ax; ++i) outer *= y.dim(i);
  for (int64_t i = ax + 1; i < r; ++i) inner *= y.dim(i);
  size_t es = dtype_size(y.dtype());
  const char* off = static_cast<const char*>(vals.raw());
  fill_elems(y.raw(), y.numel(), off, es);
  char* dst = static_cast<char*>(y.raw());
  bool fl = is_float(idx.dtype());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      int64_t e = o * inner + i;
      int64_t k = fl ? int64_t(idx.get_f(e)) : idx.get_i(e);
      if (k < 0) k += depth;
      if (k < 0 || k >= depth) continue;  // out of range: the row stays "off"
      std::memcpy(dst + size_t((o * depth + k) * inner + i) * es, off + es, es);
    }
}

void k_reverse_sequence(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  const Tensor& lens = *c.in[1];
  Tensor& y = *c.out[0];
  int64_t bax = c.node.attr_i("batch_axis", 1);
  int64_t d0 = x.dim(0), d1 = x.dim(1), T = bax == 0 ? d1 : d0;
  int64_t inner = x.numel() / std::max<int64_t>(1, d0 * d1);
  for (int64_t i = 0; i < lens.numel(); ++i) {
    int64_t l = index_at(lens, i);
    if (l < 0 || l > T) c.fail("sequence length " + std::to_string(l) + " is out of range [0, " + std::to_string(T) + "]");
  }
  size_t row = size_t(inner) * dtype_size(x.dtype());
  const char* src = static_cast<const char*>(x.raw());
  char* dst = static_cast<char*>(y.raw());
  for (int64_t i0 = 0; i0 < d0; ++i0)
    for (int64_t i1 = 0; i1 < d1; ++i1) {
      int64_t b = bax == 0 ? i0 : i1, t = bax == 0 ? i1 : i0;
      int64_t l = index_at(lens, b), ts = t < l ? l - 1 - t : t;
      int64_t s0 = bax == 0 ? i0 : ts, s1 = bax == 0 ? ts : i1;
      std::memcpy(dst + size_t(i0 * d1 + i1) * row, src + size_t(s0 * d1 + s1) * row, row);
    }
}

// shardrt.PositionalEmbedding: Y[b, s] = Tokens[Ids[b, s]] + Positions[PastLens[b] + s],
// the sum rounded once to the dtype (what Gather, Gather and Add store).
void k_positional_embedding(KernelCtx& c) {
  const Tensor& ids = *c.in[0];
  const Tensor& past = *c.in[1];
  const Tensor& tok = *c.in[2];
  const Tensor& pos = *c.in[3];
  Tensor& y = *c.out[0];
  const int64_t B = ids.dims()[0], S = ids.dims()[1], V = tok.dims()[0], E = tok.dims()[1], P = pos.dims()[0];
  if (past.numel() != B) c.fail("PastLens holds " + std::to_string(past.numel()) + " lengths for " + std::to_string(B) + " rows");
  if (pos.dims()[1] != E) c.fail("Tokens' and Positions' widths differ");
  std::vector<int64_t> rows(size_t(2 * B * S));  // per (b, s): its token row, its position row
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s) {
      const int64_t id = index_at(ids, b * S + s), p = past.data<int64_t>()[b] + s;
      if (std::string e = positional_embedding_row_error(b, s, id, p, V, P); !e.empty()) c.fail(e);
      rows[size_t(2 * (b * S + s))] = id;
      rows[size_t(2 * (b * S + s) + 1)] = p;
    }
  auto run = [&](auto a) {
    using A = decltype(a);
    using T = typename A::S;
    const T* tp = static_cast<const T*>(tok.raw());
    const T* pp = static_cast<const T*>(pos.raw());
    T* yp = static_cast<T*>(y.raw());
    parallel_for(B * S, std::max<int64_t>(1, kGrainBytes / std::max<int64_t>(1, E * int64_t(sizeof(T)))),
                 [&](int64_t lo, int64_t hi) {
                   for (int64_t r = lo; r < hi; ++r) {
                     const T* t = tp + rows[size_t(2 * r)] * E;
                     const T* q = pp + rows[size_t(2 * r + 1)] * E;
                     for (int64_t e = 0; e < E; ++e) yp[r * E + e] = A::st(A::ld(t[e]) + A::ld(q[e]));
                   }
                 });
  };
  switch (tok.dtype()) {
    case DType::F32: run(AF32{}); break;
    case DType::F16: run(AF16{}); break;
    case DType::BF16: run(ABF16{}); break;
    default: c.fail(std::string("dtype ") + dtype_name(tok.dtype()) + " is not supported (fp32, fp16, bf16)");
  }
}

}  // namespace

void register_shape_index_kernels() {
  register_kernel("Gather", k_gather);
  register_kernel("GatherElements", k_gather_elements);
  register_kernel("GatherND", k_gather_nd);
  register_kernel("ScatterND", k_scatter_nd);
  register_kernel("ScatterElements", k_scatter_elements);
  register_kernel("Scatter", k_scatter_elements);
  register_kernel("Compress", k_compress);
  register_kernel("NonZero", k_nonzero);
  register_kernel("OneHot", k_onehot);
  register_kernel("ReverseSequence", k_reverse_sequence);
  register_kernel("shardrt.PositionalEmbedding", k_positional_embedding);
}

}  // namespace shardrt::cpu::shape_k
