# Side-by-side benchmark on one GPU: each workload is built in PyTorch, timed in eager mode,
# with torch.compile (default) and torch.compile(mode="reduce-overhead"), exported to ONNX,
# built into a shardrt engine for CUDA, timed with `shardrt bench --device cuda`, and its
# outputs compared with PyTorch's on the same inputs. Prints one table of times and ratios
# and writes it as JSON and Markdown under --out.
#
# Timing: PyTorch as ../shared-style peer scripts do (median of 30 timed calls after
# warm-up, CUDA events around each call); shardrt's `bench` reports the median of its timed
# runs (wall clock around execute + synchronize with inputs already on the device, which
# includes the launch and the wait: slightly pessimistic for shardrt).
#
#   python3 bench/gpu_peers.py --shardrt .gpu/bin/shardrt --out $OUT [--only gpt2_b8,mlp_small]
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cuda_timing import log, timed  # noqa: E402

dev = torch.device("cuda")


def gemm_peak(dtype):
    a = torch.randn(8192, 8192, device=dev, dtype=dtype)
    b = torch.randn(8192, 8192, device=dev, dtype=dtype)
    ms = timed(lambda: a @ b, 3, 10)
    return 2 * 8192 ** 3 / ms / 1e9  # TFLOP/s


class MLP(nn.Module):  # the seed's MLP: Linear, ReLU, Linear
    def __init__(self, d, h):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, h), nn.Linear(h, d)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class CausalSDPA(nn.Module):  # attention alone: torch's flash SDPA against shardrt.Attention
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)


class Logits(nn.Module):  # a causal LM's forward returning only the logits
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids):
        return self.m(input_ids=input_ids, use_cache=False).logits


