"""shardrt.compile on modules written in torch and on Hugging Face models (small configs,
random weights) against their eager outputs; dynamic shapes through shardrt.Input."""
import warnings

import pytest
import torch
import torch.nn.functional as F

from pkg_util import assert_close, import_shardrt

shardrt = import_shardrt()

# fp32 engines vs torch eager, same math in another summation order (and fused kernels):
# errors of ~1e-6 relative per op; these small models stay well under 1e-4.
FP32 = dict(atol=1e-4, rtol=1e-4)


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(16, 64)
        self.fc2 = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class ConvNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.c2 = torch.nn.Conv2d(8, 16, 3, stride=2)
        self.fc = torch.nn.Linear(16, 5)

    def forward(self, x):
        x = F.relu(self.bn(self.c1(x)))
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return self.fc(x.mean(dim=(2, 3)))


class Block(torch.nn.Module):
    """A pre-norm transformer block (causal self-attention + MLP), as GPT-style models write it."""

    def __init__(self, d=32, heads=4):
        super().__init__()
        self.heads = heads
        self.ln1 = torch.nn.LayerNorm(d)
        self.qkv = torch.nn.Linear(d, 3 * d)
        self.proj = torch.nn.Linear(d, d)
        self.ln2 = torch.nn.LayerNorm(d)
        self.up = torch.nn.Linear(d, 4 * d)
        self.down = torch.nn.Linear(4 * d, d)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (t.reshape(b, s, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, s, d))
        return x + self.down(F.gelu(self.up(self.ln2(x))))


def _eval(m):
    torch.manual_seed(0)
    return m.eval()


@pytest.mark.parametrize("make,shape", [(MLP, (4, 16)), (ConvNet, (2, 3, 16, 16)), (Block, (2, 8, 32))],
                         ids=["mlp", "convnet", "block"])
def test_torch_models(make, shape):
    torch.manual_seed(0)
    m = make().eval()
    x = torch.randn(*shape)
    trt = shardrt.compile(m, arg_inputs=[x])
    assert isinstance(trt, torch.nn.Module)
    with torch.no_grad():
        want = m(x)
    assert_close(trt(x), want, **FP32, what=make.__name__)
    x2 = torch.randn(*shape)  # a second call, new data
    with torch.no_grad():
        assert_close(trt(x2), m(x2), **FP32, what=make.__name__ + " second call")


def test_dynamic_batch_two_sizes_one_engine():
    torch.manual_seed(0)
    m = MLP().eval()
    trt = shardrt.compile(m, arg_inputs=[shardrt.Input(min_shape=(1, 16), opt_shape=(4, 16), max_shape=(32, 16),
                                                       dtype=torch.float32, name="x")])
    engine = trt.engine
    assert trt.input_names == ["x"]
    for b in (1, 3, 32):
        x = torch.randn(b, 16)
        with torch.no_grad():
            assert_close(trt(x), m(x), **FP32, what=f"batch {b}")
    assert trt.engine is engine
    with pytest.raises(shardrt.Error):
        trt(torch.randn(33, 16))  # above the profile's max


def test_multiple_outputs_keep_structure_and_kwargs():
    class Two(torch.nn.Module):
        def forward(self, x, scale=None, *, bias):
            return {"sum": x + bias, "pair": (x * scale, x.relu())}

    x, s, b = torch.randn(3, 5), torch.randn(3, 5), torch.randn(5)
    trt = shardrt.compile(Two(), arg_inputs=[x, s], kwarg_inputs={"bias": b})
    out = trt(x, s, bias=b)
    assert set(out) == {"sum", "pair"} and isinstance(out["pair"], tuple)
    assert torch.allclose(out["sum"], x + b) and torch.allclose(out["pair"][0], x * s)
    assert torch.equal(out["pair"][1], x.relu())


def test_autocast_fp16():
    torch.manual_seed(0)
    m = MLP().eval()
    x = torch.randn(8, 16)
    trt = shardrt.compile(m, arg_inputs=[x], use_explicit_typing=False, enable_autocast=True,
                          autocast_dtype=torch.float16)
    with torch.no_grad():
        want = m(x)
    # fp16 weights and activations (11-bit mantissa, ~5e-4 relative each) through two layers:
    # ~1e-2 on outputs of size ~1.
    assert_close(trt(x), want, atol=3e-2, rtol=3e-2, what="fp16 autocast")


def _hf(name):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if name == "gpt2":
        cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=256, n_positions=64)
        return transformers.GPT2LMHeadModel(cfg)
    if name == "bert":
        cfg = transformers.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                      intermediate_size=128, vocab_size=256, max_position_embeddings=64)
        return transformers.BertModel(cfg)
    cfg = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                                   intermediate_size=128, vocab_size=256, max_position_embeddings=64)
    return transformers.LlamaForCausalLM(cfg)


@pytest.mark.parametrize("name", ["gpt2", "bert", "llama"])
def test_hugging_face_models(name):
    model = _hf(name)
    model.config.use_cache = False
    model = model.eval()
    ids = torch.randint(0, 256, (2, 12))
    trt = shardrt.compile(model, arg_inputs=[ids])
    with torch.no_grad():
        want = model(ids)
    got = trt(ids)
    key = "logits" if name != "bert" else "last_hidden_state"
    # fp32, two layers, fused attention/norm kernels: ~1e-5 on logits of size ~1; 1e-3 keeps a
    # margin for the softmax/GELU/RMSNorm formulations that differ from torch's.
    assert_close(got[key], want[key], atol=1e-3, rtol=1e-3, what=name)


def test_gpt2_dynamic_sequence_length():
    model = _hf("gpt2")
    model.config.use_cache = False
    model = model.eval()
    trt = shardrt.compile(model, arg_inputs=[shardrt.Input((1, 2), (1, 16), (1, 48), dtype=torch.int64,
                                                           name="input_ids")])
    for s in (3, 17, 48):
        ids = torch.randint(0, 256, (1, s))
        with torch.no_grad():
            want = model(ids).logits
        assert_close(trt(ids).logits, want, atol=1e-3, rtol=1e-3, what=f"seq {s}")  # as above
