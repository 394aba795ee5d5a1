"""Hugging Face decoder checkpoints (GPT-2 and Llama families) built by src/models into a
KV-cached decoder engine and driven by serve::DecoderSession, compared step by step with
transformers.

Each case writes a tiny random-weight model with save_pretrained (safetensors), runs the test
tool `shardrt_decoder_logits` (tests/tools/decoder_logits.cpp: prefill of every prompt, then
greedy decode steps, each row fed its own argmax), and checks the logits of every step of
every row against transformers' `model(ids).logits[:, -1]` over that row's whole sequence so
far (its prompt plus the tokens the tool chose), fp32, eval mode, each row on its own (so rows
of different lengths in one batch are checked against unpadded references). Tensor-parallel
cases run the same tool under `mpirun -n 2 ... --tp 2`.

The tool is looked up beside $SHARDRT_BIN (<build>/tests/shardrt_decoder_logits). Skipped
cleanly where torch/transformers, the tool, or (for --tp) mpirun are missing.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import shardrt_binary_path
from shardrt_harness import compare

TOOL = shardrt_binary_path().parent / "tests" / "shardrt_decoder_logits"
MPIRUN = shutil.which("mpirun")
# Tiny models: a run takes a second or two; the bounds only turn a hang into a failure.
RUN_TIMEOUT_S = 120
MPI_TIMEOUT_S = 240
STEPS = 4
# Rows of different lengths in one batch (the first is the longest; the others right-padded).
PROMPTS = [[5, 17, 99, 3, 42, 7, 61], [11], [8, 8, 30, 2]]

# fp32 tolerance. Both sides compute in fp32 over at most ~12 tokens and 2 layers of width 64;
# they differ by the order of summation (GEMM blocking, attention accumulated over the cache
# vs. torch's SDPA) and exp/tanh implementations, a few ulp (1e-7 relative) per op. Logits
# here are O(1..10); 1e-4 absolute plus 1e-4 relative is ~100x that accumulated error and
# still far below any real bug (a wrong position, head or slice moves logits by O(0.1..1)).
FP32_ATOL, FP32_RTOL = 1e-4, 1e-4

pytestmark = [
    pytest.mark.requires("torch", "transformers"),
    pytest.mark.skipif(not (TOOL.is_file() and os.access(TOOL, os.X_OK)),
                       reason=f"no shardrt_decoder_logits test tool at {TOOL}"),
]


# ---------------------------------------------------------------------------------------
# Models

def _randomize(model, seed: int):
    """Weights large enough that an untrained model's logits vary with the context (the
    default N(0, 0.02) init leaves the residual stream ≈ the token embedding), and norms and
    biases away from 1 and 0 so that every tensor matters."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if "norm" in name or name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                p.copy_(1.0 + 0.1 * r)
            elif p.dim() == 1:
                p.copy_(0.1 * r)
            elif "wte" in name or "wpe" in name or "embed_tokens" in name:
                p.copy_(0.5 * r)
            else:
                fan_in = p.shape[0] if "c_attn" in name or "c_fc" in name or "c_proj" in name else p.shape[1]
                p.copy_(1.5 * r / fan_in ** 0.5)
    return model.eval()


def tiny_gpt2(seed=1, **kw):
    import transformers

    cfg = dict(n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0,
               attn_pdrop=0.0)
    cfg.update(kw)
    return _randomize(transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg)), seed)


def tiny_llama(seed=2, **kw):
    import transformers

    cfg = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, vocab_size=128, max_position_embeddings=64, rms_norm_eps=1e-5,
               tie_word_embeddings=False)
    cfg.update(kw)
    return _randomize(transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg)), seed)


def tiny_qwen2(seed=3, **kw):
    import transformers

    cfg = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, vocab_size=128, max_position_embeddings=64, rms_norm_eps=1e-5,
               tie_word_embeddings=True)
    cfg.update(kw)
    return _randomize(transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**cfg)), seed)


def tiny_mistral(seed=15, **kw):
    import transformers

    cfg = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, vocab_size=128, max_position_embeddings=64, rms_norm_eps=1e-5,
               sliding_window=64)
    cfg.update(kw)
    return _randomize(transformers.MistralForCausalLM(transformers.MistralConfig(**cfg)), seed)


