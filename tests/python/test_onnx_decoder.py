"""ONNX decoders with past/present key-value bindings: exported from torch, built and run by
shardrt step by step, and run by `shardrt generate`.

A tiny random-weight GPT-2 and Llama (grouped-query attention; the same configurations and
weight scaling as test_generate.py) are exported with torch.onnx.export (the TorchScript
exporter, dynamo=False: transformers' DynamicCache does not go through the dynamo exporter)
through a wrapper that takes and returns the cache as flat tensors, with the names
Hugging Face optimum uses: inputs input_ids, attention_mask, position_ids,
past_key_values.N.key/.value [B, Hkv, P, D]; outputs logits [B, S, V] and
present.N.key/.value [B, Hkv, P + S, D].

- Steps: an engine built with past lengths from 0 runs a left-padded prefill and 8 decode
  steps, each fed its own presents back, beside transformers (the wrapped model, CPU) and
  onnxruntime doing the same; logits and presents agree within the tolerance below.
- `shardrt generate model.onnx` is token for token transformers' greedy `generate` for 32
  tokens (prompts of different lengths batched together, and one per batch), from the ONNX
  file and from an engine file whose prompt chunk is 4 tokens (longer prompts prefill in
  several steps); it samples as the checkpoint folder of the same model does with the same
  seed; it splits prompts between dp groups under mpirun; eos ids come from a config.json
  beside the file; --tp and --dtype are refused.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from test_generate import DEVICE_ARGS, PROMPTS, call, make_model, needs_mpi, reference

pytestmark = pytest.mark.requires("torch", "transformers", "onnx", "onnxruntime")

VOCAB = 400
EOS = 399
LAYERS = 2
# (kv heads, head dim) of make_model's configurations.
GEOMETRY = {"gpt2": (4, 16), "llama": (2, 16)}
# fp32 throughout; shardrt, onnxruntime and torch sum in different orders (blocked GEMMs, a
# fused attention), a few ulps per op through 2 layers: observed differences are ~3e-7 on
# logits of magnitude ~10, so 1e-4 absolute + relative is over 100x that and still far below
# any real error (a wrong mask or position moves logits by O(1)).
TOL = 1e-4


def export_decoder(model, path: Path, family: str):
    """torch.onnx.export of `model` with its KV cache as flat past/present tensors."""
    import torch
    from transformers import DynamicCache

    heads, dim = GEOMETRY[family]

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, position_ids, *past):
            cache = DynamicCache(config=self.m.config)
            for i in range(LAYERS):
                cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.m(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=cache, use_cache=True)
            pres = []
            for layer in out.past_key_values.layers[:LAYERS]:
                pres += [layer.keys, layer.values]
            return (out.logits, *pres)

    wrap = Wrap(model).eval()
    B, S, P = 2, 3, 4  # a trace with a non-empty cache: every dim is exported symbolic
    ids = torch.randint(0, VOCAB, (B, S))
    mask = torch.ones(B, P + S, dtype=torch.long)
    pos = torch.arange(P, P + S).unsqueeze(0).expand(B, S)
    past = [torch.randn(B, heads, P, dim) for _ in range(2 * LAYERS)]
    pasts = [f"past_key_values.{i}.{k}" for i in range(LAYERS) for k in ("key", "value")]
    presents = [f"present.{i}.{k}" for i in range(LAYERS) for k in ("key", "value")]
    dyn = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "total"},
           "position_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
    dyn.update({n: {0: "batch", 2: "past"} for n in pasts})
    dyn.update({n: {0: "batch", 2: "total"} for n in presents})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrap, (ids, mask, pos, *past), str(path),
                          input_names=["input_ids", "attention_mask", "position_ids", *pasts],
                          output_names=["logits", *presents], dynamic_axes=dyn, opset_version=17, dynamo=False)
    return wrap


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """family -> (transformers model, wrapper, folder with model.onnx, checkpoint folder)."""
    out = {}
    for family, seed in (("gpt2", 7), ("llama", 8)):
        d = tmp_path_factory.mktemp(f"onnx_{family}")
        model = make_model(family, VOCAB, EOS, seed)
        wrap = export_decoder(model, d / "model.onnx", family)
        ckpt = tmp_path_factory.mktemp(f"ckpt_{family}")
        model.save_pretrained(ckpt, safe_serialization=True)
        out[family] = (model, wrap, d, ckpt)
    return out


def shapes_arg(family: str, max_batch: int, max_seq: int, chunk: int) -> str:
    heads, dim = GEOMETRY[family]
    s = [f"input_ids:1x1/{max_batch}x1/{max_batch}x{chunk}", f"position_ids:1x1/{max_batch}x1/{max_batch}x{chunk}",
         f"attention_mask:1x1/{max_batch}x16/{max_batch}x{max_seq}"]
    for i in range(LAYERS):
        for k in ("key", "value"):
            s.append(f"past_key_values.{i}.{k}:1x{heads}x0x{dim}/{max_batch}x{heads}x16x{dim}/"
                     f"{max_batch}x{heads}x{max_seq - 1}x{dim}")
    return ",".join(s)


def build_engine_file(folder: Path, family: str, name: str, max_batch: int, max_seq: int, chunk: int) -> Path:
    eng = folder / name
    if not eng.exists():
        r = call(["build", folder / "model.onnx", "-o", eng, "--shapes", shapes_arg(family, max_batch, max_seq, chunk),
                  *DEVICE_ARGS])
        assert r.returncode == 0, f"build failed:\n{r.stderr[-3000:]}"
    return eng


def run_engine(engine: Path, feeds: dict, work: Path) -> dict:
    import numpy as np

    work.mkdir(parents=True, exist_ok=True)
    args = ["run", engine, "--output-dir", work / "out", *DEVICE_ARGS]
    for k, v in feeds.items():
        np.save(work / f"{k}.npy", v)
        args += ["--input", f"{k}={work / f'{k}.npy'}"]
    r = call(args)
    assert r.returncode == 0, f"run failed:\n{r.stderr[-3000:]}"
    return {p.stem: np.load(p) for p in (work / "out").glob("*.npy")}


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_steps_match_transformers_and_onnxruntime(exported, tmp_path, family):
    """Prefill (row 1 left-padded by 3) + 8 decode steps, each engine fed its own presents."""
    import numpy as np
    import onnxruntime as ort
    import torch

    _, wrap, folder, _ = exported[family]
    engine = build_engine_file(folder, family, "steps.engine", max_batch=2, max_seq=32, chunk=8)
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    heads, dim = GEOMETRY[family]
    rng = np.random.default_rng(3)
    B, S0 = 2, 6
    pad = [0, 3]
    mask = np.ones((B, S0), np.int64)
    mask[1, :pad[1]] = 0
    ids = rng.integers(0, VOCAB, (B, S0)).astype(np.int64)
    pos = np.where(mask == 1, mask.cumsum(-1) - 1, 1).astype(np.int64)  # transformers' rule
    names = [f"past_key_values.{i}.{k}" for i in range(LAYERS) for k in ("key", "value")]
    pres = [f"present.{i}.{k}" for i in range(LAYERS) for k in ("key", "value")]
    caches = {who: [np.zeros((B, heads, 0, dim), np.float32) for _ in names] for who in ("shardrt", "ort", "torch")}
    for step in range(9):
        feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": pos}
        outs = {}
        for who in caches:
            f = dict(feeds, **dict(zip(names, caches[who])))
            if who == "shardrt":
                got = run_engine(engine, f, tmp_path / f"step{step}")
                o = [got["logits"], *(got[n] for n in pres)]
            elif who == "ort":
                o = sess.run(["logits", *pres], f)
            else:
                with torch.no_grad():
                    o = [t.numpy() for t in wrap(*(torch.from_numpy(f[k]) for k in
                                                   ["input_ids", "attention_mask", "position_ids", *names]))]
            outs[who] = o
            caches[who] = list(o[1:])
        total = mask.shape[1]
        for ref in ("torch", "ort"):
            for name, a, b in zip(["logits", *pres], outs["shardrt"], outs[ref]):
                assert a.shape == b.shape, f"step {step}: {name} {a.shape} vs {ref} {b.shape}"
                if name == "logits":  # positions of the left padding attend nothing: not compared
                    a, b = a[:, -1], b[:, -1]
                else:
                    assert a.shape[2] == total
                np.testing.assert_allclose(a, b, rtol=TOL, atol=TOL, err_msg=f"{family} step {step}: {name} vs {ref}")
        # Next step: one token per row at the next position.
        ids = rng.integers(0, VOCAB, (B, 1)).astype(np.int64)
        pos = (mask.sum(-1, keepdims=True)).astype(np.int64)
        mask = np.concatenate([mask, np.ones((B, 1), np.int64)], axis=1)


def generate_ids(path, prompts, extra=(), n: int = 1):
    args = ["generate", path, "--json", "--no-stop", "--max-new-tokens", 32, *DEVICE_ARGS]
    for p in prompts:
        args += ["--prompt-ids", ",".join(map(str, p))]
    r = call([*args, *map(str, extra)], n=n)
    assert r.returncode == 0, f"generate failed ({extra}):\n{r.stderr[-4000:]}"
    return [x["ids"] for x in json.loads(r.stdout)["results"]]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("max_batch", [1, 4])
def test_generate_matches_transformers(exported, family, max_batch):
    model, _, folder, _ = exported[family]
    got = generate_ids(folder / "model.onnx", PROMPTS, ["--max-seq", 64, "--max-batch", max_batch])
    for prompt, ids in zip(PROMPTS, got):
        assert ids == reference(model, prompt, 32), f"{family} max-batch {max_batch}: prompt {prompt}"


@needs_mpi
def test_generate_data_parallel(exported):
    """mpirun -n 2: each rank builds the engine and serves its dp slice of the prompts."""
    model, _, folder, _ = exported["llama"]
    got = generate_ids(folder / "model.onnx", PROMPTS, ["--max-seq", 64], n=2)
    for prompt, ids in zip(PROMPTS, got):
        assert ids == reference(model, prompt, 32), f"dp 2: prompt {prompt}"


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_engine_file_prefills_in_chunks(exported, family):
    """An engine file whose input_ids take at most 4 tokens: the 17-token prompt prefills in 5 steps."""
    model, _, folder, _ = exported[family]
    engine = build_engine_file(folder, family, "chunk4.engine", max_batch=4, max_seq=64, chunk=4)
    got = generate_ids(engine, PROMPTS)
    for prompt, ids in zip(PROMPTS, got):
        assert ids == reference(model, prompt, 32), f"{family}: prompt {prompt}"


def test_sampling_as_the_checkpoint(exported):
    """Same model, same seed: the ONNX file samples the checkpoint folder's tokens."""
    _, _, folder, ckpt = exported["llama"]
    extra = ["--max-seq", 64, "--temperature", 0.8, "--top-k", 20, "--top-p", 0.9, "--seed", 5]
    a = generate_ids(folder / "model.onnx", PROMPTS, extra)
    b = generate_ids(ckpt, PROMPTS, extra)
    assert a == b


