#!/usr/bin/env python3
"""Side-by-side CPU benchmark: shardrt against ONNX Runtime and PyTorch eager, in one run
on one machine, on the same inputs.

Workloads: GPT-2 (124M shape: 12 layers, 768 wide, 12 heads, vocab 50257) and BERT-base
shape (12 layers, 768 wide, 12 heads), random weights, fp32. Each model is exported once
with torch's dynamo ONNX exporter; ONNX Runtime runs that file with all its graph
optimisations; shardrt builds an engine from it; torch runs the module itself.

    python bench/cpu_peers.py --shardrt build/shardrt [--shapes 1x128,4x128] [--runs 20]

Prints one table (median latency in ms and the ratio to ONNX Runtime, one row per model
and input shape) and checks that the three agree. Each model is exported once (with
dynamic batch and sequence dims) and built once into an engine whose profile covers every
shape asked for. --export-dir keeps the exported files between runs (reused when present).
All three run on every core of the machine (os.cpu_count() threads).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch


def median_ms(fn, runs, warmup=3):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


class LogitsOnly(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids):
        return self.m(input_ids=input_ids, use_cache=False, return_dict=False)[0]


def make_model(name):
    import transformers as tf
    torch.manual_seed(0)
    if name == "gpt2-124M":
        cfg = tf.GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)
        m = tf.GPT2LMHeadModel(cfg)
    else:
        cfg = tf.BertConfig(num_hidden_layers=12, hidden_size=768, num_attention_heads=12,
                            intermediate_size=3072, vocab_size=30522)
        m = tf.BertModel(cfg, add_pooling_layer=False)
    m.config._attn_implementation = "eager"
    return LogitsOnly(m.eval()).eval()


def shardrt_time(bin_, engine, ids_path, out_dir, batch, seq, runs):
    """Median latency from `shardrt bench` (times ExecutionContext::run only)."""
    r = subprocess.run([bin_, "bench", engine, "--shapes", f"input_ids:{batch}x{seq}",
                        "--iterations", str(runs), "--warmup", "3", "--min-seconds", "0"],
                       check=True, capture_output=True, text=True)
    line = [l for l in r.stdout.splitlines() if l.startswith("runs")][0]
    p50 = float(line.split("p50 ")[1].split()[0])
    subprocess.run([bin_, "run", engine, "--input", f"input_ids={ids_path}", "--output-dir", out_dir],
                   check=True, capture_output=True)
    return p50


def parse_shapes(text):
    out = []
    for item in text.split(","):
        b, sq = item.lower().split("x")
        out.append((int(b), int(sq)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shardrt", default="build/shardrt")
    ap.add_argument("--shapes", default="1x128", help="batch x seq, comma-separated (e.g. 1x128,4x128)")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--models", default="gpt2-124M,bert-base")
    ap.add_argument("--export-dir", default=None,
                    help="keep exported ONNX files here and reuse them when present")
    a = ap.parse_args()
    shapes = parse_shapes(a.shapes)
    threads = os.cpu_count()
    torch.set_num_threads(threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        exp_dir = a.export_dir or tmp
        os.makedirs(exp_dir, exist_ok=True)
        for name in a.models.split(","):
            model = make_model(name)
            onnx_path = os.path.join(exp_dir, name + ".onnx")
            if not (a.export_dir and os.path.exists(onnx_path)):
                # The example batch is at least 2: torch.export specialises a dim of size 1.
                ids0 = torch.randint(0, 1000, (max(2, shapes[0][0]), shapes[0][1]), dtype=torch.int64)
                torch.onnx.export(model, (ids0,), onnx_path, dynamo=True, input_names=["input_ids"],
                                  output_names=["out"],
                                  dynamic_shapes={"input_ids": {0: torch.export.Dim("batch"),
                                                                1: torch.export.Dim("seq")}})
            # One engine for all shapes: its profile spans 1x1 .. the largest batch and seq.
            bmax, smax = max(b for b, _ in shapes), max(s for _, s in shapes)
            engine = os.path.join(tmp, name + ".engine")
            t0 = time.perf_counter()
            subprocess.run([a.shardrt, "build", onnx_path, "-o", engine, "--shapes",
                            f"input_ids:1x1/{shapes[0][0]}x{shapes[0][1]}/{bmax}x{smax}"], check=True,
                           stderr=subprocess.DEVNULL)
            build_s = time.perf_counter() - t0

            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.intra_op_num_threads = threads
            sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
            for batch, seq in shapes:
                torch.manual_seed(batch * 1000 + seq)
                ids = torch.randint(0, 1000, (batch, seq), dtype=torch.int64)
                ids_path = os.path.join(tmp, "ids.npy")
                np.save(ids_path, ids.numpy())
                out_dir = os.path.join(tmp, "out")
                t_sh = shardrt_time(a.shardrt, engine, ids_path, out_dir, batch, seq, a.runs)
                y_sh = np.load(os.path.join(out_dir, "out.npy"))

                feed = {"input_ids": ids.numpy()}
                t_ort = median_ms(lambda: sess.run(None, feed), a.runs)
                y_ort = sess.run(None, feed)[0]

                with torch.inference_mode():
                    t_pt = median_ms(lambda: model(ids), a.runs)
                    y_pt = model(ids).numpy()
                # fp32 through 12 layers with differently ordered sums: agreement to ~1e-3 of
                # the output's scale is what independent fp32 implementations reach.
                scale = float(np.abs(y_pt).max())
                err_sh = float(np.abs(y_sh - y_pt).max()) / scale
                err_ort = float(np.abs(y_ort - y_pt).max()) / scale
                rows.append((name, f"{batch}x{seq}", t_sh, t_ort, t_pt, build_s, err_sh, err_ort))
            del sess
    print(f"\nCPU: {threads} threads, fp32, median of {a.runs} runs (shardrt: `shardrt bench` p50)")
    print(f"{'model':<12} {'shape':>7} {'shardrt ms':>11} {'ORT ms':>9} {'torch ms':>9} {'shardrt/ORT':>12} "
          f"{'shardrt/torch':>14} {'build s':>8} {'rel err shardrt':>16} {'rel err ORT':>12}")
    ok = True
    for name, shp, t_sh, t_ort, t_pt, b, e1, e2 in rows:
        print(f"{name:<12} {shp:>7} {t_sh:11.2f} {t_ort:9.2f} {t_pt:9.2f} {t_sh / t_ort:12.2f} "
              f"{t_sh / t_pt:14.2f} {b:8.1f} {e1:16.2e} {e2:12.2e}")
        ok &= e1 < 1e-3
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
