"""Dynamic shapes through torch.compile(backend="shardrt"): dynamic=True, mark_dynamic and
shardrt.Input ranges give engines with symbolic dims that serve every size in their
profile without a rebuild; a size beyond the profile rebuilds (or, beyond torch's own
range, dynamo recompiles). Outputs are compared with eager PyTorch.

Tolerances: fp32; shardrt reorders sums (blocked GEMMs, fused norms/attention with fp32
statistics), a few 1e-6 relative per op, so 1e-5 for shallow MLPs and 1e-4 for the
two-layer transformers (tens of ops deep, 32–100-long dot products)."""
from __future__ import annotations

import logging

import pytest

torch = pytest.importorskip("torch")
from dynamo_support import setup  # noqa: E402

dyn, REAL = setup()
F = torch.nn.functional


def _fresh():
    torch._dynamo.reset()
    dyn.reset_reports()


def _compile(model, **kw):
    options = {"min_block_size": 1, **kw.pop("options", {})}
    return torch.compile(model.eval(), backend="shardrt", options=options, **kw)


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(8, 16)
        self.fc2 = torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x))).softmax(-1)


def test_mlp_dynamic_true_one_engine_for_every_shape():
    torch.manual_seed(0)
    m = MLP().eval()
    _fresh()
    with torch.no_grad():
        c = _compile(m, dynamic=True)
        # the first call traces at (3, 5): the default profile is [2, 4 x hint] per dim
        for shape in [(3, 5, 8), (2, 7, 8), (12, 2, 8), (5, 20, 8), (3, 5, 8)]:
            x = torch.randn(shape)
            torch.testing.assert_close(c(x), m(x), atol=1e-5, rtol=1e-5)
    s = dyn.stats()
    assert s == {"graphs": 1, "engines": 1, "builds": 1, "rebuilds": 0}, (s, dyn.last_reports())
    (r,) = dyn.last_reports()
    assert r.dynamic and sorted(r.profiles.values()) == [(2, 3, 12), (2, 5, 20)]


def test_engine_inputs_have_named_symbolic_dims_and_the_profile():
    torch.manual_seed(1)
    m = MLP().eval()
    _fresh()
    with torch.no_grad():
        c = _compile(m, dynamic=True)
        c(torch.randn(3, 5, 8))
    (r,) = dyn.last_reports()
    gm = _graph_module(r)
    from shardrt.dynamo.runtime import ShardrtModule

    engines = [mod.engine for mod in gm.modules() if isinstance(mod, ShardrtModule)]
    assert len(engines) == 1
    x = [b for b in engines[0].inputs if b["dtype"] == "float32" and len(b["dims"]) == 3]
    assert len(x) == 1, engines[0].inputs
    b = x[0]
    assert b["dims"][2] == "8" and not b["dims"][0].isdigit() and not b["dims"][1].isdigit()
    if REAL:
        assert [list(p) for p in b["profile"]] == [[2, 2, 8], [3, 5, 8], [12, 20, 8]]  # min, opt, max


_GRAPHS = []


def _graph_module(report):
    return _GRAPHS[-1]


@pytest.fixture(autouse=True)
def _keep_graphs(monkeypatch):
    """Keeps the compiled graphs the backend returns (to look at their engines)."""
    from shardrt.dynamo import partition

    real = partition.partition_and_compile
    _GRAPHS.clear()

    def keep(gm, opts):
        out, report = real(gm, opts)
        _GRAPHS.append(out.fused if hasattr(out, "fused") else out)
        return out, report

    monkeypatch.setattr("shardrt.dynamo.backend.partition_and_compile", keep)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_size_beyond_the_default_profile_rebuilds_and_says_so():
    torch.manual_seed(2)
    m = MLP().eval()
    _fresh()
    caplog = _Records()
    logger = logging.getLogger("shardrt.dynamo")
    logger.addHandler(caplog)
    try:
        _rebuild_run(m)
    finally:
        logger.removeHandler(caplog)
    s = dyn.stats()
    assert s == {"graphs": 1, "engines": 1, "builds": 2, "rebuilds": 1}, s
    (r,) = dyn.last_reports()
    # the batch's max went from 8 to 40 (at least twice the old max, and the size); the sequence's stays 12
    assert sorted(hi for _, _, hi in r.profiles.values()) == [12, 40], r.profiles
    # debug=True: the rebuild is said (a warning); without debug it is a debug message
    assert any("rebuilding" in rec.getMessage() and rec.levelno == logging.WARNING for rec in caplog.records)