def workloads(only):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    def mlp(d, h, rows):
        return lambda: (MLP(d, h).half().to(dev).eval(), [torch.randn(rows, d, device=dev, dtype=torch.half)], ["x"])

    def gpt2(b, s):
        def make():
            torch.manual_seed(0)
            m = Logits(GPT2LMHeadModel(GPT2Config()).eval()).half().to(dev).eval()
            return m, [torch.randint(0, 50257, (b, s), device=dev)], ["input_ids"]
        return make

    def llama():
        def make():
            torch.manual_seed(0)
            cfg = LlamaConfig(hidden_size=4096, num_attention_heads=32, num_key_value_heads=8,
                              intermediate_size=14336, vocab_size=128256, num_hidden_layers=4,
                              max_position_embeddings=4096)
            m = Logits(LlamaForCausalLM(cfg).to(torch.bfloat16).eval()).to(dev).eval()
            return m, [torch.randint(0, 128256, (1, 2048), device=dev)], ["input_ids"]
        return make

    def unet():
        def make():
            from diffusers import UNet2DConditionModel
            torch.manual_seed(0)
            # Stable Diffusion 1.5's UNet configuration (diffusers' defaults are SD's).
            u = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)

            class Eps(nn.Module):
                def __init__(self, u):
                    super().__init__()
                    self.u = u

                def forward(self, sample, timestep, encoder_hidden_states):
                    return self.u(sample, timestep, encoder_hidden_states, return_dict=False)[0]
            m = Eps(u).half().to(dev).eval()
            return m, [torch.randn(2, 4, 64, 64, device=dev, dtype=torch.half),
                       torch.tensor([500], device=dev, dtype=torch.int64),
                       torch.randn(2, 77, 768, device=dev, dtype=torch.half)], \
                ["sample", "timestep", "encoder_hidden_states"]
        return make

    def sdpa():
        def make():
            qkv = [torch.randn(8, 12, 512, 64, device=dev, dtype=torch.half) for _ in range(3)]
            return CausalSDPA().to(dev).eval(), qkv, ["q", "k", "v"]
        return make

    w = [
        ("sdpa_causal_b8_h12_s512_d64_fp16", sdpa(), 4 * 8 * 12 * 512 * 512 * 64 // 2),
        # name, make, flops (for TFLOP/s where the target is a share of the GEMM peak)
        ("mlp_512x2048_b8_fp16", mlp(512, 2048, 8), 2 * 8 * 512 * 2048 * 2),
        ("mlp_4096x16384_r4096_fp16", mlp(4096, 16384, 4096), 2 * 4096 * 4096 * 16384 * 2),
        ("gpt2_124M_b8x512_fp16", gpt2(8, 512), None),
        ("gpt2_124M_b1x128_fp16", gpt2(1, 128), None),
        ("llama3_8B_dims_4L_b1x2048_bf16", llama(), None),
        ("sd15_unet_64x64_b2_fp16", unet(), None),
    ]
    return [x for x in w if not only or any(o in x[0] for o in only)]


def export(model, inputs, names, path):
    with torch.no_grad():
        try:
            torch.onnx.export(model, tuple(inputs), path, input_names=names, output_names=["out"],
                              dynamo=True, external_data=True, optimize=True)
        except Exception as e:  # the dynamo exporter refuses some models; TorchScript's then
            log("  dynamo export failed (%s); TorchScript exporter" % str(e).splitlines()[0][:200])
            torch.onnx.export(model, tuple(inputs), path, input_names=names, output_names=["out"],
                              dynamo=False, opset_version=18)


def shardrt_build(exe, onnx_path, engine, names, inputs):
    shapes = []
    for n, x in zip(names, inputs):
        d = "x".join(str(v) for v in x.shape) if x.dim() else ""
        if d:
            shapes.append("%s:%s/%s/%s" % (n, d, d, d))
    t0 = time.time()
    r = subprocess.run([exe, "build", onnx_path, "-o", engine, "--device", "cuda"] +
                       (["--shapes", ",".join(shapes)] if shapes else []), capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("build failed: " + (r.stderr or r.stdout)[-2000:])
    return time.time() - t0


def shardrt_bench(exe, engine, profile=False):
    args = [exe, "bench", engine, "--device", "cuda", "--json", "--warmup", "10", "--iterations", "30"]
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("bench failed: " + (r.stderr or r.stdout)[-2000:])
    line = [l for l in r.stdout.splitlines() if l.startswith("{")][-1]
    res = json.loads(line)
    if profile:
        p = subprocess.run([exe, "bench", engine, "--device", "cuda", "--profile", "--iterations", "5"],
                           capture_output=True, text=True)
        res["profile"] = p.stdout[-6000:]
    return res


def shardrt_run(exe, engine, names, inputs, tmp):
    args = []
    for i, (n, x) in enumerate(zip(names, inputs)):
        inp = os.path.join(tmp, "in%d.npy" % i)
        np.save(inp, x.cpu().numpy())
        args += ["--input", "%s=%s" % (n, inp)]
    outdir = os.path.join(tmp, "out")
    os.makedirs(outdir, exist_ok=True)
    r = subprocess.run([exe, "run", engine, "--device", "cuda", "--output-dir", outdir] + args,
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("run failed: " + (r.stderr or r.stdout)[-2000:])
    return np.load(os.path.join(outdir, "out.npy"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shardrt", required=True)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--only", default="")
    ap.add_argument("--profile", action="store_true", help="also keep shardrt's per-layer profile")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile modes")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    p = torch.cuda.get_device_properties(0)
    res = {"gpu": p.name, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "peaks": {"fp16_gemm_tflops": gemm_peak(torch.half), "bf16_gemm_tflops": gemm_peak(torch.bfloat16)},
           "rows": []}
    log("GPU", p.name, "peaks", res["peaks"])
    only = [o for o in a.only.split(",") if o]
    for wname, make, flops in workloads(only):
        row = {"workload": wname}
        res["rows"].append(row)
        try:
            model, inputs, names = make()
            with torch.no_grad():
                ref = model(*inputs)
                row["eager_ms"] = timed(lambda: model(*inputs))
                for mode in ([] if a.no_compile else ["default", "reduce-overhead"]):
                    torch._dynamo.reset()
                    fn = torch.compile(model) if mode == "default" else torch.compile(model, mode=mode)
                    t0 = time.time()
                    fn(*inputs)
                    torch.cuda.synchronize()
                    row["compile_first_call_s_" + mode] = time.time() - t0
                    row["compile_ms_" + mode] = timed(lambda: fn(*inputs))
                torch._dynamo.reset()
            log(wname, {k: v for k, v in row.items() if k != "workload"})
            with tempfile.TemporaryDirectory() as tmp:
                onnx_path = os.path.join(tmp, "model.onnx")
                t0 = time.time()
                export(model, inputs, names, onnx_path)
                row["export_s"] = time.time() - t0
                engine = os.path.join(tmp, "model.engine")
                row["shardrt_build_s"] = shardrt_build(a.shardrt, onnx_path, engine, names, inputs)
                b = shardrt_bench(a.shardrt, engine, a.profile)
                row["shardrt_ms"] = b["median_ms"]
                if "profile" in b:
                    row["profile"] = b["profile"]
                got = shardrt_run(a.shardrt, engine, names, inputs, tmp).astype(np.float32)
                want = ref.float().cpu().numpy()
                err = np.abs(got - want).max() / max(1e-6, np.abs(want).max())
                row["max_err_rel_to_max"] = float(err)
            if flops:
                row["shardrt_tflops"] = flops / row["shardrt_ms"] / 1e9
            del model, inputs, ref
            torch.cuda.empty_cache()
        except Exception as e:  # one workload's failure must not hide the others' figures
            row["error"] = str(e)[-1500:]
            log("ERROR", wname, row["error"])
        log(wname, {k: v for k, v in row.items() if k not in ("workload", "profile")})
    with open(os.path.join(a.out, "gpu_peers.json"), "w") as f:
        json.dump(res, f, indent=1)
    lines = ["| workload | eager ms | compile ms | reduce-overhead ms | shardrt ms | vs eager | vs best compile | "
             "build s / compile first call s | max err |", "|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        if "shardrt_ms" not in r:
            lines.append("| %s | error: %s |" % (r["workload"], r.get("error", "?").splitlines()[-1][:120]))
            continue
        best = min([r[k] for k in ("compile_ms_default", "compile_ms_reduce-overhead") if k in r] or [float("nan")])
        first = min([r[k] for k in r if k.startswith("compile_first_call_s")] or [float("nan")])
        lines.append("| %s | %.3f | %s | %s | %.3f | %.2f | %.2f | %.1f / %.1f | %.1e |" % (
            r["workload"], r["eager_ms"], "%.3f" % r["compile_ms_default"] if "compile_ms_default" in r else "-",
            "%.3f" % r["compile_ms_reduce-overhead"] if "compile_ms_reduce-overhead" in r else "-",
            r["shardrt_ms"], r["shardrt_ms"] / r["eager_ms"], r["shardrt_ms"] / best, r["shardrt_build_s"], first,
            r["max_err_rel_to_max"]))
    table = "\n".join(lines)
    with open(os.path.join(a.out, "gpu_peers.md"), "w") as f:
        f.write("%s, %s, torch %s\npeaks: %s\n\n%s\n" % (res["date"], res["gpu"], res["torch"], res["peaks"], table))
    for r in res["rows"]:
        if "profile" in r:
            log("\n== profile", r["workload"], "==\n" + r["profile"])
    log("\n" + table)


if __name__ == "__main__":
    main()
