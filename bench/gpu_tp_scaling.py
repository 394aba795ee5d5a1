# Tensor-parallel scaling on one host's GPUs: Llama-3-8B dims (32 layers, random weights,
# bf16), prefill of one 2048-token prompt and decode at batch 1 and 32, with shardrt at TP 1
# and TP 2 (`shardrt build --tp N`, then `shardrt generate` under mpirun), beside Hugging Face
# transformers on one GPU (eager) and at TP 2 (`tp_plan="auto"`: DTensor, eager, torchrun).
#
#   python3 bench/gpu_tp_scaling.py --bin BUILD_BIN_DIR --out OUT [--tp 1,2] [--dp-gpt2 1,2] [--no-peer]
#
# shardrt, from `generate --json` summaries, as differences of two runs so that what each
# process pays once (eager runs, CUDA graph capture, timing GEMM tactics for new shapes)
# cancels: warm prefill of a 2048-token prompt = (three such prompts one after another - one)
# / 2; decode step = (decode time with 144 new tokens - with 16) / 128, at batch 1 (2048
# cached) and 32 (32 prompts of 128 tokens). --dp-gpt2 1,2 adds GPT-2 124M fp16 data parallel
# (32 prompts, max-batch 16 per rank; the slowest group's step). Peer: one prefill call timed
# with CUDA events, and decode steps of batch 1 / 32 with a DynamicCache (median of 20 steps,
# the cache cropped back).
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cuda_timing import log  # noqa: E402

PEER = r'''
import json, os, sys, torch, torch.distributed as dist
from transformers import LlamaForCausalLM
local = int(os.environ.get("LOCAL_RANK", "0"))
torch.cuda.set_device(local)
kw = dict(tp_plan="auto") if int(os.environ.get("WORLD_SIZE", "1")) > 1 else dict(device_map={"": 0})
m = LlamaForCausalLM.from_pretrained(sys.argv[1], dtype=torch.bfloat16, **kw).eval()
def ev(f, reps):
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); f(); b.record(); torch.cuda.synchronize(); ts.append(a.elapsed_time(b))
    return sorted(ts)[len(ts) // 2]
res = {}
with torch.no_grad():
    ids = torch.randint(0, 128256, (1, 2048), device="cuda")
    m(input_ids=ids)  # warm
    res["prefill_ms"] = ev(lambda: m(input_ids=ids, logits_to_keep=1), 5)
    for b, past in ((1, 2048), (32, 128)):
        pre = torch.randint(0, 128256, (b, past), device="cuda")
        pkv = m(input_ids=pre, use_cache=True, logits_to_keep=1).past_key_values
        tok = torch.randint(0, 128256, (b, 1), device="cuda")
        def step():
            m(input_ids=tok, past_key_values=pkv, use_cache=True)
            pkv.crop(past)
        for _ in range(3): step()
        res[f"decode_b{b}_ms"] = ev(step, 20)
if int(os.environ.get("RANK", "0")) == 0:
    print("PEER " + json.dumps(res), flush=True)
'''


