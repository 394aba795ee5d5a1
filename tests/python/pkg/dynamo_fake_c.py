"""A stand-in for `shardrt._C` used by the dynamo tests while (or where) the extension is not
built: Network records an ONNX graph, build_engine wraps it in a model, and
ExecutionContext runs it with ONNX's reference evaluator (shardrt.* ops by the definitions
in docs/ops.md, written here in numpy). It checks the converters against ONNX's own
semantics; the real engine is used whenever `shardrt._C` imports."""
from __future__ import annotations

import itertools

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

_TYPES = {"float32": 1, "uint8": 2, "int8": 3, "int32": 6, "int64": 7, "bool": 9, "float16": 10, "float64": 11,
          "bfloat16": 16}


class ITensor:
    def __init__(self, name):
        self.name = name


class Network:
    def __init__(self, name="network"):
        self.name = name
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self._ids = itertools.count()

    def input(self, name, dtype, dims, dim_names=()):
        shape = [d if d >= 0 else (dim_names[i] if i < len(dim_names) and dim_names[i] else f"d{i}")
                 for i, d in enumerate(dims)]
        self.inputs.append(helper.make_tensor_value_info(name, _TYPES[dtype], shape))
        return ITensor(name)

    def weight(self, name, array):
        if isinstance(array, torch.Tensor):
            array = array.detach().float().numpy() if array.dtype == torch.bfloat16 else array.detach().numpy()
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return ITensor(name)

    def op(self, op_type, inputs, attrs=None, num_outputs=1, name=""):
        domain = ""
        if op_type.startswith("shardrt."):
            domain, op_type = "shardrt", "Shardrt" + op_type[len("shardrt."):]  # no clash with ONNX names
        if op_type == "GatherElements":  # ONNX's reference uses np.choose, limited to 32/64 choices
            domain, op_type = "shardrt", "ShardrtGatherElements"
        if op_type == "Div":  # ONNX's reference floors integer division; shardrt truncates (docs/ops.md)
            domain, op_type = "shardrt", "ShardrtDiv"
        base = f"{name or op_type}_{next(self._ids)}"
        outs = [f"{base}_out{k}" for k in range(num_outputs)]
        node = helper.make_node(op_type, ["" if t is None else t.name for t in inputs], outs, name=base,
                                domain=domain)
        for k, v in (attrs or {}).items():
            if isinstance(v, torch.Tensor):
                v = numpy_helper.from_array(v.numpy(), k)
            elif isinstance(v, np.ndarray):
                v = numpy_helper.from_array(v, k)
            node.attribute.append(helper.make_attribute(k, v))
        self.nodes.append(node)
        return [ITensor(o) for o in outs]

    def output(self, t, name):
        self.nodes.append(helper.make_node("Identity", [t.name], [name]))
        self.outputs.append(helper.make_empty_tensor_value_info(name))


class BuildConfig:
    def __init__(self, *, shapes=None, autocast=None, optimize=True, device="cpu", disabled_passes=(), verbose=False):
        self.shapes = shapes or {}
        self.autocast, self.optimize, self.device = autocast, optimize, device
        self.disabled_passes, self.verbose = list(disabled_passes), verbose


class Engine:
    def __init__(self, model):
        self.model = model
        self.inputs = [{"name": i.name} for i in model.graph.input]
        self.outputs = [{"name": o.name} for o in model.graph.output]


def build_engine(net, cfg=None):
    g = helper.make_graph(net.nodes, net.name, net.inputs, net.outputs, net.inits)
    return Engine(helper.make_model(g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("shardrt", 1)]))


_current_comm = [None]


class Communicator:
    def __init__(self, rank, size, cbs):
        self.rank, self.size, self.cbs = rank, size, cbs

    @staticmethod
    def from_callbacks(rank, size, all_reduce, all_gather, broadcast, reduce_scatter=None, barrier=None, split=None,
                       backend="python", name="world"):
        return Communicator(rank, size, dict(all_reduce=all_reduce, all_gather=all_gather))


class ExecutionContext:
    def __init__(self, engine, device="", comm=None):
        self.engine, self.comm, self.device = engine, comm, "cpu"
        self.sess = ReferenceEvaluator(engine.model, new_ops=_OPS)

    def run(self, inputs):
        feeds = {k: (v.float() if v.dtype == torch.bfloat16 else v).numpy() for k, v in inputs.items()}
        _current_comm[0] = self.comm
        try:
            res = self.sess.run(None, feeds)
        finally:
            _current_comm[0] = None
        names = [o.name for o in self.engine.model.graph.output]
        return {n: torch.from_numpy(np.array(r, copy=True, order="C")) for n, r in zip(names, res)}


# --- shardrt.* ops (docs/ops.md) ------------------------------------------------------------
def _gelu(x, tanh):
    import math
    if tanh:
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    from scipy.special import erf  # noqa
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


