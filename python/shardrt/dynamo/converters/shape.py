"""Shape and data-movement converters (ONNX canonical forms: axes/starts/... as int64
constant inputs)."""
from __future__ import annotations

import torch
import torch.fx

from .context import dtype, norm_axis, rank, shape, size_arg_ok, static_int, static_shape, val
from .registry import converter

_INT64_MAX = 2**63 - 1


def _ints(xs) -> bool:
    return all(static_int(x) is not None for x in xs)


def _static_out(node):
    return static_shape(node) is not None or "dynamic output shape"


def _sizes_ok(sizes) -> bool:
    return all(size_arg_ok(a) for a in sizes)


def _reshape_target(node):
    """The target shape for Reshape as ints: the static output dims, or the op's own size
    list with one -1 standing for its only symbolic dim; None when the sizes must be
    computed (several symbolic dims)."""
    s = static_shape(node)
    if s is not None:
        return s
    sizes = list(node.args[1])
    dims = [static_int(d) for d in sizes]
    dims = [-1 if d is None else d for d in dims]
    return dims if dims.count(-1) <= 1 else None


def _reshape_ok(node):
    return _reshape_target(node) is not None or _sizes_ok(node.args[1]) or "sizes that are not ints or SymInts"


@converter("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default", capability=_reshape_ok)
def _view(ctx, node):
    dims = _reshape_target(node)
    if dims is not None:
        return ctx.op("Reshape", [ctx.get(node.args[0]), ctx.i64(dims)])
    # several symbolic sizes: the shape is computed from the inputs' shapes (the build still
    # names the dims: it sees through Shape -> Gather -> Concat)
    return ctx.op("Reshape", [ctx.get(node.args[0]), ctx.shape_tensor(node.args[1])])


def _expand_ok(node):
    return static_shape(node) is not None or _sizes_ok(node.args[1]) or "sizes that are not ints or SymInts"


@converter("aten.expand.default", capability=_expand_ok)
def _expand(ctx, node):
    s = static_shape(node)
    if s is not None:
        return ctx.op("Expand", [ctx.get(node.args[0]), ctx.i64(s)])
    # -1 keeps the input's size: Expand broadcasts, and a 1 there keeps the input's dim
    return ctx.op("Expand", [ctx.get(node.args[0]), ctx.shape_tensor(node.args[1], minus_one_as=1)])


@converter("aten.permute.default")
def _permute(ctx, node):
    r = rank(node)
    perm = [norm_axis(int(p), r) for p in node.args[1]]
    return ctx.op("Transpose", [ctx.get(node.args[0])], {"perm": perm})


@converter("aten.t.default")
def _t(ctx, node):
    if rank(node) < 2:
        return ctx.op("Identity", [ctx.get(node.args[0])])
    return ctx.op("Transpose", [ctx.get(node.args[0])], {"perm": [1, 0]})


@converter("aten.transpose.int")
def _transpose(ctx, node):
    r = rank(node)
    d0, d1 = norm_axis(node.args[1], r), norm_axis(node.args[2], r)
    perm = list(range(r))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return ctx.op("Transpose", [ctx.get(node.args[0])], {"perm": perm})


@converter("aten.unsqueeze.default")
def _unsqueeze(ctx, node):
    return ctx.op("Unsqueeze", [ctx.get(node.args[0]), ctx.i64([norm_axis(node.args[1], rank(node))])])


@converter("aten.squeeze.dim", "aten.squeeze.dims", "aten.squeeze.default")
def _squeeze(ctx, node):
    x = node.args[0]
    r = rank(x)
    xs = shape(x)
    if len(node.args) > 1:
        dims = node.args[1] if isinstance(node.args[1], (list, tuple)) else [node.args[1]]
    else:
        dims = range(r)
    # torch leaves dims that are not 1 alone; ONNX Squeeze would refuse them
    axes = sorted({norm_axis(d, r) for d in dims if static_int(xs[norm_axis(d, r)]) == 1}) if r else []
    if not axes:
        return ctx.op("Identity", [ctx.get(x)])
    return ctx.op("Squeeze", [ctx.get(x), ctx.i64(axes)])