def save(model, path: Path, dtype=None, max_shard_size=None) -> Path:
    """save_pretrained (safetensors) in `dtype` (the model itself is left as it was)."""
    import torch

    kw = {"safe_serialization": True}
    if max_shard_size:
        kw["max_shard_size"] = max_shard_size
    if dtype is not None and dtype != torch.float32:
        model.to(dtype).save_pretrained(path, **kw)
        model.float()
    else:
        model.save_pretrained(path, **kw)
    return path


# ---------------------------------------------------------------------------------------
# Running the tool and the reference

def run_tool(model_dir: Path, out: Path, prompts, steps=STEPS, dtype="fp32", tp=1, extra=()):
    args = [str(model_dir), "--steps", str(steps), "--dtype", dtype, "--out", str(out), *map(str, extra)]
    for p in prompts:
        args += ["--prompt-ids", ",".join(map(str, p))]
    if tp == 1:
        cmd, timeout, env = [str(TOOL), *args], RUN_TIMEOUT_S, None
    else:
        if MPIRUN is None:
            pytest.skip("mpirun is not installed")
        cmd = [MPIRUN, *(["--allow-run-as-root"] if os.geteuid() == 0 else []), "--oversubscribe", "-n", str(tp),
               str(TOOL), *args, "--tp", str(tp)]
        timeout = MPI_TIMEOUT_S
        env = dict(os.environ, OMPI_MCA_rmaps_base_oversubscribe="1")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return r


def run_ok(model_dir, out, prompts, **kw):
    r = run_tool(model_dir, out, prompts, **kw)
    assert r.returncode == 0, f"shardrt_decoder_logits failed ({r.returncode}):\n{r.stdout}\n{r.stderr[-4000:]}"
    tokens = np.load(out / "tokens.npy")
    steps = [np.load(out / f"step_{k}.npy") for k in range(tokens.shape[1])]
    return tokens, steps


def reference_logits(model, prompt, chosen):
    """transformers' last-position logits after the prompt and after each chosen token:
    [len(chosen), V] (row k: the sequence prompt + chosen[:k])."""
    import torch

    seq = list(prompt) + [int(t) for t in chosen[:-1]]
    with torch.no_grad():
        logits = model(torch.tensor([seq])).logits[0].float().numpy()
    # Position len(prompt) - 1 + k is the last token of the sequence at step k.
    return logits[len(prompt) - 1:]


def check_against(model, prompts, tokens, steps, atol, rtol, what=""):
    for b, prompt in enumerate(prompts):
        ref = reference_logits(model, prompt, tokens[b])
        for k, got in enumerate(steps):
            compare(got[b], ref[k], atol=atol, rtol=rtol, what=f"{what} row {b} (prompt of {len(prompt)}) step {k}")


# ---------------------------------------------------------------------------------------
# Cases

