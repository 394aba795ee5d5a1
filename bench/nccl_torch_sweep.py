# NCCL's own collective figures through torch.distributed, for the table beside
# shardrt_collective_bench (same sizes, same definitions: fp32; bytes of the all-reduce's
# buffer, of all-gather's output, of reduce-scatter's input; the slowest rank's time per call
# over a CUDA-event-timed loop; busbw as nccl-tests computes it).
#
#   torchrun --nproc_per_node 2 bench/nccl_torch_sweep.py [--min-bytes 8] [--max-bytes 1073741824] [--step 4]
import argparse
import json
import os

import torch
import torch.distributed as dist


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--min-bytes", type=int, default=8)
    ap.add_argument("--max-bytes", type=int, default=1 << 30)
    ap.add_argument("--step", type=int, default=4)
    ap.add_argument("--ops", default="all_reduce,all_gather,reduce_scatter")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local)
    dist.init_process_group("nccl", device_id=torch.device("cuda", local))
    n, rank = dist.get_world_size(), dist.get_rank()
    send = torch.zeros(a.max_bytes // 4, device="cuda")
    recv = torch.zeros(a.max_bytes // 4, device="cuda")
    rows = []
    if rank == 0 and not a.json:
        print(f"{n} ranks, torch {torch.__version__}, NCCL {'.'.join(map(str, torch.cuda.nccl.version()))}")
        print(f"{'op':15s} {'bytes':>12s} {'time_us':>11s} {'algbw_GBs':>10s} {'busbw_GBs':>10s}")
    for op in a.ops.split(","):
        b = a.min_bytes
        while b <= a.max_bytes:
            total = b // 4 // n * n
            if total < n:
                b *= a.step
                continue
            x, y = send[:total], recv[:total]
            if op == "all_reduce":
                call = lambda: dist.all_reduce(x)  # noqa: E731
            elif op == "all_gather":
                call = lambda: dist.all_gather_into_tensor(y, x[:total // n])  # noqa: E731
            else:
                call = lambda: dist.reduce_scatter_tensor(y[:total // n], x)  # noqa: E731
            iters = 200 if b <= 1 << 20 else 40 if b <= 1 << 26 else 10
            for _ in range(5):
                call()
            torch.cuda.synchronize()
            dist.barrier()
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            for _ in range(iters):
                call()
            e1.record()
            torch.cuda.synchronize()
            t = torch.tensor([1e3 * e0.elapsed_time(e1) / iters], device="cuda", dtype=torch.float64)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            us = t.item()
            size = total * 4
            algbw = size / (us * 1e-6) / 1e9
            busbw = algbw * (2 * (n - 1) / n if op == "all_reduce" else (n - 1) / n)
            rows.append({"op": op, "bytes": size, "time_us": us, "algbw_GBs": algbw, "busbw_GBs": busbw})
            if rank == 0 and not a.json:
                print(f"{op:15s} {size:12d} {us:11.2f} {algbw:10.2f} {busbw:10.2f}", flush=True)
            b *= a.step
    if rank == 0 and a.json:
        print(json.dumps(rows))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