def run(cmd, log_path, env=None, timeout=600):
    log("$", " ".join(str(c) if len(str(c)) < 80 else str(c)[:40] + "..." for c in cmd))
    t = time.time()
    p = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, **(env or {})))
    with open(log_path, "w") as f:
        f.write(p.stderr + "\n" + p.stdout)
    log(f"  rc {p.returncode} in {time.time() - t:.1f} s")
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tp", default="1,2")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--dp-gpt2", default="", help="also GPT-2 data parallel over these rank counts, e.g. 1,2")
    args = ap.parse_args()
    tps = [int(x) for x in args.tp.split(",")]
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
                      num_hidden_layers=32, vocab_size=128256, max_position_embeddings=4096)
    t0 = time.time()
    with torch.device("cuda"):
        m = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    d = tempfile.mkdtemp(prefix="llama8b_")
    m.save_pretrained(d)
    del m
    torch.cuda.empty_cache()
    log("saved in", round(time.time() - t0, 1), "s")
    rows = []
    mpirun = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-x", "LD_LIBRARY_PATH", "-x",
              "NCCL_NVLS_ENABLE"]
    shardrt = os.path.join(args.bin, "shardrt")

    def gen(launch, eng, prompts, new_tokens, extra, tag):
        """generate's JSON summary (None on failure)."""
        cmd = launch + [shardrt, "generate", eng] + sum((["--prompt-ids", x] for x in prompts), [])
        cmd += ["--max-new-tokens", new_tokens, "--no-stop", "--device", "cuda", "--json", *extra]
        p = run(cmd, os.path.join(args.out, f"gen_{tag}.log"))
        return json.loads(p.stdout)["summary"] if p.returncode == 0 else None

    def decode_step_ms(launch, eng, prompts, extra, tag):
        """Steady-state decode step: the difference of two runs (16 and 144 new tokens), so that
        what each process pays once (eager runs, graph capture, tactic timing) cancels."""
        a = gen(launch, eng, prompts, 16, extra, tag + "_16")
        b = gen(launch, eng, prompts, 144, extra, tag + "_144")
        return None if not a or not b else (b["decode_ms"] - a["decode_ms"]) / 128

    prompt = ",".join(str((i * 7919) % 128000) for i in range(2048))
    short = ",".join(str((i * 104729) % 128000) for i in range(128))
    for tp in tps:
        eng = d + f"_tp{tp}"
        b = run([shardrt, "build", d, "-o", eng, "--tp", tp, "--max-batch", 32, "--max-seq", 2304, "--dtype", "bf16",
                 "--device", "cuda"], os.path.join(args.out, f"build_tp{tp}.log"))
        if b.returncode != 0:
            rows.append({"tp": tp, "error": b.stderr[-500:]})
            continue
        launch = mpirun + ["-n", str(tp)] if tp > 1 else []
        r = {"tp": tp}
        # Prefill of one 2048-token prompt, warm: (three prompts one after another - one) / 2.
        one = gen(launch, eng, [prompt], 1, ["--max-batch", 1], f"prefill1_tp{tp}")
        three = gen(launch, eng, [prompt] * 3, 1, ["--max-batch", 1], f"prefill3_tp{tp}")
        if one and three:
            r["prefill_2048_first_ms"] = one["prefill_ms"]
            r["prefill_2048_warm_ms"] = (three["prefill_ms"] - one["prefill_ms"]) / 2
        r["decode_b1_ms"] = decode_step_ms(launch, eng, [prompt], [], f"b1_tp{tp}")
        r["decode_b32_ms"] = decode_step_ms(launch, eng, [short] * 32, ["--max-batch", 32], f"b32_tp{tp}")
        rows.append(r)
        log(r)
        subprocess.run(["rm", "-rf", eng])
    if args.dp_gpt2:
        # GPT-2 124M fp16 data parallel: 32 prompts of 64 tokens, max-batch 16 per rank.
        from transformers import GPT2Config, GPT2LMHeadModel
        g = tempfile.mkdtemp(prefix="gpt2dp_")
        GPT2LMHeadModel(GPT2Config()).half().save_pretrained(g)
        run([shardrt, "build", g, "-o", g + "_eng", "--max-batch", 16, "--max-seq", 320, "--dtype", "fp16", "--device",
             "cuda"], os.path.join(args.out, "build_gpt2dp.log"))
        prompts = [",".join(str((j * 31 + i * 7) % 50000) for j in range(64)) for i in range(32)]
        for n in [int(x) for x in args.dp_gpt2.split(",")]:
            launch = mpirun + ["-n", str(n)] if n > 1 else []
            step = decode_step_ms(launch, g + "_eng", prompts, ["--max-batch", 16, "--dp", n], f"gpt2dp{n}")
            rows.append({"dp": n, "decode_step_ms_slowest_group": step,
                         "tokens_per_s": None if not step else 32 * 1000 / step})
            log(rows[-1])
    if not args.no_peer:
        script = os.path.join(args.out, "peer_tp.py")
        with open(script, "w") as f:
            f.write(PEER)
        for tp in tps:
            cmd = [sys.executable, script, d] if tp == 1 else ["torchrun", "--nproc_per_node", tp, script, d]
            try:
                p = run(cmd, os.path.join(args.out, f"peer_tp{tp}.log"), timeout=300)
                line = [x for x in p.stdout.splitlines() if x.startswith("PEER ")]
                rows.append({"peer_tp": tp, **(json.loads(line[0][5:]) if line else {"error": p.stderr[-400:]})})
            except subprocess.TimeoutExpired:
                rows.append({"peer_tp": tp, "error": "timeout"})
            log(rows[-1])
    with open(os.path.join(args.out, "tp_scaling.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
