"""`shardrt generate` and `shardrt tokenize` against Hugging Face transformers and tokenizers.

Tiny random-weight GPT-2 and Llama (grouped-query attention) checkpoints are written with
save_pretrained (safetensors) beside a byte-level BPE tokenizer trained here with
`tokenizers` (tokenizer.json and vocab.json + merges.txt; its vocabulary size is the
models'). Greedy fp32 generation must match transformers' `generate(do_sample=False)` token
for token: on one rank, under `mpirun -n 2` with --tp 2 and with --dp 2, and on 4 ranks
(dp 2 x tp 2), from the checkpoint folder and from an engine folder `shardrt build` wrote.

Greedy decoding compares argmaxes, so the check is exact: a few ulps between the fused
kernels and torch could flip a token only where two logits tie to within that, which the
weight scaling below makes vanishingly unlikely; a mismatch reports transformers' top-2
logit gaps to tell a near-tie from a bug.

Skipped cleanly where torch, transformers or tokenizers are missing; the MPI cases where
mpirun is.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import shardrt_binary_path
from shardrt_harness import TEST_DEVICE

MPIRUN = shutil.which("mpirun")
needs_mpi = pytest.mark.skipif(MPIRUN is None, reason="mpirun is not installed")
# A call builds a tiny engine and generates ≤ 64 tokens for a few prompts: seconds. The
# bound only catches a hang (a stuck collective ends the job itself after 60 s).
TIMEOUT_S = 240
DEVICE_ARGS = ["--device", TEST_DEVICE] if TEST_DEVICE != "cpu" else []
EOT = "<|endoftext|>"
# Prompts of different lengths (token ids below the trained vocabulary's size).
PROMPTS = [[5, 17, 33, 2, 90], [40], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17], [99, 0, 7]]
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! Hello there, general world of tokens.",
    "Byte-level BPE merges frequent pairs:    spaces, tabs\tand\nnewlines.",
    "Unicode: héllo wörld ñandú, 日本語のテキスト, emoji 🙂🙂 and Ελληνικά.",
    "Numbers 12345 and 3.14159 with it's, we're, they'll contractions.",
] * 20

pytestmark = pytest.mark.requires("torch", "transformers", "tokenizers")


# ---------------------------------------------------------------------------------------
# Fixtures: tokenizer and checkpoints

def train_tokenizer(out: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    tok.model.save(str(out))  # vocab.json + merges.txt
    return tok


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(d)
    return d


LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")
BOS3 = "<|begin_of_text|>"


def train_llama3_tokenizer(out: Path, vocab_size: int, pattern: str = LLAMA3_REGEX):
    """A tokenizer laid out as Llama-3's tokenizer.json is: a Split pre-tokenizer with its regex
    before ByteLevel without one, ignore_merges, and a TemplateProcessing post-processor that
    puts <|begin_of_text|> first."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS3, EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS + ["Line one\nline two\r\n\n  indented 1234567 digits"] * 10, trainer)
    bos = tok.token_to_id(BOS3)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{BOS3} $A", pair=f"{BOS3} $A {BOS3} $B", special_tokens=[(BOS3, bos)]),
    ])
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    return tok


@pytest.fixture(scope="module")
def llama3_tokenizer(tmp_path_factory, hf_tokenizer):
    """(folder, tokenizers.Tokenizer): no larger than the checkpoints' vocabulary."""
    d = tmp_path_factory.mktemp("tokenizer_llama3")
    tok = train_llama3_tokenizer(d, hf_tokenizer.get_vocab_size())
    assert tok.get_vocab_size() <= hf_tokenizer.get_vocab_size()
    return d, tok


@pytest.fixture(scope="module")
def hf_tokenizer(tokenizer_dir):
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))


