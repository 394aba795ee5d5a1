// CPU kernels that create tensors or pad/mask them: Shape, Size, Range, ConstantOfShape,
// Constant, EyeLike, Trilu, Dropout (inference), Pad.
#include <algorithm>

#include "backends/cpu/kernels_shape_common.h"

namespace shardrt::cpu::shape_k {

namespace {

void k_shape(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  int64_t r = x.rank();
  auto norm = [r](int64_t a) { return std::clamp<int64_t>(a < 0 ? a + r : a, 0, r); };
  int64_t s = norm(c.node.attr_i("start", 0));
  int64_t* out = c.out[0]->data<int64_t>();
  for (int64_t i = 0; i < c.out[0]->numel(); ++i) out[i] = x.dim(s + i);
}

void k_size(KernelCtx& c) { c.out[0]->data<int64_t>()[0] = c.in[0]->numel(); }

void k_range(KernelCtx& c) {
  const Tensor& st = *c.in[0];
  const Tensor& dl = *c.in[2];
  Tensor& y = *c.out[0];
  int64_t n = y.numel();
  switch (y.dtype()) {
    case DType::I64: {
      int64_t s = st.get_i(0), d = dl.get_i(0);
      for (int64_t i = 0; i < n; ++i) y.data<int64_t>()[i] = s + i * d;
      break;
    }
    case DType::I32: {
      int64_t s = st.get_i(0), d = dl.get_i(0);
      for (int64_t i = 0; i < n; ++i) y.data<int32_t>()[i] = int32_t(s + i * d);
      break;
    }
    case DType::F32: {
      double s = st.get_f(0), d = dl.get_f(0);
      for (int64_t i = 0; i < n; ++i) y.data<float>()[i] = float(s + double(i) * d);
      break;
    }
    case DType::F64: {
      double s = st.get_f(0), d = dl.get_f(0);
      for (int64_t i = 0; i < n; ++i) y.data<double>()[i] = s + double(i) * d;
      break;
    }
    default: c.fail(std::string("type ") + dtype_name(y.dtype()) + " is not supported");
  }
}

void k_constant_of_shape(KernelCtx& c) {
  Tensor& y = *c.out[0];
  const Tensor* v = c.node.attr_t("value");
  uint64_t zero = 0;
  fill_elems(y.raw(), y.numel(), v ? v->raw() : &zero, dtype_size(y.dtype()));
}

void k_constant(KernelCtx& c) {
  Tensor& y = *c.out[0];
  const Node& n = c.node;
  if (const Tensor* t = n.attr_t("value")) {
    if (t->nbytes() != y.nbytes()) c.fail("value does not match the output");
    copy_bytes(y.raw(), t->raw(), t->nbytes());
  } else if (n.has_attr("value_float")) {
    y.data<float>()[0] = n.attr_f("value_float", 0);
  } else if (n.has_attr("value_floats")) {
    auto v = n.attr_floats("value_floats");
    std::copy(v.begin(), v.end(), y.data<float>());
  } else if (n.has_attr("value_int")) {
    y.data<int64_t>()[0] = n.attr_i("value_int", 0);
  } else if (n.has_attr("value_ints")) {
    auto v = n.attr_ints("value_ints");
    std::copy(v.begin(), v.end(), y.data<int64_t>());
  } else {
    c.fail("no value attribute");
  }
}

void k_eyelike(KernelCtx& c) {
  Tensor& y = *c.out[0];
  std::memset(y.raw(), 0, y.nbytes());
  int64_t rows = y.dim(0), cols = y.dim(1), k = c.node.attr_i("k", 0);
  for (int64_t i = 0; i < rows; ++i)
    if (i + k >= 0 && i + k < cols) y.set_f(i * cols + i + k, 1.0);
}

void k_trilu(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  Tensor& y = *c.out[0];
  int64_t k = c.input(1) ? c.input(1)->get_i(0) : 0;
  bool upper = c.node.attr_i("upper", 1) != 0;
  int64_t N = x.dim(-2), M = x.dim(-1);
  if (N == 0 || M == 0) return;
  int64_t rows = x.numel() / M;
  size_t es = dtype_size(x.dtype());
  const char* src = static_cast<const char*>(x.raw());
  char* dst = static_cast<char*>(y.raw());
  parallel_for(rows, std::max<int64_t>(1, (64 << 10) / (M * int64_t(es))), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      int64_t i = r % N;
      // Kept columns [lo, hi); the rest are zero (all-zero bytes are zero in every type).
      int64_t lo = upper ? std::clamp<int64_t>(i + k, 0, M) : 0;
      int64_t hi = upper ? M : std::clamp<int64_t>(i + k + 1, 0, M);
      if (hi < lo) hi = lo;
      char* d = dst + size_t(r * M) * es;
      const char* s = src + size_t(r * M) * es;
      std::memset(d, 0, size_t(lo) * es);
      std::memcpy(d + size_t(lo) * es, s + size_t(lo) * es, size_t(hi - lo) * es);
      std::memset(d + size_t(hi) * es, 0, size_t(M - hi) * es);
    }
  });
}

