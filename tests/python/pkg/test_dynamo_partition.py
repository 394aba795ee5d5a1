"""Partitioning with fallback, min_block_size, torch_executed_ops, option validation, the
converter registry, dynamic shapes and collectives in one process."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from dynamo_support import setup  # noqa: E402

dyn, REAL = setup()
F = torch.nn.functional


def _run(model, *args, **options):
    torch._dynamo.reset()
    dyn.reset_reports()
    with torch.no_grad():
        ref = model(*args)
        got = torch.compile(model, backend="shardrt", options=options)(*args)
    return ref, got, dyn.last_reports()


def _engines(reports):
    return sum(len(r.engines) for r in reports)


def _torch_ops(reports):
    out = {}
    for r in reports:
        out.update(r.torch_ops)
    return out


class WithFFT(torch.nn.Module):
    """Two convertible blocks around an op shardrt has no converter for (complex FFT)."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(16, 16)
        self.b = torch.nn.Linear(16, 16)

    def forward(self, x):
        h = F.gelu(self.a(x)) * 2 + 1
        h = torch.tanh(h) - h.mean(-1, keepdim=True)
        f = torch.fft.rfft(h, dim=-1).abs()  # complex intermediate: runs in PyTorch
        g = F.relu(self.b(F.pad(f, (0, 7)))) * 3 - 1
        return torch.sigmoid(g) + g.sum(-1, keepdim=True)


def test_fallback_runs_unsupported_ops_in_pytorch():
    torch.manual_seed(0)
    ref, got, reports = _run(WithFFT().eval(), torch.randn(4, 16), min_block_size=3)
    # fp32 linears and an FFT computed by PyTorch itself: rounding only
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert _engines(reports) == 2, reports  # the blocks before and after the FFT
    left = _torch_ops(reports)
    assert any("fft" in op for op in left), left


def test_custom_op_without_converter_stays_in_pytorch_and_with_one_converts():
    lib_name = "shardrt_dynamo_test"

    @torch.library.custom_op(f"{lib_name}::scaled_add", mutates_args=())
    def scaled_add(a: torch.Tensor, b: torch.Tensor, s: float) -> torch.Tensor:
        return a + s * b

    @scaled_add.register_fake
    def _(a, b, s):
        return torch.empty_like(a)

    class M(torch.nn.Module):
        def forward(self, x, y):
            h = torch.exp(x) * 2 + torch.sin(y) - 1
            z = torch.ops.shardrt_dynamo_test.scaled_add(h, y, 0.5)
            return torch.tanh(z) * z + z.sum(-1, keepdim=True) - 3

    x, y = torch.randn(3, 5), torch.randn(3, 5)
    ref, got, reports = _run(M(), x, y, min_block_size=2)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert _engines(reports) == 2
    assert f"{lib_name}.scaled_add.default" in _torch_ops(reports)

    # a user converter: the custom op joins the engine
    @dyn.converter(f"{lib_name}.scaled_add.default")
    def _convert(ctx, node):
        a, b, s = node.args
        return ctx.op("Add", [ctx.get(a), ctx.op("Mul", [ctx.get(b), ctx.scalar(s, torch.float32)])])

    ref, got, reports = _run(M(), x, y, min_block_size=2)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert _engines(reports) == 1 and not _torch_ops(reports), reports


def test_min_block_size():
    torch.manual_seed(1)
    m = WithFFT().eval()
    x = torch.randn(4, 16)
    # the first block has 8 compute ops (permute, addmm, gelu, mul, add, tanh, mean, sub),
    # the second more: 9 keeps only the second, 1000 keeps none
    _, got, reports = _run(m, x, min_block_size=9)
    assert _engines(reports) == 1
    assert any("min_block_size" in why for why in _torch_ops(reports).values())
    ref, got, reports = _run(m, x, min_block_size=1000)
    assert _engines(reports) == 0
    torch.testing.assert_close(got, ref)  # all PyTorch: identical


def test_torch_executed_ops_are_honoured():
    torch.manual_seed(2)
    m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.Tanh()).eval()
    x = torch.randn(2, 8)
    ref, got, reports = _run(m, x, min_block_size=1, torch_executed_ops={"torch.ops.aten.relu.default"})
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert _torch_ops(reports).get("aten.relu.default") == "in torch_executed_ops"
    assert _engines(reports) == 2
    # op objects (and a whole packet by name) are accepted too
    _, _, reports = _run(m, x, min_block_size=1, torch_executed_ops={torch.ops.aten.tanh.default, "aten.addmm"})
    assert {"aten.tanh.default", "aten.addmm.default"} <= set(_torch_ops(reports))