CASES = {
    # GPT-2: tied LM head (its default), tanh GELU.
    "gpt2": lambda: tiny_gpt2(),
    # GPT-2 with its own LM head, exact GELU, an MLP width that is not 4·n_embd and
    # attention scaled by the inverse layer index.
    "gpt2_untied": lambda: tiny_gpt2(seed=4, tie_word_embeddings=False, activation_function="gelu", n_inner=80,
                                     scale_attn_by_inverse_layer_idx=True),
    # Llama with GQA (4 query heads, 2 kv heads), untied head.
    "llama_gqa": lambda: tiny_llama(),
    # Llama 3.1-style rope scaling (llama3), tied head, rope_theta other than the default.
    "llama3_rope": lambda: tiny_llama(seed=5, tie_word_embeddings=True, rope_theta=500000.0,
                                      rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
    # Linear rope scaling, multi-query attention (one kv head), head_dim other than hidden/heads.
    "llama_linear_rope": lambda: tiny_llama(seed=6, num_key_value_heads=1, head_dim=8,
                                            rope_scaling={"rope_type": "linear", "factor": 2.0}),
    # Qwen2: q/k/v biases, tied head.
    "qwen2": lambda: tiny_qwen2(),
    # Mistral: a sliding window as wide as the KV cache (so attention is over everything).
    "mistral": lambda: tiny_mistral(),
}
TP_CASES = ["gpt2", "gpt2_untied", "llama_gqa", "llama3_rope", "qwen2"]


@pytest.mark.parametrize("case", list(CASES))
def test_matches_transformers(tmp_path: Path, case: str):
    model = CASES[case]()
    save(model, tmp_path / "model")
    tokens, steps = run_ok(tmp_path / "model", tmp_path / "out", PROMPTS)
    assert tokens.shape == (len(PROMPTS), STEPS + 1)
    check_against(model, PROMPTS, tokens, steps, FP32_ATOL, FP32_RTOL, case)


@pytest.mark.parametrize("case", TP_CASES)
def test_tensor_parallel_matches_transformers(tmp_path: Path, case: str):
    """Two ranks, each with its slices: heads (and kv heads), MLP width and vocabulary split;
    the logits after the all-gather must be transformers' (same fp32 tolerance: the only
    extra difference is the all-reduce's order of summation over two partial sums)."""
    model = CASES[case]()
    save(model, tmp_path / "model")
    tokens, steps = run_ok(tmp_path / "model", tmp_path / "out", PROMPTS, tp=2)
    check_against(model, PROMPTS, tokens, steps, FP32_ATOL, FP32_RTOL, case + " tp=2")


def test_uneven_vocabulary_and_mlp_tp(tmp_path: Path):
    """Sizes that torch.chunk splits unevenly between 2 ranks (vocab 127, MLP width 90)."""
    model = tiny_llama(seed=8, vocab_size=127, intermediate_size=90)
    save(model, tmp_path / "model")
    tokens, steps = run_ok(tmp_path / "model", tmp_path / "out", PROMPTS, tp=2)
    check_against(model, PROMPTS, tokens, steps, FP32_ATOL, FP32_RTOL, "uneven tp=2")


def test_sharded_checkpoint(tmp_path: Path):
    """Shards listed by model.safetensors.index.json."""
    model = tiny_llama(seed=9)
    save(model, tmp_path / "model", max_shard_size="60KB")
    assert (tmp_path / "model" / "model.safetensors.index.json").is_file()
    assert len(list((tmp_path / "model").glob("model-*.safetensors"))) > 1
    tokens, steps = run_ok(tmp_path / "model", tmp_path / "out", PROMPTS)
    check_against(model, PROMPTS, tokens, steps, FP32_ATOL, FP32_RTOL, "sharded")


@pytest.mark.parametrize("file_dtype", ["float16", "bfloat16"])
def test_half_checkpoint_built_in_fp32(tmp_path: Path, file_dtype: str):
    """An fp16 / bf16 checkpoint computed in fp32: the reference is the same rounded weights
    computed in fp32 by torch, so the fp32 tolerance applies."""
    import torch

    dt = getattr(torch, file_dtype)
    model = tiny_llama(seed=10)
    save(model, tmp_path / "model", dtype=dt)
    cfg = json.loads((tmp_path / "model" / "config.json").read_text())
    assert cfg.get("dtype", cfg.get("torch_dtype")) == file_dtype
    # The reference: the file's (rounded) weights loaded in fp32. Loading, rather than
    # model.to(dt).float(), keeps the rotary inv_freq buffer exact (.to() would round it too).
    import transformers
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "model", dtype=torch.float32).eval()
    tokens, steps = run_ok(tmp_path / "model", tmp_path / "out", PROMPTS, dtype="fp32")
    check_against(model, PROMPTS, tokens, steps, FP32_ATOL, FP32_RTOL, file_dtype + " file")