def test_eos_from_config_beside_the_file(exported, tmp_path):
    import shutil

    model, _, folder, _ = exported["gpt2"]
    want = reference(model, PROMPTS[0], 32)
    stop = want[3]
    first = want.index(stop)
    d = tmp_path / "with_config"
    d.mkdir()
    shutil.copy(folder / "model.onnx", d / "model.onnx")
    (d / "config.json").write_text(json.dumps({"eos_token_id": stop}))
    r = call(["generate", d / "model.onnx", "--json", "--max-new-tokens", 32, "--max-seq", 64, *DEVICE_ARGS,
              "--prompt-ids", ",".join(map(str, PROMPTS[0]))])
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)["results"][0]
    assert res["ids"] == want[:first + 1]
    assert res["finish_reason"] == "stop"


def test_refusals(exported, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    _, _, folder, _ = exported["gpt2"]
    onnx_path = folder / "model.onnx"
    r = call(["generate", onnx_path, "--prompt-ids", "1,2", "--tp", 2])
    assert r.returncode != 0 and "tensor parallelism needs a checkpoint folder" in r.stderr
    r = call(["generate", onnx_path, "--prompt-ids", "1,2", "--dtype", "fp16"])
    assert r.returncode != 0 and "runs in its file's precision" in r.stderr
    r = call(["generate", onnx_path, "--prompt-ids", "1,2", "--max-seq", 16, "--max-new-tokens", 20])
    assert r.returncode != 0 and "KV cache positions" in r.stderr
    # A model without past_key_values inputs is not a decoder with a cache.
    g = helper.make_graph([helper.make_node("Identity", ["input_ids"], ["logits"])], "g",
                          [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
                          [helper.make_tensor_value_info("logits", TensorProto.INT64, ["b", "s"])])
    plain = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), plain)
    r = call(["generate", plain, "--prompt-ids", "1,2"])
    assert r.returncode != 0 and "past_key_values" in r.stderr
