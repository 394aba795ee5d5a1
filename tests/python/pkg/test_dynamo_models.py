"""torch.compile(model, backend="shardrt") on whole models vs eager PyTorch (eval, no_grad).

Runs on the real engine when shardrt._C is built, else on the ONNX-reference stand-in
(dynamo_support). Tolerances: fp32 throughout; shardrt reorders sums (blocked GEMMs,
fused norms/attention with fp32 statistics), so results differ from PyTorch by rounding
that grows with the reduction length and depth — a few 1e-6 relative per op."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from dynamo_support import setup  # noqa: E402

dyn, REAL = setup()
F = torch.nn.functional


def _compile_and_compare(model, *args, atol, rtol=1e-4, min_block_size=1, expect_engines=1, **options):
    torch._dynamo.reset()
    dyn.reset_reports()
    model = model.eval()
    with torch.no_grad():
        ref = model(*args)
        got = torch.compile(model, backend="shardrt", options={"min_block_size": min_block_size, **options})(*args)
    flat_ref = ref if isinstance(ref, (tuple, list)) else [ref]
    flat_got = got if isinstance(got, (tuple, list)) else [got]
    for r, g in zip(flat_ref, flat_got):
        torch.testing.assert_close(g, r, atol=atol, rtol=rtol)
    engines = sum(len(r.engines) for r in dyn.last_reports())
    assert engines >= expect_engines, dyn.last_reports()
    return dyn.last_reports()


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(16, 32)
        self.fc2 = torch.nn.Linear(32, 32, bias=False)
        self.fc3 = torch.nn.Linear(32, 4)

    def forward(self, x):
        h = F.gelu(self.fc1(x))
        h = F.silu(self.fc2(h)) + torch.sigmoid(h) * torch.tanh(h)
        h = F.relu(h) - h.mean(-1, keepdim=True) / (h.var(-1, keepdim=True) + 1).sqrt()
        return F.softmax(self.fc3(h), dim=-1), F.log_softmax(self.fc3(h), -1)


def test_mlp():
    torch.manual_seed(0)
    # 32-long dot products in fp32: 1e-5 absolute covers their reordering
    _compile_and_compare(MLP(), torch.randn(5, 16), atol=1e-5)


def test_mlp_3d_input_batched_linear():
    torch.manual_seed(1)
    _compile_and_compare(MLP(), torch.randn(2, 3, 16), atol=1e-5)


class ConvNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.c2 = torch.nn.Conv2d(8, 8, 3, stride=2, groups=2)
        self.gn = torch.nn.GroupNorm(4, 8)
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.bn(self.c1(x)))
        x = F.max_pool2d(x, 2)
        x = self.gn(F.leaky_relu(self.c2(x), 0.1))
        y = F.avg_pool2d(x, 1)
        x = F.adaptive_avg_pool2d(y + x, 1).flatten(1)
        return self.fc(x)


def test_conv_net():
    torch.manual_seed(2)
    m = ConvNet()
    with torch.no_grad():  # non-trivial running statistics
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2.0)
    # 27- and 36-long convolution sums, then norms: 1e-5 absolute
    _compile_and_compare(m, torch.randn(2, 3, 16, 16), atol=1e-5)


class Block(torch.nn.Module):
    """A pre-norm transformer block with SDPA (causal), as GPT-style models write it."""

    def __init__(self, d=32, h=4):
        super().__init__()
        self.h = h
        self.ln1 = torch.nn.LayerNorm(d)
        self.qkv = torch.nn.Linear(d, 3 * d)
        self.proj = torch.nn.Linear(d, d)
        self.ln2 = torch.nn.LayerNorm(d)
        self.up = torch.nn.Linear(d, 4 * d)
        self.down = torch.nn.Linear(4 * d, d)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (t.view(b, s, self.h, d // self.h).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, s, d))
        return x + self.down(F.gelu(self.up(self.ln2(x)), approximate="tanh"))


def test_transformer_block():
    torch.manual_seed(3)
    reports = _compile_and_compare(Block(), torch.randn(2, 7, 32), atol=2e-5)
    # attention stays whole (no decomposition): it is converted, not left to PyTorch
    assert not any("flash" in op for r in reports for op in r.torch_ops), reports


class MaskedAttention(torch.nn.Module):
    def forward(self, q, k, v, mask):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask) * 2 + 1


def test_attention_with_mask_and_gqa_shapes():
    torch.manual_seed(4)
    q, k, v = torch.randn(1, 4, 5, 8), torch.randn(1, 4, 6, 8), torch.randn(1, 4, 6, 8)
    mask = torch.rand(1, 1, 5, 6) > 0.3
    mask[..., 0] = True  # every row attends something (torch gives NaN for empty rows)
    _compile_and_compare(MaskedAttention(), q, k, v, mask, atol=1e-5)


class Misc(torch.nn.Module):
    """Shape and indexing ops a tokenizer-driven model produces."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(50, 16)

    def forward(self, ids, x):
        e = self.emb(ids)                                  # Gather
        pos = torch.arange(ids.shape[1]).unsqueeze(0)      # constant
        e = e + pos.unsqueeze(-1).float() * 0.01
        mask = torch.triu(torch.ones(ids.shape[1], ids.shape[1]), diagonal=1).bool()
        s = (e @ e.transpose(-1, -2)).masked_fill(mask, float("-inf")).softmax(-1)
        y = torch.cat([s, s.flip(-1)], dim=-1)[:, 1:, ::2]
        z = x.permute(0, 2, 1).contiguous().view(x.shape[0], -1)
        w = torch.where(x > 0, x, x * 0.5).amax(1) + x.sum(dim=(1, 2), keepdim=False).unsqueeze(-1)
        parts = torch.chunk(x, 2, dim=-1)
        return y, z, w, parts[0] * parts[1], x.select(1, 2).pow(3), torch.clamp(x, -0.5, 0.5).exp(), (x.abs() > 0.5).any(-1)