def scale_weights(model, seed: int):
    """Untrained models' own init leaves near-uniform logits that repeat one token; N(0, 4/in)
    matrices, small embeddings and non-trivial norm/bias values give varied continuations
    with clear argmax margins, and exercise every tensor."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if p.dim() == 1 and ("ln" in name or "norm" in name) and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * r)
            elif p.dim() == 1:
                p.copy_(0.1 * r)
            elif any(k in name for k in ("wte", "wpe", "embed_tokens")):
                p.copy_(0.5 * r)
            else:
                fan_in = p.shape[0] if "transformer.h" in name else p.shape[1]  # GPT-2's Conv1D is [in, out]
                p.copy_(2.0 * r / fan_in ** 0.5)


def make_model(family: str, vocab: int, eos: int, seed: int):
    import torch
    import transformers

    torch.manual_seed(seed)
    if family == "gpt2":
        cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=vocab, n_positions=128,
                                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=eos,
                                      eos_token_id=eos)
        model = transformers.GPT2LMHeadModel(cfg)
    else:
        cfg = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=160,
                                       num_attention_heads=4, num_key_value_heads=2, vocab_size=vocab,
                                       max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
                                       tie_word_embeddings=False, bos_token_id=eos, eos_token_id=eos)
        model = transformers.LlamaForCausalLM(cfg)
    scale_weights(model, seed)
    return model.eval()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tokenizer_dir, hf_tokenizer):
    """family -> (model, checkpoint folder with the tokenizer files)."""
    vocab = hf_tokenizer.get_vocab_size()
    eos = hf_tokenizer.token_to_id(EOT)
    out = {}
    for family, seed in (("gpt2", 7), ("llama", 8)):
        d = tmp_path_factory.mktemp(f"ckpt_{family}")
        model = make_model(family, vocab, eos, seed)
        model.save_pretrained(d, safe_serialization=True)
        for f in ("tokenizer.json", "vocab.json", "merges.txt"):
            shutil.copy(tokenizer_dir / f, d / f)
        out[family] = (model, d)
    return out


@pytest.fixture(scope="module")
def engine_dirs(tmp_path_factory, checkpoints):
    """(family, tp) -> engine folder built by `shardrt build`."""
    cache = {}

    def get(family: str, tp: int):
        if (family, tp) not in cache:
            _, ckpt = checkpoints[family]
            d = tmp_path_factory.mktemp(f"eng_{family}_tp{tp}") / "eng"
            r = call(["build", ckpt, "-o", d, "--tp", tp, "--max-batch", 4, "--max-seq", 96, *DEVICE_ARGS])
            assert r.returncode == 0, f"build failed:\n{r.stderr[-3000:]}"
            cache[(family, tp)] = d
        return cache[(family, tp)]

    return get


# ---------------------------------------------------------------------------------------
# Running

def call(args, n: int = 1, env_extra=None) -> subprocess.CompletedProcess:
    binary = str(shardrt_binary_path())
    env = dict(os.environ, **(env_extra or {}))
    if n == 1:
        cmd = [binary, *map(str, args)]
    else:
        cmd = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-n", str(n), binary, *map(str, args)]
        env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)


def generate(path, prompts=(), texts=(), n: int = 1, extra=()) -> dict:
    args = ["generate", path, "--json", *DEVICE_ARGS]
    for p in prompts:
        args += ["--prompt-ids", ",".join(map(str, p))]
    for t in texts:
        args += ["--prompt", t]
    r = call([*args, *map(str, extra)], n=n)
    assert r.returncode == 0, f"generate failed (n={n}, {extra}):\n{r.stderr[-4000:]}"
    return json.loads(r.stdout)


def reference(model, prompt, new_tokens: int, eos=None):
    """transformers' greedy continuation of one prompt (eos None: never stops early)."""
    import torch

    with torch.no_grad():
        ids = torch.tensor([prompt], dtype=torch.long)
        kw = dict(min_new_tokens=new_tokens) if eos is None else {}
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=new_tokens,
                             pad_token_id=0, eos_token_id=eos, **kw)
    return out[0, len(prompt):].tolist()


def check_greedy(model, prompts, doc, new_tokens: int, what: str):
    import torch

    results = doc["results"]
    assert [r["index"] for r in results] == list(range(len(prompts))), what
    for prompt, r in zip(prompts, results):
        want = reference(model, prompt, new_tokens)
        got = r["ids"]
        if got != want:
            with torch.no_grad():
                logits = model(torch.tensor([prompt + want[:-1]])).logits[0, len(prompt) - 1:]
            top2 = logits.topk(2).values
            gaps = [round(x, 5) for x in (top2[:, 0] - top2[:, 1]).tolist()]
            pytest.fail(f"{what}: prompt {prompt}:\n shardrt      {got}\n transformers {want}\n"
                        f" transformers' top-2 logit gaps {gaps}")
        assert r["finish_reason"] == "length"
        assert r["prompt_ids"] == prompt


