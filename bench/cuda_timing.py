# Timing helpers shared by the GPU benchmark scripts: the peers' method (median of
# CUDA-event-timed calls after warm-up).
import torch


def log(*a):
    print(*a, flush=True)


def timed(fn, warm=5, iters=30):
    """Median milliseconds of `iters` calls of fn, each between two CUDA events."""
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        ts.append(s.elapsed_time(e))
    ts.sort()
    return ts[len(ts) // 2]