def _slice_args(node):
    a = list(node.args) + [None] * (5 - len(node.args))
    dim = a[1] if a[1] is not None else node.kwargs.get("dim", 0)
    start = a[2] if a[2] is not None else node.kwargs.get("start")
    end = a[3] if a[3] is not None else node.kwargs.get("end")
    step = a[4] if a[4] is not None else node.kwargs.get("step", 1)
    return dim, start, end, step


def _slice_ok(node):
    dim, start, end, step = _slice_args(node)
    if static_int(dim) is None or static_int(step) is None:
        return "symbolic dim or step"
    return all(a is None or size_arg_ok(a) for a in (start, end)) or "bounds that are not ints or SymInts"


def _bound(ctx, a, default):
    c = default if a is None else static_int(a)
    if c is not None:
        return ctx.i64([min(c, _INT64_MAX)])
    return ctx.op("Unsqueeze", [ctx.get(a), ctx.i64([0])])  # a symbolic start/end


@converter("aten.slice.Tensor", capability=_slice_ok)
def _slice(ctx, node):
    x = node.args[0]
    dim, start, end, step = _slice_args(node)
    axis = norm_axis(static_int(dim), rank(x))
    return ctx.op("Slice", [ctx.get(x), _bound(ctx, start, 0), _bound(ctx, end, _INT64_MAX), ctx.i64([axis]),
                            ctx.i64([static_int(step)])])


@converter("aten.select.int", capability=lambda n: _ints(n.args[1:3]) or "symbolic index")
def _select(ctx, node):
    x, dim, index = node.args[:3]
    axis = norm_axis(dim, rank(x))
    idx = ctx.const(torch.tensor(index, dtype=torch.int64))  # 0-d index: Gather drops the axis
    return ctx.op("Gather", [ctx.get(x), idx], {"axis": axis})


@converter("aten.cat.default")
def _cat(ctx, node):
    out = dtype(node)
    xs = [t for t in node.args[0] if not (val(t).dim() == 1 and static_int(val(t).shape[0]) == 0)]  # torch skips legacy empties
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    axis = norm_axis(dim, rank(node))
    if len(xs) == 1:
        return ctx.op("Identity", [ctx.tensor(xs[0], out)])
    return ctx.op("Concat", [ctx.tensor(t, out) for t in xs], {"axis": axis})


def _split_sizes(node):
    x = node.args[0]
    dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
    axis = norm_axis(dim, rank(x))
    if str(node.target) == "aten.split_with_sizes.default":
        return axis, list(node.args[1])
    return axis, [val(o).shape[axis] for o in val(node)]


def _split_ok(node):
    axis, sizes = _split_sizes(node)
    return _ints(sizes) or "symbolic split sizes"


@converter("aten.split.Tensor", "aten.split_with_sizes.default", capability=_split_ok)
def _split(ctx, node):
    axis, sizes = _split_sizes(node)
    x = ctx.get(node.args[0])
    if len(sizes) == 1:
        return [ctx.op("Identity", [x])]
    # the split input fixes the sizes (num_outputs must not be given with it)
    return ctx.op("Split", [x, ctx.i64(sizes)], {"axis": axis}, num_outputs=len(sizes))


def _unbind_ok(node):
    x = node.args[0]
    axis = norm_axis(node.args[1] if len(node.args) > 1 else 0, rank(x))
    return static_int(shape(x)[axis]) is not None or "symbolic size along the axis"


@converter("aten.unbind.int", capability=_unbind_ok)
def _unbind(ctx, node):
    x = node.args[0]
    axis = norm_axis(node.args[1] if len(node.args) > 1 else 0, rank(x))
    n = shape(x)[axis]
    parts = ctx.op("Split", [ctx.get(x), ctx.i64([1] * n)], {"axis": axis}, num_outputs=n) if n > 1 \
        else [ctx.get(x)]
    return [ctx.op("Squeeze", [p, ctx.i64([axis])]) for p in parts]


@converter("aten.embedding.default")
def _embedding(ctx, node):
    weight, indices = node.args[:2]
    return ctx.op("Gather", [ctx.get(weight), ctx.get(indices)], {"axis": 0})


@converter("aten.index_select.default")
def _index_select(ctx, node):
    x, dim, index = node.args[:3]
    return ctx.op("Gather", [ctx.get(x), ctx.get(index)], {"axis": norm_axis(dim, rank(x))})