# ---------------------------------------------------------------------------------------
# Greedy vs transformers

@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_greedy_single_rank_matches_transformers(checkpoints, family):
    model, ckpt = checkpoints[family]
    # --max-batch 3: four prompts run as a batch of three, then one.
    doc = generate(ckpt, PROMPTS, extra=["--max-new-tokens", 64, "--no-stop", "--max-batch", 3])
    check_greedy(model, PROMPTS, doc, 64, f"{family} single rank")
    s = doc["summary"]
    assert s["prompts"] == 4 and s["tokens"] == 4 * 64
    assert doc["mesh"] == {"dp": 1, "tp": 1}


@needs_mpi
@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("n,mesh", [(2, ["--tp", 2]), (2, ["--dp", 2]), (4, ["--tp", 2, "--dp", 2])])
def test_greedy_mesh_matches_transformers(checkpoints, family, n, mesh):
    model, ckpt = checkpoints[family]
    doc = generate(ckpt, PROMPTS, n=n, extra=["--max-new-tokens", 32, "--no-stop", *mesh])
    check_greedy(model, PROMPTS, doc, 32, f"{family} mpirun -n {n} {mesh}")
    tp = mesh[mesh.index("--tp") + 1] if "--tp" in mesh else 1
    assert doc["mesh"] == {"dp": n // tp, "tp": tp}
    assert [g["dp_index"] for g in doc["summary"]["groups"]] == list(range(n // tp))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_engine_folder_single_rank(checkpoints, engine_dirs, family):
    model, _ = checkpoints[family]
    eng = engine_dirs(family, 1)
    manifest = json.loads((eng / "manifest.json").read_text())
    assert manifest["plan"]["source"] == "checkpoint" and manifest["mesh"]["tp"] == 1
    info = json.loads((eng / "decoder.json").read_text())
    assert info["family"] == family and info["max_seq"] == 96 and info["max_batch"] == 4
    assert (eng / "tokenizer.json").is_file() and (eng / "vocab.json").is_file()
    doc = generate(eng, PROMPTS, extra=["--max-new-tokens", 48, "--no-stop"])
    check_greedy(model, PROMPTS, doc, 48, f"{family} engine folder")


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_device_argmax_and_host_argmax_agree(checkpoints, engine_dirs, family):
    """Greedy steps fetch the engine's next_token (ArgMax in the graph); SHARDRT_HOST_ARGMAX=1
    fetches the logits and takes the argmax on the host, as for engines built before
    next_token existed. Same tokens, and transformers' tokens."""
    model, _ = checkpoints[family]
    eng = engine_dirs(family, 1)
    r = call(["inspect", eng / "rank0.engine", "--json"])
    assert r.returncode == 0, r.stderr[-2000:]
    outs = {b["name"]: b for b in json.loads(r.stdout)["bindings"]["outputs"]}
    assert outs["next_token"]["dtype"] == "int64" and outs["next_token"]["dims"] == ["batch"]
    args = ["generate", eng, "--json", "--max-new-tokens", 40, "--no-stop", *DEVICE_ARGS]
    for p in PROMPTS:
        args += ["--prompt-ids", ",".join(map(str, p))]
    docs = []
    for env in ({}, {"SHARDRT_HOST_ARGMAX": "1"}):
        r = call(args, env_extra=env)
        assert r.returncode == 0, f"generate failed ({env}):\n{r.stderr[-3000:]}"
        docs.append(json.loads(r.stdout))
    assert sampled_ids(docs[0]) == sampled_ids(docs[1])
    check_greedy(model, PROMPTS, docs[0], 40, f"{family} device argmax")


@needs_mpi
@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("n", [2, 4])
def test_engine_folder_tp2(checkpoints, engine_dirs, family, n):
    model, _ = checkpoints[family]
    eng = engine_dirs(family, 2)
    assert json.loads((eng / "manifest.json").read_text())["mesh"]["tp"] == 2
    # n = 4: the tp 2 folder serves two dp groups.
    doc = generate(eng, PROMPTS, n=n, extra=["--max-new-tokens", 24, "--no-stop"])
    check_greedy(model, PROMPTS, doc, 24, f"{family} tp 2 engine folder, {n} ranks")


# ---------------------------------------------------------------------------------------
# Text prompts, stop ids, streaming

def test_text_prompt_matches_transformers(checkpoints, hf_tokenizer):
    model, ckpt = checkpoints["llama"]
    texts = ["The quick brown fox", "Hello wörld 🙂\nnew line"]
    doc = generate(ckpt, texts=texts, extra=["--max-new-tokens", 20, "--no-stop"])
    for t, r in zip(texts, doc["results"]):
        ids = hf_tokenizer.encode(t).ids
        assert r["prompt_ids"] == ids and r["prompt"] == t
        want = reference(model, ids, 20)
        assert r["ids"] == want
        assert r["text"] == hf_tokenizer.decode(want, skip_special_tokens=False)


def test_prompt_order_is_command_line_order(checkpoints):
    _, ckpt = checkpoints["gpt2"]
    r = call(["generate", ckpt, "--json", "--max-new-tokens", 2, "--prompt-ids", "3,4", "--prompt", "Hello",
              "--prompt-ids", "9", *DEVICE_ARGS])
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [x["prompt_ids"] for x in doc["results"]][0::2] == [[3, 4], [9]]
    assert doc["results"][1]["prompt"] == "Hello"


def test_stop_id_is_honoured(checkpoints):
    model, ckpt = checkpoints["gpt2"]
    prompt = PROMPTS[0]
    free = reference(model, prompt, 30)
    stop = free[6]  # a token greedy decoding reaches: it must end the output at its first occurrence
    first = free.index(stop)
    doc = generate(ckpt, [prompt], extra=["--max-new-tokens", 30, "--stop-id", stop])
    r = doc["results"][0]
    assert r["ids"] == free[:first + 1] and r["finish_reason"] == "stop"
    assert r["ids"] == reference(model, prompt, 30, eos=stop)
    # The text leaves the stop token out.
    assert "text" in r
    # Finished rows keep running with a pad token: the other prompt of the batch is unaffected.
    doc = generate(ckpt, [prompt, PROMPTS[2]], extra=["--max-new-tokens", 30, "--stop-id", stop])
    assert doc["results"][0]["ids"] == free[:first + 1]
    assert doc["results"][1]["ids"] == reference(model, PROMPTS[2], 30, eos=stop)


def test_default_stop_is_the_models_eos(checkpoints, hf_tokenizer):
    model, ckpt = checkpoints["llama"]
    eos = hf_tokenizer.token_to_id(EOT)
    doc = generate(ckpt, PROMPTS[:2], extra=["--max-new-tokens", 40])
    for p, r in zip(PROMPTS[:2], doc["results"]):
        assert r["ids"] == reference(model, p, 40, eos=eos)


def test_stream_prints_what_the_plain_run_prints(checkpoints):
    _, ckpt = checkpoints["gpt2"]
    base = ["generate", ckpt, "--max-new-tokens", 12, "--prompt", "Hello world", "--prompt-ids", "5,6,7", "--max-batch", 1,
            *DEVICE_ARGS]
    plain = call(base)
    streamed = call([*base, "--stream"])
    assert plain.returncode == 0 and streamed.returncode == 0, plain.stderr + streamed.stderr
    assert plain.stdout == streamed.stdout
    assert plain.stdout.startswith("[0] Hello world") and "\n[1] " in plain.stdout
    assert "tokens/s" in plain.stderr  # the summary


def test_ids_without_tokenizer(checkpoints, tmp_path):
    model, ckpt = checkpoints["gpt2"]
    bare = tmp_path / "bare"
    shutil.copytree(ckpt, bare, ignore=shutil.ignore_patterns("tokenizer.json", "vocab.json", "merges.txt"))
    r = call(["generate", bare, "--prompt-ids", "5,6,7", "--max-new-tokens", 8, "--no-stop", *DEVICE_ARGS])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(t) for t in reference(model, [5, 6, 7], 8)]
    r = call(["generate", bare, "--prompt", "Hello", *DEVICE_ARGS])
    assert r.returncode != 0 and "--prompt TEXT needs a tokenizer" in r.stderr and "--tokenizer" in r.stderr


# ---------------------------------------------------------------------------------------
# Sampling

SAMPLING = ["--temperature", 0.9, "--top-k", 40, "--top-p", 0.95, "--max-new-tokens", 24, "--no-stop"]


def sampled_ids(doc):
    return [r["ids"] for r in doc["results"]]


def test_sampling_reproducible_with_seed(checkpoints):
    _, ckpt = checkpoints["llama"]
    a = generate(ckpt, PROMPTS, extra=[*SAMPLING, "--seed", 5])
    b = generate(ckpt, PROMPTS, extra=[*SAMPLING, "--seed", 5, "--max-batch", 1])
    c = generate(ckpt, PROMPTS, extra=[*SAMPLING, "--seed", 6])
    assert sampled_ids(a) == sampled_ids(b)
    assert sampled_ids(a) != sampled_ids(c)
    # Sampling is not greedy decoding.
    g = generate(ckpt, PROMPTS, extra=["--max-new-tokens", 24, "--no-stop"])
    assert sampled_ids(a) != sampled_ids(g)


@needs_mpi
def test_sampling_independent_of_dp(checkpoints):
    _, ckpt = checkpoints["gpt2"]
    one = generate(ckpt, PROMPTS, extra=[*SAMPLING, "--seed", 11])
    two = generate(ckpt, PROMPTS, n=2, extra=[*SAMPLING, "--seed", 11, "--dp", 2])
    tp = generate(ckpt, PROMPTS, n=2, extra=[*SAMPLING, "--seed", 11, "--tp", 2])
    assert sampled_ids(one) == sampled_ids(two) == sampled_ids(tp)


# ---------------------------------------------------------------------------------------
# Errors

def test_errors_name_the_problem(checkpoints, engine_dirs, tokenizer_dir, tmp_path):
    _, ckpt = checkpoints["gpt2"]
    eng = engine_dirs("gpt2", 1)
    long_prompt = ",".join(["1"] * 100)
    r = call(["generate", eng, "--prompt-ids", long_prompt])
    assert r.returncode != 0 and "prompt 0 has 100 tokens, more than the engine's max-seq 96" in r.stderr, r.stderr
    r = call(["generate", eng, "--prompt-ids", ",".join(["1"] * 90), "--max-new-tokens", 10])
    assert r.returncode != 0 and "needs 99 KV cache positions" in r.stderr, r.stderr
    r = call(["generate", eng, "--prompt-ids", "1", "--tp", 2])
    assert r.returncode != 0 and "--tp 2 does not match engine folder" in r.stderr, r.stderr
    r = call(["generate", ckpt, "--prompt-ids", "1,100000"])
    assert r.returncode != 0 and "outside the model's vocabulary" in r.stderr, r.stderr
    # A tokenizer with more tokens than the model's vocabulary.
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    big = Tokenizer(models.BPE())
    big.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    big.train_from_iterator(CORPUS * 3 + ["zzqx yyvw " * 50, "abcdefghij klmnopq rstuvw"],
                            trainers.BpeTrainer(vocab_size=480, show_progress=False,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    big.save(str(tmp_path / "big.json"))
    assert big.get_vocab_size() > checkpoints["gpt2"][0].config.vocab_size
    r = call(["generate", ckpt, "--prompt", "hi", "--tokenizer", tmp_path / "big.json"])
    assert r.returncode != 0 and "do not belong together" in r.stderr, r.stderr
    r = call(["generate", tmp_path, "--prompt-ids", "1"])
    assert r.returncode != 0 and "neither config.json" in r.stderr, r.stderr
    r = call(["generate", ckpt, "--prompt-ids", "1", "--top-p", 0])
    assert r.returncode != 0 and "--top-p" in r.stderr, r.stderr
    r = call(["generate", ckpt, "--prompt-ids", "1,x"])
    assert r.returncode != 0 and "--prompt-ids takes comma-separated token ids" in r.stderr, r.stderr


@needs_mpi
def test_world_not_divisible_by_tp(checkpoints):
    _, ckpt = checkpoints["gpt2"]
    r = call(["generate", ckpt, "--prompt-ids", "1", "--tp", 2], n=3)
    assert r.returncode != 0 and "not a multiple of tp 2" in r.stderr, r.stderr


# ---------------------------------------------------------------------------------------
# The tokenizer

TEXTS = [
    "Hello world",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\r\n\n\nmany",
    "héllo wörld ñandú 日本語のテキスト 🙂🙂 Ελληνικά",
    "it's we're I'll they've 'S",
    "numbers 12345 3.14159 -7e10",
    f"before{EOT}after {EOT} spaced",
    "unseen words: xylophone quizzical",
    "",
]


# Where Llama-3's regex splits differently from GPT-2's: newline runs, digit triples, a
# non-letter joined to the word after it, case-insensitive contractions.
LLAMA3_TEXTS = [
    "a\n\n\n  b", "  \n  \n  x", "\t\n\tz", "1234567 12 1", "IT'S We'RE 'Ll", ".hello ,world (x) [y]",
    "!!\n\nfoo", "??  \r\n bar", "$100.00 50%", "\u00a0word \u3000word", "line1\nline2\n\nline4  \n  end",
]


def test_tokenize_llama3_matches_tokenizers(llama3_tokenizer):
    path, hf = llama3_tokenizer
    for text in TEXTS + LLAMA3_TEXTS:
        want = hf.encode(text).ids  # <|begin_of_text|> first, as the post-processor adds it
        r = call(["tokenize", "--tokenizer", path, "--text", text])
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["ids"] == want, repr(text)
        r = call(["tokenize", "--tokenizer", path, "--decode", ",".join(map(str, want))])
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["text"] == hf.decode(want, skip_special_tokens=False) == BOS3 + text


def prompt_texts_match_transformers(checkpoints, path, hf, texts, bos=None):
    """`generate --prompt` with the tokenizer at `path` on the Llama checkpoint: the prompt ids
    are tokenizers' (with `bos` first when given) and the greedy ids transformers'. Returns
    generate's results."""
    model, ckpt = checkpoints["llama"]
    doc = generate(ckpt, texts=texts, extra=["--max-new-tokens", 12, "--no-stop", "--tokenizer", path / "tokenizer.json"])
    for t, r in zip(texts, doc["results"]):
        ids = hf.encode(t).ids
        assert bos is None or ids[0] == hf.token_to_id(bos)
        assert r["prompt_ids"] == ids
        assert r["ids"] == reference(model, ids, 12)
    return doc["results"]


def test_text_prompt_with_llama3_tokenizer_matches_transformers(checkpoints, llama3_tokenizer):
    path, hf = llama3_tokenizer
    prompt_texts_match_transformers(checkpoints, path, hf, ["The quick brown fox", "Line one\nline two 1234567"], BOS3)


def test_tokenizer_layouts_it_does_not_run_are_refused(tmp_path):
    """A pre-tokenizer whose splits shardrt would not reproduce is refused, naming the file and
    the part, rather than run with GPT-2's regex."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers

    other = tmp_path / "other"  # digits in twos: no model's regex
    train_llama3_tokenizer(other, 300, pattern=LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}{1,2}"))
    r = call(["tokenize", "--tokenizer", other / "tokenizer.json", "--text", "x"])
    assert r.returncode != 0 and "is not one shardrt runs" in r.stderr and "tokenizer.json" in r.stderr, r.stderr
    tok = Tokenizer.from_file(str(other / "tokenizer.json"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.save(str(tmp_path / "digits.json"))
    r = call(["tokenize", "--tokenizer", tmp_path / "digits.json", "--text", "x"])
    assert r.returncode != 0 and "pre-tokenizer Sequence [Digits, ByteLevel] is not supported" in r.stderr, r.stderr
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.save(str(tmp_path / "double.json"))
    r = call(["tokenize", "--tokenizer", tmp_path / "double.json", "--text", "x"])
    assert r.returncode != 0 and "use_regex=true after a Split is not supported" in r.stderr, r.stderr
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.normalizer = normalizers.NFKC()
    tok.save(str(tmp_path / "nfkc.json"))
    r = call(["tokenize", "--tokenizer", tmp_path / "nfkc.json", "--text", "x"])
    assert r.returncode != 0 and "normalizer [NFKC] is not supported" in r.stderr, r.stderr


QWEN2_REGEX = LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")


@pytest.fixture(scope="module")
def qwen2_tokenizer(tmp_path_factory, hf_tokenizer):
    """Laid out as Qwen2's tokenizer.json: an NFC normalizer, then Llama-3's layout with Qwen2's
    regex (single digits), no BOS."""
    from tokenizers import Tokenizer, normalizers, processors

    d = tmp_path_factory.mktemp("tokenizer_qwen2")
    train_llama3_tokenizer(d, hf_tokenizer.get_vocab_size(), pattern=QWEN2_REGEX)
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.normalizer = normalizers.NFC()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.save(str(d / "tokenizer.json"))
    return d, tok


def test_tokenize_qwen2_matches_tokenizers(qwen2_tokenizer):
    """Qwen2's regex (one digit a piece) and its NFC normalizer on texts that NFC leaves as they
    are; a text NFC would change (a combining accent, an Ångström sign) is refused naming the
    character, not tokenized differently from tokenizers."""
    path, hf = qwen2_tokenizer
    for text in TEXTS + LLAMA3_TEXTS + ["Ελληνικά ñandú 1234567 x12y"]:
        want = hf.encode(text).ids
        r = call(["tokenize", "--tokenizer", path, "--text", text])
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["ids"] == want, repr(text)
    for text, cp in (("cafe\u0301 au lait", "U+0301"), ("\u212b ring", "U+212B")):
        assert hf.normalizer.normalize_str(text) != text  # a text tokenizers' NFC changes
        r = call(["tokenize", "--tokenizer", path, "--text", text])
        assert r.returncode != 0 and cp in r.stderr and "NFC" in r.stderr, r.stderr


def test_text_prompt_with_qwen2_tokenizer_matches_transformers(checkpoints, qwen2_tokenizer):
    path, hf = qwen2_tokenizer
    prompt_texts_match_transformers(checkpoints, path, hf, ["The quick brown fox 2024", "Ελληνικά\n\n  x"])


SP = "\u2581"  # SentencePiece's space


def train_sentencepiece_tokenizer(out: Path, vocab_size: int, layout: str, split: bool = False):
    """A tokenizer laid out as transformers writes Llama-2's / Mistral's tokenizer.json: BPE with
    byte fallback (<0x00>..<0xFF> in the vocabulary, not added tokens), <unk> fused; `layout`
    "legacy" (normalizer Prepend ▁ + Replace ' ' → ▁, no pre-tokenizer) or "metaspace" (a
    Metaspace pre-tokenizer, prepend_scheme first); decoder Replace ▁ → ' ', ByteFallback, Fuse,
    Strip; <s> before the sequence. "metaspace-decoder": no byte fallback (unknown characters
    become <unk>) and a Metaspace decoder."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    fallback = layout != "metaspace-decoder"
    tok = Tokenizer(models.BPE(byte_fallback=fallback, unk_token="<unk>", fuse_unk=True))
    if layout == "legacy":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend(SP), normalizers.Replace(" ", SP)])
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SP, prepend_scheme="first", split=split)
    if fallback:
        tok.decoder = decoders.Sequence([decoders.Replace(SP, " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    else:
        tok.decoder = decoders.Metaspace(replacement=SP, prepend_scheme="first", split=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 256, special_tokens=["<unk>", "<s>", "</s>"],
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    n = max(vocab.values()) + 1
    if fallback:
        vocab.update({f"<0x{b:02X}>": n + b for b in range(256)})
    tok = Tokenizer.from_str(json.dumps(j))
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bos)])
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    return tok


@pytest.fixture(scope="module", params=["legacy", "metaspace", "metaspace-decoder"])
def sp_tokenizer(request, tmp_path_factory, hf_tokenizer):
    """(folder, tokenizers.Tokenizer, layout): no larger than the checkpoints' vocabulary."""
    d = tmp_path_factory.mktemp("tokenizer_sp_" + request.param)
    tok = train_sentencepiece_tokenizer(d, hf_tokenizer.get_vocab_size(), request.param)
    assert tok.get_vocab_size() <= hf_tokenizer.get_vocab_size()
    return d, tok, request.param


SP_TEXTS = ["unseen \u2603 \u03a9mega", "a<s>b", "</s>x  y", f"{SP}already spaced", "<unk> literal", "", " ", "x"]


def test_tokenize_sentencepiece_matches_tokenizers(sp_tokenizer):
    """Llama-2 / Mistral layouts: ids (byte fallback for characters outside the vocabulary, the
    ▁ put before the text or every segment), and decoding both a whole text (the decoder's
    leading space stripped) and the same ids without <s>."""
    path, hf, layout = sp_tokenizer
    fallback = 0  # byte tokens, or <unk> without byte fallback
    for text in TEXTS + LLAMA3_TEXTS + SP_TEXTS:
        enc = hf.encode(text)
        r = call(["tokenize", "--tokenizer", path, "--text", text])
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["ids"] == enc.ids, f"{layout}: {text!r} ({enc.tokens})"
        fallback += sum(t.startswith("<0x") or t == "<unk>" for t in enc.tokens)
        for ids in (enc.ids, enc.ids[1:]):
            if not ids:
                continue
            r = call(["tokenize", "--tokenizer", path, "--decode", ",".join(map(str, ids))])
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout)["text"] == hf.decode(ids, skip_special_tokens=False), f"{layout}: {text!r}"
    assert fallback > 0  # the texts reach the byte fallback (or <unk>)


def test_text_prompt_with_sentencepiece_tokenizer_matches_transformers(checkpoints, sp_tokenizer):
    """Also the continuation's text as it follows its prompt: its bytes token by token (▁ as a
    space, no leading space removed, <0xXX> as its byte, ids beyond the tokenizer as U+FFFD),
    invalid UTF-8 replaced as Python's errors="replace" does. (The random model's ids rarely
    decode cleanly, so tokenizers' own decoding is compared in
    test_tokenize_sentencepiece_matches_tokenizers.)"""
    path, hf, _ = sp_tokenizer

    def token_bytes(i):
        if i >= hf.get_vocab_size():
            return "\ufffd".encode()
        t = hf.id_to_token(i)
        return bytes([int(t[3:5], 16)]) if re.fullmatch(r"<0x[0-9A-F]{2}>", t) else t.replace(SP, " ").encode()

    for r in prompt_texts_match_transformers(checkpoints, path, hf, ["The quick brown fox", "unseen \u2603 words"], "<s>"):
        assert r["text"] == b"".join(map(token_bytes, r["ids"])).decode("utf-8", "replace"), r["ids"]


def test_sentencepiece_layouts_it_does_not_run_are_refused(tmp_path, hf_tokenizer):
    from tokenizers import Tokenizer, decoders

    train_sentencepiece_tokenizer(tmp_path / "split", 400, "metaspace", split=True)
    r = call(["tokenize", "--tokenizer", tmp_path / "split" / "tokenizer.json", "--text", "x"])
    assert r.returncode != 0 and "Metaspace pre-tokenizer with split true is not supported" in r.stderr, r.stderr
    tok = train_sentencepiece_tokenizer(tmp_path / "dec", 400, "legacy")
    tok.decoder = decoders.ByteLevel()
    tok.save(str(tmp_path / "dec.json"))
    r = call(["tokenize", "--tokenizer", tmp_path / "dec.json", "--text", "x"])
    assert r.returncode != 0 and "decoder 'ByteLevel' is not supported" in r.stderr and "dec.json" in r.stderr, r.stderr


@pytest.mark.parametrize("source", ["tokenizer.json", "vocab+merges"])
def test_tokenize_matches_tokenizers(tokenizer_dir, hf_tokenizer, tmp_path, source):
    if source == "tokenizer.json":
        path = tokenizer_dir / "tokenizer.json"
    else:
        path = tmp_path / "vm"
        path.mkdir()
        for f in ("vocab.json", "merges.txt"):
            shutil.copy(tokenizer_dir / f, path / f)
    for text in TEXTS:
        want = hf_tokenizer.encode(text).ids
        r = call(["tokenize", "--tokenizer", path, "--text", text])
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)["ids"]
        assert got == want, f"{source}: {text!r}"
        if want:
            r = call(["tokenize", "--tokenizer", path, "--decode", ",".join(map(str, want))])
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout)["text"] == hf_tokenizer.decode(want, skip_special_tokens=False) == text
