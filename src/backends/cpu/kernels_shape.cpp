// CPU kernels of the shape/data-movement family: registration, and the kernels that move
// whole tensors or blocks of them (Reshape-likes, Transpose, Concat, Split, Slice, Expand,
// Tile, DepthToSpace, SpaceToDepth). All are dtype-agnostic: bytes move by element size.
#include <algorithm>

#include "backends/cpu/kernels_shape_common.h"
#include "ir/ops/shape_ops_common.h"

namespace shardrt::cpu {

namespace shape_k {

namespace {

// Reshape, Squeeze, Unsqueeze, Flatten, Identity: same bytes, new dims (the executor may
// alias these instead of running the copy).
void k_copy(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  if (c.out[0]->nbytes() != x.nbytes()) c.fail("output size differs from input size");
  copy_bytes(c.out[0]->raw(), x.raw(), x.nbytes());
}

void k_transpose(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  Tensor& y = *c.out[0];
  int64_t r = x.rank();
  std::vector<int64_t> perm = c.node.attr_ints("perm");
  if (!c.node.has_attr("perm"))
    for (int64_t i = r - 1; i >= 0; --i) perm.push_back(i);
  auto is = strides_of(x.dims());
  std::vector<int64_t> ss;
  for (int64_t p : perm) ss.push_back(is[size_t(p < 0 ? p + r : p)]);
  strided_copy(y.raw(), strides_of(y.dims()), x.raw(), ss, y.dims(), dtype_size(x.dtype()));
}

int64_t norm_axis(const KernelCtx& c, int64_t a, int64_t r) {
  if (a < -r || a >= r) c.fail("axis " + std::to_string(a) + " is out of range");
  return a < 0 ? a + r : a;
}

void k_concat(KernelCtx& c) {
  Tensor& y = *c.out[0];
  int64_t ax = norm_axis(c, c.node.attr_i("axis", 0), y.rank());
  size_t es = dtype_size(y.dtype());
  auto ys = strides_of(y.dims());
  int64_t off = 0;
  for (const Tensor* x : c.in) {
    strided_copy(static_cast<char*>(y.raw()) + off * ys[size_t(ax)] * int64_t(es), ys, x->raw(),
                 strides_of(x->dims()), x->dims(), es);
    off += x->dim(ax);
  }
}

void k_split(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  int64_t ax = norm_axis(c, c.node.attr_i("axis", 0), x.rank());
  size_t es = dtype_size(x.dtype());
  auto xs = strides_of(x.dims());
  int64_t off = 0;
  for (Tensor* y : c.out) {
    if (!y) continue;
    strided_copy(y->raw(), strides_of(y->dims()),
                 static_cast<const char*>(x.raw()) + off * xs[size_t(ax)] * int64_t(es), xs, y->dims(), es);
    off += y->dim(ax);
  }
}

void k_slice(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  Tensor& y = *c.out[0];
  auto vec = [&](size_t i) { return c.input(i) ? c.input(i)->to_i64_vector() : std::vector<int64_t>{}; };
  std::vector<shape_ops::SliceAxis> geo;
  std::string err = shape_ops::slice_geometry(x.dims(), vec(1), vec(2), vec(3), vec(4), geo);
  if (!err.empty()) c.fail(err);
  auto xs = strides_of(x.dims());
  int64_t base = 0;
  std::vector<int64_t> ss;
  Dims counts;
  for (size_t a = 0; a < geo.size(); ++a) {
    base += geo[a].start * xs[a];
    ss.push_back(geo[a].step * xs[a]);
    counts.push_back(geo[a].count);
  }
  if (counts != y.dims()) c.fail("output dims " + dims_str(y.dims()) + " differ from the slice's " + dims_str(counts));
  size_t es = dtype_size(x.dtype());
  strided_copy(y.raw(), strides_of(y.dims()), static_cast<const char*>(x.raw()) + base * int64_t(es), ss,
               counts, es);
}

void k_expand(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  Tensor& y = *c.out[0];
  int64_t r = y.rank(), off = r - x.rank();
  if (off < 0) c.fail("output rank is below the input's");
  auto xs = strides_of(x.dims());
  std::vector<int64_t> ss(size_t(r), 0);
  for (int64_t i = 0; i < x.rank(); ++i) {
    int64_t d = x.dim(i);
    if (d != y.dim(i + off) && d != 1) c.fail("cannot expand " + dims_str(x.dims()) + " to " + dims_str(y.dims()));
    ss[size_t(i + off)] = d == 1 ? 0 : xs[size_t(i)];
  }
  strided_copy(y.raw(), strides_of(y.dims()), x.raw(), ss, y.dims(), dtype_size(x.dtype()));
}

// Tile as a strided copy over [r0, d0, r1, d1, ...]: repeat index (source stride 0) then
// the input's own index, so whole input rows stay contiguous runs.
void k_tile(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  Tensor& y = *c.out[0];
  auto xs = strides_of(x.dims()), ys = strides_of(y.dims());
  Dims dims;
  std::vector<int64_t> ds, ss;
  for (int64_t i = 0; i < x.rank(); ++i) {
    int64_t d = x.dim(i);
    if (d == 0 ? y.dim(i) != 0 : y.dim(i) % d != 0) c.fail("output dims do not tile the input");
    dims.push_back(d == 0 ? 0 : y.dim(i) / d);
    ds.push_back(d * ys[size_t(i)]);
    ss.push_back(0);
    dims.push_back(d);
    ds.push_back(ys[size_t(i)]);
    ss.push_back(xs[size_t(i)]);
  }
  strided_copy(y.raw(), ds, x.raw(), ss, dims, dtype_size(x.dtype()));
}

// DepthToSpace writes output [N, C', H, b, W, b] (its row-major order) from the input
// viewed as [N, b, b, C', H, W] (DCR) or [N, C', b, b, H, W] (CRD).
void k_depth_to_space(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  Tensor& y = *c.out[0];
  int64_t b = c.node.attr_i("blocksize", 0);
  int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), Co = C / (b * b);
  bool crd = c.node.attr_s("mode", "DCR") == "CRD";
  Dims dims{N, Co, H, b, W, b};
  int64_t hw = H * W;
  std::vector<int64_t> ss = crd ? std::vector<int64_t>{C * hw, b * b * hw, W, b * hw, 1, hw}
                                : std::vector<int64_t>{C * hw, hw, W, b * Co * hw, 1, Co * hw};
  strided_copy(y.raw(), strides_of(dims), x.raw(), ss, dims, dtype_size(x.dtype()));
}

// SpaceToDepth writes output [N, b, b, C, H', W'] from the input viewed as
// [N, C, H', b, W', b].
void k_space_to_depth(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  Tensor& y = *c.out[0];
  int64_t b = c.node.attr_i("blocksize", 0);
  int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  Dims dims{N, b, b, C, H / b, W / b};
  std::vector<int64_t> ss{C * H * W, W, 1, H * W, b * W, b};
  strided_copy(y.raw(), strides_of(dims), x.raw(), ss, dims, dtype_size(x.dtype()));
}

}  // namespace

void register_shape_move_kernels() {
  for (const char* op : {"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity"}) register_kernel(op, k_copy);
  register_kernel("Transpose", k_transpose);
  register_kernel("Concat", k_concat);
  register_kernel("Split", k_split);
  register_kernel("Slice", k_slice);
  register_kernel("Expand", k_expand);
  register_kernel("Tile", k_tile);
  register_kernel("DepthToSpace", k_depth_to_space);
  register_kernel("SpaceToDepth", k_space_to_depth);
}

}  // namespace shape_k

void register_shape_kernels() {
  shape_k::register_shape_move_kernels();
  shape_k::register_shape_index_kernels();
  shape_k::register_shape_create_kernels();
}

}  // namespace shardrt::cpu