// Inference: output = input, mask all true. The shape rule refuses training mode with a
// nonzero ratio (at run time the training_mode value is always known there).
void k_dropout(KernelCtx& c) {
  copy_bytes(c.out[0]->raw(), c.in[0]->raw(), c.in[0]->nbytes());
  if (c.out.size() > 1 && c.out[1]) std::memset(c.out[1]->raw(), 1, c.out[1]->nbytes());
}

void k_pad(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  Tensor& y = *c.out[0];
  int64_t r = x.rank();
  size_t es = dtype_size(x.dtype());
  auto pads = c.in[1]->to_i64_vector();
  std::vector<int64_t> axes;
  if (c.input(3)) axes = c.input(3)->to_i64_vector();
  else for (int64_t i = 0; i < r; ++i) axes.push_back(i);
  size_t na = axes.size();
  std::vector<int64_t> pb(size_t(r), 0), pe(size_t(r), 0);
  for (size_t i = 0; i < na; ++i) {
    int64_t a = axes[i] < 0 ? axes[i] + r : axes[i];
    pb[size_t(a)] = pads[i];
    pe[size_t(a)] = pads[i + na];
  }
  // Input range [lo, hi) of each axis that survives negative pads (cropping).
  std::vector<int64_t> lo(static_cast<size_t>(r)), hi(static_cast<size_t>(r));
  for (int64_t a = 0; a < r; ++a) {
    lo[size_t(a)] = std::max<int64_t>(0, -pb[size_t(a)]);
    hi[size_t(a)] = std::min(x.dim(a), x.dim(a) + pe[size_t(a)]);
    if (y.dim(a) != x.dim(a) + pb[size_t(a)] + pe[size_t(a)]) c.fail("output dims do not match the pads");
  }
  if (y.numel() == 0) return;
  auto xs = strides_of(x.dims()), ys = strides_of(y.dims());
  std::string mode = c.node.attr_s("mode", "constant");
  if (mode == "constant") {
    uint64_t zero = 0;
    const void* cv = c.input(2) && c.input(2)->numel() ? c.input(2)->raw() : &zero;
    fill_elems(y.raw(), y.numel(), cv, es);
    Dims box;
    int64_t doff = 0, soff = 0;
    for (int64_t a = 0; a < r; ++a) {
      box.push_back(std::max<int64_t>(0, hi[size_t(a)] - lo[size_t(a)]));
      soff += lo[size_t(a)] * xs[size_t(a)];
      doff += (lo[size_t(a)] + pb[size_t(a)]) * ys[size_t(a)];
    }
    strided_copy(static_cast<char*>(y.raw()) + doff * int64_t(es), ys,
                 static_cast<const char*>(x.raw()) + soff * int64_t(es), xs, box, es);
    return;
  }
  // reflect / edge / wrap: each output coordinate maps to an input coordinate per axis.
  std::vector<std::vector<int64_t>> map(static_cast<size_t>(r));
  for (int64_t a = 0; a < r; ++a) {
    int64_t l = lo[size_t(a)], n = hi[size_t(a)] - l;
    if (n <= 0) c.fail("cannot " + mode + "-pad an empty axis");
    for (int64_t o = 0; o < y.dim(a); ++o) {
      int64_t v = o - pb[size_t(a)] - l, m;
      if (v >= 0 && v < n) m = v;
      else if (mode == "edge") m = std::clamp<int64_t>(v, 0, n - 1);
      else if (mode == "wrap") m = ((v % n) + n) % n;
      else if (n == 1) m = 0;
      else {
        int64_t p = 2 * (n - 1), t = ((v % p) + p) % p;
        m = t >= n ? p - t : t;
      }
      map[size_t(a)].push_back((l + m) * xs[size_t(a)]);
    }
  }
  if (r == 0) { std::memcpy(y.raw(), x.raw(), es); return; }
  int64_t M = y.dim(r - 1), rows = y.numel() / M;
  with_elem(es, [&](auto z) {
    using T = decltype(z);
    const T* src = static_cast<const T*>(x.raw());
    T* dst = static_cast<T*>(y.raw());
    const auto& ml = map[size_t(r - 1)];
    parallel_for(rows, std::max<int64_t>(1, (64 << 10) / (M * int64_t(es))), [&](int64_t b, int64_t e) {
      for (int64_t row = b; row < e; ++row) {
        int64_t soff = 0, rem = row;
        for (int64_t a = r - 2; a >= 0; --a) {
          soff += map[size_t(a)][size_t(rem % y.dim(a))];
          rem /= y.dim(a);
        }
        T* d = dst + row * M;
        for (int64_t j = 0; j < M; ++j) d[j] = src[soff + ml[size_t(j)]];
      }
    });
  });
}

}  // namespace

void register_shape_create_kernels() {
  register_kernel("Shape", k_shape);
  register_kernel("Size", k_size);
  register_kernel("Range", k_range);
  register_kernel("ConstantOfShape", k_constant_of_shape);
  register_kernel("Constant", k_constant);
  register_kernel("EyeLike", k_eyelike);
  register_kernel("Trilu", k_trilu);
  register_kernel("Dropout", k_dropout);
  register_kernel("Pad", k_pad);
}

}  // namespace shardrt::cpu::shape_k