def _index_ok(node):
    idx = list(node.args[1])
    real = [i for i, t in enumerate(idx) if t is not None]
    if not real:
        return "no index tensor"
    if any(dtype(idx[i]) not in (torch.int64, torch.int32) for i in real):
        return "integer index tensors only"
    if len(real) == 1:
        return True
    # several index tensors: those on the leading dims (x[i, j] ...) become one GatherND
    if real != list(range(len(real))):
        return "several index tensors not on the leading dims"
    return True


@converter("aten.index.Tensor", capability=_index_ok)
def _index(ctx, node):
    x, idx = node.args[0], list(node.args[1])
    real = [i for i, t in enumerate(idx) if t is not None]
    if len(real) == 1:  # x[:, ..., i]: Gather along that axis (the index's dims replace it)
        axis = real[0]
        return ctx.op("Gather", [ctx.get(x), ctx.get(idx[axis])], {"axis": axis})
    shapes = [static_shape(idx[i]) for i in real]
    ts = [ctx.tensor(idx[i], torch.int64) for i in real]
    if all(sh is not None for sh in shapes):
        b = list(torch.broadcast_shapes(*shapes))
        target = ctx.i64(b)
    else:  # symbolic index shapes: their broadcast shape is the shape of their sum
        b = [None] * max(rank(idx[i]) for i in real)
        total = ts[0]
        for t in ts[1:]:
            total = ctx.op("Add", [total, t])
        target = ctx.op("Shape", [total])
    cols = []
    for t, sh in zip(ts, shapes):
        if sh is None or sh != b:
            t = ctx.op("Expand", [t, target])
        cols.append(ctx.op("Unsqueeze", [t, ctx.i64([len(b)])]))
    return ctx.op("GatherND", [ctx.get(x), ctx.op("Concat", cols, {"axis": len(b)})], {"batch_dims": 0})


@converter("aten.gather.default", capability=lambda n: not n.kwargs.get("sparse_grad", False))
def _gather(ctx, node):
    x, dim, index = node.args[:3]
    return ctx.op("GatherElements", [ctx.get(x), ctx.get(index)], {"axis": norm_axis(dim, rank(x))})


@converter("aten.constant_pad_nd.default", capability=lambda n: _ints(n.args[1]))
def _pad(ctx, node):
    x = node.args[0]
    pad = list(node.args[1])
    value = node.args[2] if len(node.args) > 2 else node.kwargs.get("value", 0)
    r = rank(x)
    begins, ends = [0] * r, [0] * r
    for i in range(len(pad) // 2):  # torch lists (begin, end) pairs from the last dim backwards
        begins[r - 1 - i] = pad[2 * i]
        ends[r - 1 - i] = pad[2 * i + 1]
    return ctx.op("Pad", [ctx.get(x), ctx.i64(begins + ends), ctx.scalar(value, dtype(node))], {"mode": "constant"})


@converter("aten.repeat.default", capability=lambda n: _ints(n.args[1]))
def _repeat(ctx, node):
    x = node.args[0]
    reps = list(node.args[1])
    t = ctx.get(x)
    extra = len(reps) - rank(x)
    if extra > 0:
        t = ctx.op("Unsqueeze", [t, ctx.i64(list(range(extra)))])
    return ctx.op("Tile", [t, ctx.i64(reps)])


@converter("aten.flip.default")
def _flip(ctx, node):
    x = node.args[0]
    r = rank(x)
    axes = [norm_axis(d, r) for d in node.args[1]]
    n = len(axes)
    return ctx.op("Slice", [ctx.get(x), ctx.i64([-1] * n), ctx.i64([-_INT64_MAX] * n), ctx.i64(axes), ctx.i64([-1] * n)])


@converter("aten.triu.default", "aten.tril.default")
def _trilu(ctx, node):
    k = node.args[1] if len(node.args) > 1 else node.kwargs.get("diagonal", 0)
    upper = 1 if str(node.target).startswith("aten.triu") else 0
    return ctx.op("Trilu", [ctx.get(node.args[0]), ctx.const(torch.tensor(k, dtype=torch.int64))], {"upper": upper})
