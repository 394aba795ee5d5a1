"""The data_parallel_gpt2 example on a Hugging Face checkpoint: a tiny GPT2LMHeadModel with
seeded random weights, saved with save_pretrained (safetensors), run under mpirun on 2 ranks
with --checkpoint, must generate the same tokens as transformers' greedy `generate` (fp32).

Greedy decoding compares argmaxes, so the check is exact (token for token): a few ulps of
difference between the fused kernels and torch could only flip a token where two logits tie
to within that, which seeded random weights make vanishingly unlikely (the test prints the
logit gap at any mismatch to tell a near-tie from a real bug).

The example binary is looked up beside $SHARDRT_BIN (<build>/examples/data_parallel_gpt2).
Skipped cleanly where torch, transformers, mpirun or the example binary are missing.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import shardrt_binary_path

MPIRUN = shutil.which("mpirun")
EXAMPLE = shardrt_binary_path().parent / "examples" / "data_parallel_gpt2"
# A launch takes a few seconds on this tiny model; the bound only catches a stuck launcher.
MPI_TIMEOUT_S = 240
NEW_TOKENS = 8
PROMPTS = [[464, 207, 758, 218, 180, 625], [40], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [999, 0]]

pytestmark = [
    pytest.mark.requires("torch", "transformers"),
    pytest.mark.skipif(MPIRUN is None, reason="mpirun is not installed"),
    pytest.mark.skipif(not (EXAMPLE.is_file() and os.access(EXAMPLE, os.X_OK)),
                       reason=f"no data_parallel_gpt2 example binary at {EXAMPLE}"),
]


def tiny_gpt2(seed: int):
    import torch
    import transformers

    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1000, n_positions=64,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    # GPT-2's own init (N(0, 0.02)) leaves an untrained model repeating one token; matrices
    # of N(0, 4/in) and small embeddings give varied continuations, and non-trivial
    # LayerNorm/bias values exercise every tensor.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn_like(p))
            elif "wte" in name or "wpe" in name:
                p.copy_(0.1 * torch.randn_like(p))
            else:  # Conv1D weights are [in, out]
                p.copy_(2.0 * torch.randn_like(p) / p.shape[0] ** 0.5)
    return model


def reference(model, prompt):
    import torch

    with torch.no_grad():
        ids = torch.tensor([prompt], dtype=torch.long)
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=NEW_TOKENS,
                             min_new_tokens=NEW_TOKENS, pad_token_id=0, eos_token_id=None)
    return out[0, len(prompt):].tolist()


def run_example(args) -> subprocess.CompletedProcess:
    cmd = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-n", "2", str(EXAMPLE), *map(str, args)]
    env = dict(os.environ, OMPI_MCA_rmaps_base_oversubscribe="1")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=MPI_TIMEOUT_S, env=env)


def generated(stdout: str):
    """The example's `  generated: t t t ...` lines, in prompt order."""
    return [[int(t) for t in m.split()] for m in re.findall(r"^  generated:((?: \d+)+)$", stdout, re.M)]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_checkpoint_matches_transformers(tmp_path: Path, dtype: str):
    import torch

    model = tiny_gpt2(seed=7)
    # The fp16 file is read and computed in fp32: the reference is the same fp16-rounded
    # weights computed in fp32 by torch.
    if dtype == "float16":
        model = model.half().float()
        model.half().save_pretrained(tmp_path, safe_serialization=True)
        model = model.float()
    else:
        model.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "model.safetensors").is_file()

    args = ["--checkpoint", tmp_path, "--new-tokens", NEW_TOKENS]
    for p in PROMPTS:
        args += ["--prompt", ",".join(map(str, p))]
    r = run_example(args)
    assert r.returncode == 0, f"example failed:\n{r.stdout}\n{r.stderr}"
    got = generated(r.stdout)
    assert len(got) == len(PROMPTS), r.stdout
    for prompt, toks in zip(PROMPTS, got):
        want = reference(model, prompt)
        if toks != want:
            with torch.no_grad():
                logits = model(torch.tensor([prompt + want[:-1]])).logits[0, len(prompt) - 1:]
            top2 = logits.topk(2).values
            pytest.fail(f"prompt {prompt}: shardrt {toks}, transformers {want}; transformers' top-2 logit gaps "
                        f"{(top2[:, 0] - top2[:, 1]).tolist()}")


def test_sharded_checkpoint(tmp_path: Path):
    """model-0000x-of-0000y.safetensors with model.safetensors.index.json."""
    model = tiny_gpt2(seed=11)
    model.save_pretrained(tmp_path, safe_serialization=True, max_shard_size="100KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) > 1
    r = run_example(["--checkpoint", tmp_path, "--new-tokens", NEW_TOKENS, "--prompt", "5,6,7", "--prompt", "40,41"])
    assert r.returncode == 0, f"example failed:\n{r.stdout}\n{r.stderr}"
    assert generated(r.stdout) == [reference(model, [5, 6, 7]), reference(model, [40, 41])]


def test_missing_tensor_is_refused(tmp_path: Path):
    import safetensors.torch

    model = tiny_gpt2(seed=3)
    model.save_pretrained(tmp_path, safe_serialization=True)
    state = safetensors.torch.load_file(tmp_path / "model.safetensors")
    del state["transformer.h.1.mlp.c_fc.bias"]
    safetensors.torch.save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    r = run_example(["--checkpoint", tmp_path, "--new-tokens", 2, "--prompt", "1,2"])
    assert r.returncode != 0
    assert "h.1.mlp.c_fc.bias" in r.stderr, r.stderr