@pytest.mark.parametrize("case", ["gpt2", "llama_gqa"])
def test_bf16_build(tmp_path: Path, case: str):
    """Weights and activations in bf16 (8-bit mantissa: ~4e-3 relative rounding per op),
    against transformers in fp32. Each of the ~10 rounded ops per layer adds up to a few
    1e-3 relative, and logits are O(1..10): the bound is on the relative L2 error of each
    step's logits (5%; observed 0.6-1% for GPT-2 and 1-2.5% for Llama) rather than per element, where single logits near zero would need an
    absolute bound that says little. The tokens are the tool's own (bf16) choices, which the
    reference follows, so a near-tie flip does not derail the comparison."""
    model = CASES[case]()
    save(model, tmp_path / "model")
    tokens, steps = run_ok(tmp_path / "model", tmp_path / "out", PROMPTS, dtype="bf16")
    for b, prompt in enumerate(PROMPTS):
        ref = reference_logits(model, prompt, tokens[b])
        for k, got in enumerate(steps):
            compare(got[b], ref[k], atol=np.inf, rtol=0, max_rel_l2=0.05, what=f"bf16 {case} row {b} step {k}")


def test_max_seq_exceeded_is_refused(tmp_path: Path):
    """The session checks lengths before running: a decode past max_seq is an error naming it."""
    model = tiny_gpt2(seed=12)
    save(model, tmp_path / "model")
    r = run_tool(tmp_path / "model", tmp_path / "out", [[1, 2, 3, 4, 5, 6]], steps=4, extra=["--max-seq", "8"])
    assert r.returncode != 0
    assert "max_seq" in r.stderr, r.stderr


def test_unsupported_model_type_is_refused(tmp_path: Path):
    model = tiny_gpt2(seed=13)
    save(model, tmp_path / "model")
    cfg_path = tmp_path / "model" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model_type"] = "falcon"
    cfg_path.write_text(json.dumps(cfg))
    r = run_tool(tmp_path / "model", tmp_path / "out", [[1, 2]])
    assert r.returncode != 0
    assert "config.json" in r.stderr and "model_type" in r.stderr and "gpt2, llama" in r.stderr, r.stderr


def test_indivisible_heads_are_refused(tmp_path: Path):
    """3 kv heads do not split between 2 ranks: refused, naming them."""
    model = tiny_llama(seed=14, num_attention_heads=6, num_key_value_heads=3, hidden_size=48)
    save(model, tmp_path / "model")
    r = run_tool(tmp_path / "model", tmp_path / "out", [[1, 2]], tp=2)
    assert r.returncode != 0
    assert "key/value heads" in r.stderr and "3" in r.stderr, r.stderr


def test_sliding_window_narrower_than_cache_is_refused(tmp_path: Path):
    """A window the KV cache does not implement: refused, saying how to build instead."""
    model = tiny_mistral(seed=16, sliding_window=16)
    save(model, tmp_path / "model")
    r = run_tool(tmp_path / "model", tmp_path / "out", [[1, 2]])
    assert r.returncode != 0
    assert "sliding window of 16" in r.stderr and "max_seq <= 16" in r.stderr, r.stderr
    # Within the window it builds and matches.
    tokens, steps = run_ok(tmp_path / "model", tmp_path / "out", PROMPTS, extra=["--max-seq", "16"])
    check_against(model, PROMPTS, tokens, steps, FP32_ATOL, FP32_RTOL, "mistral window 16")


def test_transformers4_config_layout(tmp_path: Path):
    """config.json as transformers 4 writes it: rope_theta beside rope_scaling {"type": ...}
    and torch_dtype, instead of rope_parameters and dtype."""
    model = CASES["llama3_rope"]()
    save(model, tmp_path / "model")
    cfg_path = tmp_path / "model" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    rope = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rope.pop("rope_theta")
    rope["type"] = rope.pop("rope_type")
    cfg["rope_scaling"] = rope
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    cfg_path.write_text(json.dumps(cfg))
    tokens, steps = run_ok(tmp_path / "model", tmp_path / "out", PROMPTS)
    check_against(model, PROMPTS, tokens, steps, FP32_ATOL, FP32_RTOL, "transformers 4 layout")


def test_unsupported_rope_type_is_refused(tmp_path: Path):
    model = tiny_llama(seed=17, rope_scaling={"rope_type": "dynamic", "factor": 2.0})
    save(model, tmp_path / "model")
    r = run_tool(tmp_path / "model", tmp_path / "out", [[1, 2]])
    assert r.returncode != 0
    assert "config.json" in r.stderr and "rope_type" in r.stderr and "'dynamic'" in r.stderr, r.stderr