def test_shape_and_indexing_ops():
    torch.manual_seed(5)
    ids = torch.randint(0, 50, (2, 6))
    _compile_and_compare(Misc(), ids, torch.randn(2, 4, 6), atol=1e-5)


def test_integer_and_bool_ops():
    class M(torch.nn.Module):
        def forward(self, a, b):
            return (a + b * 3) // 2, a % 3, (a > b) & (b > 0), a.to(torch.float32) / 3, (a * b).sum(-1), -a

    torch.manual_seed(6)
    a, b = torch.randint(-10, 10, (3, 5)), torch.randint(-10, 10, (3, 5))
    _compile_and_compare(M(), a, b, atol=1e-6)


# --- Hugging Face models (small random configs) -------------------------------------------------
transformers = pytest.importorskip("transformers")


def _hf(model, inputs, atol):
    model = model.eval()
    with torch.no_grad():
        ref = model(**inputs).last_hidden_state if hasattr(model(**inputs), "last_hidden_state") else model(**inputs).logits
    torch._dynamo.reset()
    dyn.reset_reports()
    with torch.no_grad():
        compiled = torch.compile(model, backend="shardrt", options={"min_block_size": 3})
        out = compiled(**inputs)
    got = out.last_hidden_state if hasattr(out, "last_hidden_state") else out.logits
    torch.testing.assert_close(got, ref, atol=atol, rtol=1e-4)
    assert sum(len(r.engines) for r in dyn.last_reports()) >= 1
    # every op of these models has a converter: nothing is left to PyTorch
    assert all(not r.torch_ops for r in dyn.last_reports()), dyn.last_reports()


def test_hf_gpt2():
    cfg = transformers.GPT2Config(n_layer=2, n_head=4, n_embd=32, vocab_size=100, n_positions=64,
                                  attn_implementation="sdpa")
    torch.manual_seed(7)
    m = transformers.GPT2LMHeadModel(cfg)
    ids = torch.randint(0, 100, (2, 9))
    # two layers of 32-wide fp32 math then a 100-way head: 1e-4 absolute on logits of O(1)
    _hf(m, {"input_ids": ids, "use_cache": False}, atol=1e-4)


def test_hf_bert():
    cfg = transformers.BertConfig(num_hidden_layers=2, num_attention_heads=4, hidden_size=32, intermediate_size=64,
                                  vocab_size=100, max_position_embeddings=64, attn_implementation="sdpa")
    torch.manual_seed(8)
    m = transformers.BertModel(cfg, add_pooling_layer=False)
    ids = torch.randint(0, 100, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 6:] = 0  # padding: a float mask added to the scores
    _hf(m, {"input_ids": ids, "attention_mask": mask}, atol=1e-4)


def test_hf_llama():
    cfg = transformers.LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   hidden_size=32, intermediate_size=64, vocab_size=100,
                                   max_position_embeddings=64, attn_implementation="sdpa")
    torch.manual_seed(9)
    m = transformers.LlamaForCausalLM(cfg)
    ids = torch.randint(0, 100, (1, 7))
    # rotary (cos/sin computed in fp32), RMSNorm, grouped-query attention: 1e-4 absolute
    _hf(m, {"input_ids": ids, "use_cache": False}, atol=1e-4)