def _rebuild_run(m):
    with torch.no_grad():
        c = _compile(m, dynamic=True, options={"debug": True})
        x = torch.randn(2, 3, 8)
        torch.testing.assert_close(c(x), m(x), atol=1e-5, rtol=1e-5)  # profile [2, 8] x [2, 12]
        x = torch.randn(40, 3, 8)
        torch.testing.assert_close(c(x), m(x), atol=1e-5, rtol=1e-5)  # 40 > 8: rebuild
        for b in (33, 7, 40):
            x = torch.randn(b, 3, 8)
            torch.testing.assert_close(c(x), m(x), atol=1e-5, rtol=1e-5)  # within the new profile


def test_mark_dynamic_range_and_outside_it():
    torch.manual_seed(3)
    m = MLP().eval()
    _fresh()
    x = torch.randn(4, 8)
    torch._dynamo.mark_dynamic(x, 0, min=2, max=16)
    with torch.no_grad():
        c = _compile(m)
        torch.testing.assert_close(c(x), m(x), atol=1e-5, rtol=1e-5)
        (r,) = dyn.last_reports()
        assert list(r.profiles.values()) == [(2, 4, 16)]  # mark_dynamic's min/max, opt = the traced size
        for b in (2, 16, 9):
            y = torch.randn(b, 8)
            torch.testing.assert_close(c(y), m(y), atol=1e-5, rtol=1e-5)
        assert dyn.stats()["builds"] == 1
        # beyond mark_dynamic's max the graph's guards fail: dynamo traces again (automatic
        # dynamic), and the new graph gets its own engine
        y = torch.randn(40, 8)
        torch.testing.assert_close(c(y), m(y), atol=1e-5, rtol=1e-5)
    s = dyn.stats()
    assert s["graphs"] == 2 and s["rebuilds"] == 0, s


def test_automatic_dynamic_after_a_shape_change():
    torch.manual_seed(9)
    m = MLP().eval()
    _fresh()
    with torch.no_grad():
        c = _compile(m)  # dynamic=None: static first, symbolic after the batch changes
        for b in (3, 5, 7, 2, 11):
            x = torch.randn(b, 8)
            torch.testing.assert_close(c(x), m(x), atol=1e-5, rtol=1e-5)
    s = dyn.stats()
    assert s["graphs"] == 2 and s["builds"] == 2, (s, dyn.last_reports())  # the static one, one dynamic
    static, dynamic = dyn.last_reports()
    assert not static.dynamic and dynamic.dynamic
    assert list(dynamic.profiles.values()) == [(2, 5, 20)]  # traced at 5: default max 4 x 5


class SizeOps(torch.nn.Module):
    """view/reshape with several symbolic sizes, expand, arange, slice with a symbolic end,
    full/new_zeros of symbolic shape, size arithmetic (//, *, +, -), indexing with
    symbolic index shapes."""

    def forward(self, x, y):
        b, s, d = x.shape
        h = x.reshape(b * s, d).relu().view(b, s // 1, 2, d // 2)  # several symbolic sizes
        pos = torch.arange(s)  # symbolic length
        e = pos[None, :, None].expand(b, s, d).float()
        mask = torch.full((b, s), 1.5) + x.new_zeros(b, s)
        t = y[:, : s - 1]  # symbolic slice end
        rows = torch.arange(b)[:, None].expand(b, s - 1)
        cols = torch.arange(s - 1)[None, :].expand(b, s - 1)
        g = x[rows, cols]  # two index tensors of symbolic shape
        return h.sum(-1), e * x + mask[..., None], t * 2, g + 1


def test_size_arithmetic_converters():
    torch.manual_seed(4)
    m = SizeOps()
    _fresh()
    with torch.no_grad():
        c = _compile(m, dynamic=True)
        for b, s in [(2, 5), (3, 4), (6, 9)]:
            x, y = torch.randn(b, s, 8), torch.randn(b, s + 2, 4)  # no size equal to another (duck sizing)
            for g, r in zip(c(x, y), m(x, y)):
                torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)
    s = dyn.stats()
    assert s["graphs"] == 1 and s["builds"] == 1, (s, dyn.last_reports())
    (r,) = dyn.last_reports()
    assert not r.torch_ops, r.torch_ops  # everything converted