class ShardrtLinear(OpRun):
    op_domain = "shardrt"

    def _run(self, x, w, b=None, trans_b=None, activation=None):
        y = x @ (w.T if trans_b else w)
        if b is not None:
            y = y + b
        act = activation or "none"
        if act == "relu":
            y = np.maximum(y, 0)
        elif act == "silu":
            y = y / (1 + np.exp(-y))
        elif act in ("gelu", "gelu_tanh"):
            y = _gelu(y, act == "gelu_tanh")
        return (y.astype(x.dtype),)


class ShardrtSilu(OpRun):
    op_domain = "shardrt"

    def _run(self, x):
        return ((x / (1 + np.exp(-x))).astype(x.dtype),)


class ShardrtAttention(OpRun):
    op_domain = "shardrt"

    def _run(self, q, k, v, mask=None, scale=None, causal=None):
        d = q.shape[-1]
        s = scale if scale else 1.0 / np.sqrt(d)
        rep = q.shape[1] // k.shape[1]
        k = np.repeat(k, rep, axis=1)
        v = np.repeat(v, rep, axis=1)
        scores = (q.astype(np.float32) @ np.swapaxes(k, -1, -2).astype(np.float32)) * s
        allowed = np.ones(scores.shape, dtype=bool)
        if causal:
            sq, skv = q.shape[2], k.shape[2]
            allowed &= np.arange(skv)[None, :] <= np.arange(sq)[:, None] + (skv - sq)
        if mask is not None:
            if mask.dtype == np.bool_:
                allowed &= np.broadcast_to(mask, scores.shape)
            else:
                scores = scores + mask
        scores = np.where(allowed, scores, -np.inf)
        m = scores.max(-1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        e = np.where(allowed, np.exp(scores - m), 0)
        den = e.sum(-1, keepdims=True)
        p = np.where(den > 0, e / np.where(den > 0, den, 1), 0)
        return ((p @ v.astype(np.float32)).astype(q.dtype),)


class ShardrtGatherElements(OpRun):
    op_domain = "shardrt"

    def _run(self, x, i, axis=None):
        a = axis or 0
        return (np.take_along_axis(x, np.where(i < 0, i + x.shape[a], i), axis=a),)


class ShardrtDiv(OpRun):
    op_domain = "shardrt"

    def _run(self, a, b):
        if np.issubdtype(a.dtype, np.integer):
            q = np.trunc(a.astype(np.float64) / np.where(b == 0, 1, b))
            return (np.where(b == 0, 0, q).astype(a.dtype),)
        return (np.divide(a, b).astype(a.dtype),)


def _comm():
    c = _current_comm[0]
    if c is None:
        raise RuntimeError("collective without a communicator")
    return c


class ShardrtAllReduceStart(OpRun):
    op_domain = "shardrt"

    def _run(self, x, reduce=None, group=None):
        out = np.array(x, copy=True)
        _comm().cbs["all_reduce"](torch.from_numpy(x.reshape(-1)), torch.from_numpy(out.reshape(-1)), reduce or "sum")
        return (out,)


class ShardrtAllGatherStart(OpRun):
    op_domain = "shardrt"

    def _run(self, x, axis=None, group=None, gathered_size=None):
        c = _comm()
        assert (axis or 0) == 0
        out = np.empty((x.shape[0] * c.size,) + x.shape[1:], dtype=x.dtype)
        c.cbs["all_gather"](torch.from_numpy(np.ascontiguousarray(x).reshape(-1)), torch.from_numpy(out.reshape(-1)),
                            [x.size] * c.size)
        return (out,)


class ShardrtReduceScatterStart(OpRun):
    op_domain = "shardrt"

    def _run(self, x, axis=None, reduce=None, group=None):
        c = _comm()
        assert (axis or 0) == 0
        full = np.array(x, copy=True)
        c.cbs["all_reduce"](torch.from_numpy(np.ascontiguousarray(x).reshape(-1)), torch.from_numpy(full.reshape(-1)),
                            reduce or "sum")
        return (np.array_split(full, c.size, axis=0)[c.rank].copy(),)


class ShardrtWait(OpRun):
    op_domain = "shardrt"

    def _run(self, x):
        return (x,)


_OPS = [ShardrtDiv, ShardrtGatherElements, ShardrtLinear, ShardrtSilu, ShardrtAttention, ShardrtAllReduceStart, ShardrtAllGatherStart,
        ShardrtReduceScatterStart, ShardrtWait]


# Names the package's __init__ imports from the extension; unused by the dynamo tests.
class Error(RuntimeError):
    pass


class DType:
    pass


HostTensor = torch.Tensor


def build_engine_from_onnx(path, cfg=None):
    return Engine(onnx.load(path))


def build_rank_engine(*a, **k):
    raise NotImplementedError("not in the test stand-in")