def test_unknown_option_lists_the_known_ones():
    m = torch.nn.Linear(4, 4)
    torch._dynamo.reset()
    with pytest.raises(Exception) as e:
        torch.compile(m, backend="shardrt", options={"min_blok_size": 3})(torch.randn(2, 4))
    msg = str(e.value)
    assert "min_blok_size" in msg and "min_block_size" in msg and "torch_executed_ops" in msg
    with pytest.raises(TypeError, match="min_block_size"):
        dyn.backend.parse_options({"min_block_size": 0})
    with pytest.raises(TypeError, match="require_full_compilation"):
        dyn.backend.parse_options({"require_full_compilation": "yes"})


def test_require_full_compilation():
    torch._dynamo.reset()
    with pytest.raises(Exception, match="fft"):
        with torch.no_grad():
            torch.compile(WithFFT().eval(), backend="shardrt",
                          options={"require_full_compilation": True, "min_block_size": 1})(torch.randn(2, 16))


def test_dynamic_batch_one_engine():
    torch.manual_seed(3)
    m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4)).eval()
    torch._dynamo.reset()
    dyn.reset_reports()
    with torch.no_grad():
        c = torch.compile(m, backend="shardrt", options={"min_block_size": 1}, dynamic=True)
        for b in (2, 5, 2, 7):
            x = torch.randn(b, 8)
            torch.testing.assert_close(c(x), m(x), atol=1e-5, rtol=1e-5)
    # one engine with a symbolic batch serves every size (more in test_dynamo_dynamic.py)
    assert _engines(dyn.last_reports()) == 1 and dyn.stats()["builds"] == 1


def test_compile_with_dynamo_entry_point():
    torch.manual_seed(4)
    m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.SiLU()).eval()
    x = torch.randn(3, 8)
    torch._dynamo.reset()
    c = dyn.compile_with_dynamo(m, [x], {"min_block_size": 1})
    with torch.no_grad():
        torch.testing.assert_close(c(x), m(x), atol=1e-5, rtol=1e-5)


def test_registry_lists_the_converters():
    names = dyn.registered()
    for op in ("aten.addmm.default", "aten.native_layer_norm.default", "aten.convolution.default",
               "_c10d_functional.all_reduce.default", "aten._scaled_dot_product_flash_attention_for_cpu.default"):
        assert op in names


# --- collectives in one process (a gloo world of one rank) ----------------------------------------
@pytest.fixture
def gloo_world(tmp_path):
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group is already initialised")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    yield dist
    dist.destroy_process_group()


class WithAllReduce(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)

    def forward(self, x):
        import torch.distributed._functional_collectives as funcol
        import torch.distributed as dist

        h = torch.relu(self.fc(x)) * 2
        h = funcol.all_reduce(h, "sum", dist.group.WORLD)
        return torch.tanh(h) + 1


def test_functional_collective_becomes_shardrt_collective(gloo_world):
    torch.manual_seed(5)
    m = WithAllReduce().eval()
    x = torch.randn(2, 8)
    ref, got, reports = _run(m, x, min_block_size=1)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert _engines(reports) == 1 and not _torch_ops(reports), reports
    # without a communicator the collective (and its wait) stay in PyTorch
    ref, got, reports = _run(m, x, min_block_size=1, communicator=False)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    left = _torch_ops(reports)
    assert "_c10d_functional.all_reduce.default" in left and "_c10d_functional.wait_tensor.default" in left


def test_autocast_settings_reach_the_build():
    torch.manual_seed(6)
    m = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.GELU(), torch.nn.Linear(64, 8)).eval()
    x = torch.randn(4, 64)
    ref, got, reports = _run(m, x, min_block_size=1, use_explicit_typing=False, enable_autocast=True,
                             autocast_dtype=torch.bfloat16)
    assert got.dtype == torch.float32  # the engine's interface keeps the model's types
    # bf16 math inside (8-bit mantissa, ~4e-3 relative per rounding) over 64-term dot products
    # of O(1) values: 5e-2 absolute; an fp32 engine would be within 1e-5
    torch.testing.assert_close(got, ref, atol=5e-2, rtol=5e-2)
    with pytest.raises(ValueError, match="enable_autocast"):
        dyn.backend.parse_options({"enable_autocast": True})  # needs use_explicit_typing=False