class SizeOnly(torch.nn.Module):
    """A block that needs a size no tensor input of it has (x stays in PyTorch): the size is
    passed to the engine as a 0-d int64 input."""

    def forward(self, x):
        return x.sin(), (torch.arange(x.shape[0]) * 3 + 1).float().exp().log()


def test_size_without_a_tensor_input_is_fed_to_the_engine():
    m = SizeOnly()
    _fresh()
    with torch.no_grad():
        c = _compile(m, dynamic=True, options={"torch_executed_ops": {"aten.sin"}})
        for n in (3, 7, 5):
            x = torch.randn(n, 2)
            for g, r in zip(c(x), m(x)):
                torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)
    s = dyn.stats()
    assert s["graphs"] == 1 and s["engines"] == 1 and s["builds"] == 1, (s, dyn.last_reports())


def test_shardrt_compile_input_ranges_through_dynamo():
    import shardrt

    torch.manual_seed(5)
    m = MLP().eval()
    _fresh()
    inp = shardrt.Input(min_shape=(1, 8), opt_shape=(6, 8), max_shape=(32, 8), dtype=torch.float32)
    c = shardrt.compile(m, arg_inputs=[inp], use_distributed_mode_trace=True, min_block_size=1)
    (r,) = dyn.last_reports()
    # torch specialises size 1, so the symbolic range starts at 2 (a batch of 1 gets its own graph)
    assert list(r.profiles.values()) == [(2, 6, 32)], r.profiles
    with torch.no_grad():
        for b in (2, 32, 17):
            x = torch.randn(b, 8)
            torch.testing.assert_close(c(x), m(x), atol=1e-5, rtol=1e-5)
    assert dyn.stats()["builds"] == 1


# --- Hugging Face models with a dynamic batch and sequence length -------------------------------
transformers = pytest.importorskip("transformers")


def _gpt2():
    cfg = transformers.GPT2Config(n_layer=2, n_head=4, n_embd=32, vocab_size=100, n_positions=64,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg).eval()


def _bert():
    cfg = transformers.BertConfig(num_hidden_layers=2, num_attention_heads=4, hidden_size=32, intermediate_size=64,
                                  vocab_size=100, max_position_embeddings=64)
    return transformers.BertModel(cfg, add_pooling_layer=False).eval()


def _llama():
    cfg = transformers.LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   hidden_size=32, intermediate_size=64, vocab_size=100, max_position_embeddings=64,
                                   bos_token_id=0, eos_token_id=0)
    return transformers.LlamaForCausalLM(cfg).eval()


def _out(o):
    return o.logits if getattr(o, "logits", None) is not None else o.last_hidden_state


@pytest.mark.parametrize("make", [_gpt2, _bert, _llama], ids=["gpt2", "bert", "llama"])
def test_hf_dynamic_batch_and_sequence(make):
    torch.manual_seed(6)
    m = make()
    _fresh()
    with torch.no_grad():
        c = _compile(m, dynamic=True)
        # traced at (2, 7): default profile batch [2, 8], sequence [2, 28] (BERT: its 64 positions)
        for b, s in [(2, 7), (3, 5), (8, 28), (4, 12), (2, 2)]:
            ids = torch.randint(0, 100, (b, s))
            torch.testing.assert_close(_out(c(ids, use_cache=False) if make is not _bert else c(ids)),
                                       _out(m(ids, use_cache=False) if make is not _bert else m(ids)),
                                       atol=1e-4, rtol=1e-4)
    s = dyn.stats()
    assert s["graphs"] == 1 and s["engines"] == 1 and s["builds"] == 1, (s, dyn.last_reports())


