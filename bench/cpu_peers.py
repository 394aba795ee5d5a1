#!/usr/bin/env python3
"""Side-by-side CPU benchmark: shardrt against ONNX Runtime and PyTorch eager, in one run
on one machine, on the same inputs.

Workloads: GPT-2 (124M shape: 12 layers, 768 wide, 12 heads, vocab 50257) and BERT-base
shape (12 layers, 768 wide, 12 heads), random weights, fp32. Each model is exported once
with torch's dynamo ONNX exporter; ONNX Runtime runs that file with all its graph
optimisations; shardrt builds an engine from it; torch runs the module itself.

    python bench/cpu_peers.py --shardrt build/shardrt [--batch 1 --seq 128] [--runs 20]

Prints one table (median latency in ms and the ratio to ONNX Runtime) and checks that the
three agree.
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
    return LogitsOnly(m.eval())


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shardrt", default="build/shardrt")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--models", default="gpt2-124M,bert-base")
    a = ap.parse_args()
    threads = os.cpu_count()
    torch.set_num_threads(threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            model = make_model(name)
            ids = torch.randint(0, 1000, (a.batch, a.seq), dtype=torch.int64)
            onnx_path = os.path.join(tmp, name + ".onnx")
            torch.onnx.export(model, (ids,), onnx_path, dynamo=True, input_names=["input_ids"],
                              output_names=["out"],
                              dynamic_shapes={"input_ids": {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq")}})
            ids_path = os.path.join(tmp, "ids.npy")
            np.save(ids_path, ids.numpy())
            engine = os.path.join(tmp, name + ".engine")
            t0 = time.perf_counter()
            subprocess.run([a.shardrt, "build", onnx_path, "-o", engine, "--shapes",
                            f"input_ids:1x1/{a.batch}x{a.seq}/{a.batch}x{a.seq}"], check=True,
                           stderr=subprocess.DEVNULL)
            build_s = time.perf_counter() - t0
            out_dir = os.path.join(tmp, "out")
            t_sh = shardrt_time(a.shardrt, engine, ids_path, out_dir, a.batch, a.seq, a.runs)
            y_sh = np.load(os.path.join(out_dir, "out.npy"))

            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.intra_op_num_threads = threads
            sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
            feed = {"input_ids": ids.numpy()}
            t_ort = median_ms(lambda: sess.run(None, feed), a.runs)
            y_ort = sess.run(None, feed)[0]

            with torch.inference_mode():
                t_pt = median_ms(lambda: model(ids), a.runs)
                y_pt = model(ids).numpy()
            # fp32 through 12 layers with differently ordered sums: agreement to ~1e-3 of the
            # output's scale is what independent fp32 implementations reach.
            scale = float(np.abs(y_pt).max())
            err_sh = float(np.abs(y_sh - y_pt).max()) / scale
            err_ort = float(np.abs(y_ort - y_pt).max()) / scale
            rows.append((name, t_sh, t_ort, t_pt, build_s, err_sh, err_ort))
    print(f"\nCPU: {threads} threads, batch {a.batch} x seq {a.seq}, fp32, median of {a.runs} runs")
    print(f"{'model':<12} {'shardrt ms':>11} {'ORT ms':>9} {'torch ms':>9} {'shardrt/ORT':>12} "
          f"{'shardrt/torch':>14} {'build s':>8} {'rel err shardrt':>16} {'rel err ORT':>12}")
    ok = True
    for name, t_sh, t_ort, t_pt, b, e1, e2 in rows:
        print(f"{name:<12} {t_sh:11.2f} {t_ort:9.2f} {t_pt:9.2f} {t_sh / t_ort:12.2f} {t_sh / t_pt:14.2f} "
              f"{b:8.1f} {e1:16.2e} {e2:12.2e}")
        ok &= e1 < 1e-3
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
