// CUDA kernels that move whole tensors or blocks of them: Reshape-likes, Transpose,
// Concat, Split, Slice, Expand, Tile, DepthToSpace, SpaceToDepth. All are strided copies
// (kernels_data.cu) over views computed on the host, so they work for every dtype.
#include "backends/cuda/kernels_data_common.h"
#include "ir/ops/shape_ops_common.h"

namespace shardrt::cuda::data {

namespace {

// Reshape, Squeeze, Unsqueeze, Flatten, Identity: same bytes, new dims (the executor
// usually aliases these; the copy runs when it does not).
void k_copy(KernelCtx& c) {
  const DevTensor& x = *c.in[0];
  if (c.out[0]->nbytes() != x.nbytes()) c.fail("output size differs from input size");
  copy_bytes(c, c.out[0]->data, x.data, x.nbytes());
}

void k_transpose(KernelCtx& c) {
  const DevTensor& x = *c.in[0];
  DevTensor& y = *c.out[0];
  const int64_t r = x.rank();
  std::vector<int64_t> perm = c.node.attr_ints("perm");
  if (!c.node.has_attr("perm"))
    for (int64_t i = r - 1; i >= 0; --i) perm.push_back(i);
  if (int64_t(perm.size()) != r) c.fail("perm has " + std::to_string(perm.size()) + " entries for rank " + std::to_string(r));
  auto is = strides_of(x.dims);
  std::vector<int64_t> ss;
  for (int64_t p : perm) ss.push_back(is[size_t(norm_axis(c, p, r))]);
  strided_copy(c, y.data, strides_of(y.dims), x.data, ss, y.dims, dtype_size(x.dtype));
}

void k_concat(KernelCtx& c) {
  DevTensor& y = *c.out[0];
  const int64_t ax = norm_axis(c, c.node.attr_i("axis", 0), y.rank());
  const size_t es = dtype_size(y.dtype);
  auto ys = strides_of(y.dims);
  int64_t off = 0;
  for (const DevTensor* x : c.in) {
    if (!x) continue;
    if (x->rank() != y.rank()) c.fail("inputs differ in rank");
    strided_copy(c, static_cast<char*>(y.data) + off * ys[size_t(ax)] * int64_t(es), ys, x->data, strides_of(x->dims),
                 x->dims, es);
    off += x->dim(ax);
  }
  if (off != y.dim(ax)) c.fail("inputs do not add up to the output along the axis");
}

void k_split(KernelCtx& c) {
  const DevTensor& x = *c.in[0];
  const int64_t ax = norm_axis(c, c.node.attr_i("axis", 0), x.rank());
  const size_t es = dtype_size(x.dtype);
  // Chunk sizes: the outputs' own dims when all are present; else the split input or
  // equal chunks (an omitted output still occupies its chunk).
  std::vector<int64_t> sizes;
  bool all = true;
  for (DevTensor* y : c.out) all &= y != nullptr;
  if (all) {
    for (DevTensor* y : c.out) sizes.push_back(y->dim(ax));
  } else if (c.input(1)) {
    sizes = host_input_or_fail(c, 1, "split").to_i64_vector();
  } else {
    sizes = shape_ops::equal_split(x.dim(ax), int64_t(c.out.size()));
  }
  if (sizes.size() != c.out.size()) c.fail("split sizes do not match the number of outputs");
  auto xs = strides_of(x.dims);
  int64_t off = 0;
  for (size_t o = 0; o < c.out.size(); ++o) {
    DevTensor* y = c.out[o];
    if (y) {
      if (y->dim(ax) != sizes[o]) c.fail("output " + std::to_string(o) + " disagrees with the split sizes");
      strided_copy(c, y->data, strides_of(y->dims),
                   static_cast<const char*>(x.data) + off * xs[size_t(ax)] * int64_t(es), xs, y->dims, es);
    }
    off += sizes[o];
  }
  if (off > x.dim(ax)) c.fail("split sizes exceed the axis");
}

void k_slice(KernelCtx& c) {
  const DevTensor& x = *c.in[0];
  DevTensor& y = *c.out[0];
  static const char* what[] = {"", "starts", "ends", "axes", "steps"};
  auto vec = [&](size_t i) {
    if (!c.input(i)) return std::vector<int64_t>{};
    return host_input_or_fail(c, i, what[i]).to_i64_vector();
  };
  std::vector<shape_ops::SliceAxis> geo;
  std::string err = shape_ops::slice_geometry(x.dims, vec(1), vec(2), vec(3), vec(4), geo);
  if (!err.empty()) c.fail(err);
  auto xs = strides_of(x.dims);
  int64_t base = 0;
  std::vector<int64_t> ss;
  Dims counts;
  for (size_t a = 0; a < geo.size(); ++a) {
    base += geo[a].start * xs[a];
    ss.push_back(geo[a].step * xs[a]);
    counts.push_back(geo[a].count);
  }
  if (counts != y.dims) c.fail("output dims " + dims_str(y.dims) + " differ from the slice's " + dims_str(counts));
  if (y.numel() == 0) return;
  const size_t es = dtype_size(x.dtype);
  strided_copy(c, y.data, strides_of(y.dims), static_cast<const char*>(x.data) + base * int64_t(es), ss, counts, es);
}

void k_expand(KernelCtx& c) {
  const DevTensor& x = *c.in[0];
  DevTensor& y = *c.out[0];
  const int64_t r = y.rank(), off = r - x.rank();
  if (off < 0) c.fail("output rank is below the input's");
  auto xs = strides_of(x.dims);
  std::vector<int64_t> ss(size_t(r), 0);
  for (int64_t i = 0; i < x.rank(); ++i) {
    const int64_t d = x.dim(i);
    if (d != y.dim(i + off) && d != 1) c.fail("cannot expand " + dims_str(x.dims) + " to " + dims_str(y.dims));
    ss[size_t(i + off)] = d == 1 ? 0 : xs[size_t(i)];
  }
  strided_copy(c, y.data, strides_of(y.dims), x.data, ss, y.dims, dtype_size(x.dtype));
}

// Tile as a strided copy over [r0, d0, r1, d1, ...]: repeat index (source stride 0) then
// the input's own index, so whole input rows stay contiguous runs.
void k_tile(KernelCtx& c) {
  const DevTensor& x = *c.in[0];
  DevTensor& y = *c.out[0];
  if (x.rank() != y.rank()) c.fail("output rank differs from the input's");
  auto xs = strides_of(x.dims), ys = strides_of(y.dims);
  Dims dims;
  std::vector<int64_t> ds, ss;
  for (int64_t i = 0; i < x.rank(); ++i) {
    const int64_t d = x.dim(i);
    if (d == 0 ? y.dim(i) != 0 : y.dim(i) % d != 0) c.fail("output dims do not tile the input");
    dims.push_back(d == 0 ? 0 : y.dim(i) / d);
    ds.push_back(d * ys[size_t(i)]);
    ss.push_back(0);
    dims.push_back(d);
    ds.push_back(ys[size_t(i)]);
    ss.push_back(xs[size_t(i)]);
  }
  strided_copy(c, y.data, ds, x.data, ss, dims, dtype_size(x.dtype));
}

// DepthToSpace writes output [N, C', H, b, W, b] (its row-major order) from the input
// viewed as [N, b, b, C', H, W] (DCR) or [N, C', b, b, H, W] (CRD).
void k_depth_to_space(KernelCtx& c) {
  const DevTensor& x = *c.in[0];
  DevTensor& y = *c.out[0];
  const int64_t b = c.node.attr_i("blocksize", 0);
  if (x.rank() != 4 || b <= 0 || x.dim(1) % (b * b) != 0) c.fail("needs a 4-D input whose channels divide by blocksize^2");
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), Co = C / (b * b);
  const bool crd = c.node.attr_s("mode", "DCR") == "CRD";
  const Dims dims{N, Co, H, b, W, b};
  const int64_t hw = H * W;
  std::vector<int64_t> ss = crd ? std::vector<int64_t>{C * hw, b * b * hw, W, b * hw, 1, hw}
                                : std::vector<int64_t>{C * hw, hw, W, b * Co * hw, 1, Co * hw};
  strided_copy(c, y.data, strides_of(dims), x.data, ss, dims, dtype_size(x.dtype));
}

// SpaceToDepth writes output [N, b, b, C, H', W'] from the input viewed as
// [N, C, H', b, W', b].
void k_space_to_depth(KernelCtx& c) {
  const DevTensor& x = *c.in[0];
  DevTensor& y = *c.out[0];
  const int64_t b = c.node.attr_i("blocksize", 0);
  if (x.rank() != 4 || b <= 0 || x.dim(2) % b != 0 || x.dim(3) % b != 0) c.fail("needs a 4-D input whose H and W divide by blocksize");
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const Dims dims{N, b, b, C, H / b, W / b};
  std::vector<int64_t> ss{C * H * W, W, 1, H * W, b * W, b};
  strided_copy(c, y.data, strides_of(dims), x.data, ss, dims, dtype_size(x.dtype));
}

}  // namespace

void register_data_move_kernels() {
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

}  // namespace shardrt::cuda::data