def test_gpt2_mark_dynamic_sequence():
    torch.manual_seed(7)
    m = _gpt2()
    _fresh()
    ids = torch.randint(0, 100, (2, 16))
    torch._dynamo.mark_dynamic(ids, 1, min=2, max=48)
    with torch.no_grad():
        c = _compile(m)
        for s in (16, 3, 48, 30):
            x = ids if s == 16 else torch.randint(0, 100, (2, s))  # the first call: the marked tensor itself
            torch.testing.assert_close(_out(c(x, use_cache=False)), _out(m(x, use_cache=False)), atol=1e-4,
                                       rtol=1e-4)
    s = dyn.stats()
    assert s["graphs"] == 1 and s["builds"] == 1, (s, dyn.last_reports())
    (r,) = dyn.last_reports()
    assert list(r.profiles.values()) == [(2, 16, 48)], r.profiles


def test_input_ranges_in_options():
    import shardrt

    torch.manual_seed(8)
    m = MLP().eval()
    _fresh()
    inp = shardrt.Input(min_shape=(2, 3, 8), opt_shape=(4, 6, 8), max_shape=(16, 64, 8))
    with torch.no_grad():
        c = _compile(m, dynamic=True, options={"inputs": [inp]})
        for shape in [(3, 5, 8), (16, 64, 8), (2, 3, 8), (9, 40, 8)]:
            x = torch.randn(shape)
            torch.testing.assert_close(c(x), m(x), atol=1e-5, rtol=1e-5)
    (r,) = dyn.last_reports()
    assert sorted(r.profiles.values()) == [(2, 4, 16), (3, 6, 64)], r.profiles  # the Input's, not the default
    assert dyn.stats()["builds"] == 1
    with pytest.raises(Exception, match="inputs"):
        dyn.backend.parse_options({"inputs": [(1, 2)]})


def test_entry_point_registration_is_not_a_duplicate(monkeypatch):
    """pip install registers the backend as a torch_dynamo_backends entry point: torch loads
    it (importing shardrt.dynamo, which registers at import) and then registers the loaded
    function itself; the import must leave that registration to torch."""
    from importlib.metadata import EntryPoint

    from torch._dynamo.backends import registry

    ep = EntryPoint(name="shardrt", value="shardrt.dynamo:shardrt_backend", group="torch_dynamo_backends")
    monkeypatch.delitem(registry._COMPILER_FNS, "shardrt", raising=False)
    monkeypatch.setitem(registry._BACKENDS, "shardrt", ep)
    dyn.register()  # as the import during ep.load() does
    assert "shardrt" not in registry._COMPILER_FNS
    assert registry.lookup_backend("shardrt") is dyn.shardrt_backend


def test_split_graph_blocks_with_expression_dims():
    """views left to PyTorch split the MLP: blocks take [s0*s1, n] tensors (a dim that is an
    expression of two symbols, with its own profile) and all of them are rebuilt together."""
    torch.manual_seed(10)
    m = MLP().eval()
    _fresh()
    with torch.no_grad():
        c = _compile(m, dynamic=True, options={"torch_executed_ops": {"aten.view"}})
        for shape in [(3, 5, 8), (2, 7, 8), (30, 9, 8), (12, 20, 8)]:
            x = torch.randn(shape)
            torch.testing.assert_close(c(x), m(x), atol=1e-5, rtol=1e-5)
    s = dyn.stats()
    assert s["graphs"] == 1 and s["engines"] >= 2 and s["rebuilds"] == 1, (s, dyn.last_reports())
    assert s["builds"] == 2 * s["engines"]
    names = [b["dims"][0] for mod in _GRAPHS[-1].modules() if hasattr(mod, "input_names")
             for b in mod.engine.inputs if len(b["dims"]) == 2 and b["dtype"] == "float32"]
    assert any("*" in n for n in names), names  # s0*s1: the flattened batch x sequence


class SizesAsValues(torch.nn.Module):
    def forward(self, x):
        n = torch.scalar_tensor(x.shape[1], dtype=torch.float32)
        return x * x.shape[1] + x / x.shape[0] - n, (x.sum(1) / n).relu()


def test_sizes_as_operands():
    m = SizesAsValues()
    _fresh()
    with torch.no_grad():
        c = _compile(m, dynamic=True)
        for shape in [(3, 5), (2, 7), (4, 3)]:
            x = torch.randn(shape)
            for g, r in zip(c(x), m(x)):
                torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)
    s = dyn.stats()
    assert s == {"graphs": 1, "engines": 1, "builds": 1, "rebuilds": 0}, (s, dyn.last_reports())
    assert not dyn.last_reports()[0].torch_ops
