"""The Network API from Python: a small MLP built op by op and run against torch, attributes
of every kind, dynamic shapes, engine save/load/inspect, and the errors."""
import json

import numpy as np
import pytest
import torch

from pkg_util import assert_close, import_shardrt

shardrt = import_shardrt()
_C = shardrt._C


def _mlp_weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"w1": torch.randn(32, 16, generator=g) / 4, "b1": torch.randn(32, generator=g) / 10,
            "w2": torch.randn(8, 32, generator=g) / 6, "b2": torch.randn(8, generator=g) / 10}


def _mlp_network(w, dynamic=True):
    net = _C.Network("mlp")
    x = net.input("x", "float32", [-1 if dynamic else 4, 16], ["batch"])
    # fc1 through the fused op, fc2 through plain ONNX ops (MatMul with a transposed weight + Add)
    (h,) = net.op("shardrt.Linear", [x, net.weight("w1", w["w1"]), net.weight("b1", w["b1"])],
                  {"trans_b": 1, "activation": "relu"}, name="fc1")
    (w2t,) = net.op("Transpose", [net.weight("w2", w["w2"])], {"perm": [1, 0]})
    (mm,) = net.op("MatMul", [h, w2t])
    (y,) = net.op("Add", [mm, net.weight("b2", w["b2"].numpy())])  # numpy weights too
    net.output(y, "y")
    return net, x, y


def test_mlp_vs_torch_two_batch_sizes():
    w = _mlp_weights()
    net, x, y = _mlp_network(w)
    assert net.shape_of(x) == ["batch", "16"] and net.dtype_of(y) == "float32"
    eng = _C.build_engine(net, _C.BuildConfig(shapes={"x": ([1, 16], [4, 16], [16, 16])}))
    ctx = _C.ExecutionContext(eng)
    for b in (3, 16):
        xin = torch.randn(b, 16)
        got = torch.from_dlpack(ctx.run({"x": xin})["y"])
        want = torch.relu(xin @ w["w1"].T + w["b1"]) @ w["w2"].T + w["b2"]
        # fp32 dot products of 16 and 32 terms, summed in another order than torch's: ~1e-6
        assert_close(got, want, atol=1e-5, rtol=1e-5, what=f"batch {b}")


def test_engine_metadata_save_load(tmp_path):
    w = _mlp_weights(1)
    net, _, _ = _mlp_network(w, dynamic=False)
    eng = _C.build_engine(net)
    assert [b["name"] for b in eng.inputs] == ["x"] and eng.inputs[0]["dtype"] == "float32"
    assert eng.outputs[0]["dims"] == ["4", "8"]
    assert eng.weight_bytes >= 4 * (32 * 16 + 32 + 8 * 32 + 8)
    info = json.loads(eng.inspect(json=True))
    assert info  # a JSON document
    assert "fc1" in eng.inspect()
    path = tmp_path / "mlp.engine"
    eng.save(str(path))
    again = _C.Engine.load(str(path))
    x = torch.randn(4, 16)
    a = torch.from_dlpack(_C.ExecutionContext(eng).run({"x": x})["y"])
    b = torch.from_dlpack(_C.ExecutionContext(again).run({"x": x})["y"])
    assert torch.equal(a, b)  # the same engine, bit for bit


def test_attribute_kinds_and_optional_inputs():
    net = _C.Network("attrs")
    x = net.input("x", "float32", [2, 3])
    # tensor attribute (Constant's value), list-of-ints attribute, omitted optional input (None)
    (c,) = net.op("Constant", [], {"value": np.full((2, 3), 2.0, dtype=np.float32)})
    (m,) = net.op("Mul", [x, c])
    lo = net.weight("lo", np.array(0.5, dtype=np.float32))
    (cl,) = net.op("Clip", [m, lo, None])  # max omitted
    (r,) = net.op("ReduceSum", [cl, net.weight("axes", np.array([1], dtype=np.int64))], {"keepdims": 0})
    net.output(r, "r")
    eng = _C.build_engine(net)
    xin = torch.tensor([[0.0, 1.0, 2.0], [-1.0, 0.1, 3.0]])
    got = torch.from_dlpack(_C.ExecutionContext(eng).run({"x": xin})["r"])
    assert torch.allclose(got, (xin * 2).clamp(min=0.5).sum(1))


def test_split_with_several_outputs_and_string_attrs():
    net = _C.Network("split")
    x = net.input("x", "float32", [4, 6])
    a, b = net.op("Split", [x], {"axis": 1, "num_outputs": 2}, num_outputs=2)
    (g,) = net.op("Gelu", [a], {"approximate": "tanh"})
    net.output(g, "g")
    net.output(b, "b")
    xin = torch.randn(4, 6)
    out = _C.ExecutionContext(_C.build_engine(net)).run({"x": xin})
    # the engine's tanh GELU vs torch's: both fp32, ~1e-7
    assert_close(torch.from_dlpack(out["g"]), torch.nn.functional.gelu(xin[:, :3], approximate="tanh"), atol=1e-5)
    assert torch.equal(torch.from_dlpack(out["b"]), xin[:, 3:])


def test_errors():
    net = _C.Network("bad")
    x = net.input("x", "float32", [2, 3])
    with pytest.raises(shardrt.Error, match="unknown op type 'NoSuchOp'"):
        net.op("NoSuchOp", [x])
    with pytest.raises(shardrt.Error, match="MatMul"):
        net.op("MatMul", [x, x])  # [2,3] x [2,3]
    with pytest.raises(TypeError, match="unsupported dtype"):
        net.input("z", "complex64", [1])
    other = _C.Network("other")
    with pytest.raises(shardrt.Error, match="another network"):
        other.op("Relu", [x])
    (y,) = net.op("Relu", [x])
    net.output(y, "y")
    _C.build_engine(net)
    with pytest.raises(shardrt.Error, match="before build_engine"):
        net.op("Relu", [y])
    with pytest.raises(TypeError, match="attribute 'bad'"):
        other.op("Relu", [other.input("i", "float32", [1])], {"bad": {"a": 1}})


def test_build_config_fields():
    cfg = _C.BuildConfig()
    assert cfg.autocast is None and cfg.optimize and cfg.device == "cpu" and cfg.shapes == {}
    cfg.autocast = "bfloat16"
    cfg.shapes = {"x": ([1, 2], [2, 2], [4, 2])}
    cfg.disabled_passes = ["fuse_attention"]
    cfg.verbose = False
    assert cfg.autocast == "bfloat16" and cfg.shapes["x"][2] == [4, 2]
    with pytest.raises(ValueError, match="min, opt, max"):
        _C.BuildConfig(shapes={"x": ([1, 2], [2, 2])})
