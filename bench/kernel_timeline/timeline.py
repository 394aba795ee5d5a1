# A decode step's kernels on the GPU's timeline, from cupti_trace.cpp's record of a
# shardrt_decode_bench run. The replayed graph's kernels are cut into steps (a step starts at
# its first kernel, `--first`, GPT-2's embedding by default); for each kernel of a step the
# medians over the steps of its critical-path share (its end minus the previous kernel's end:
# with programmatic dependent launch kernels overlap, so durations do not add up), its
# duration and its start relative to the previous kernel's end; then the shares summed by
# kernel. The first steps (warm-up) are left out.
#
#   python3 timeline.py TRACE.tsv [--first positional_embedding]
import argparse
import collections
import re
import shutil
import statistics
import subprocess


def short_names(names):
    """Demangled kernel names without namespaces and arguments (template arguments kept)."""
    uniq = sorted(set(names))
    out = dict(zip(uniq, uniq))
    if shutil.which("c++filt"):
        dem = subprocess.run(["c++filt"], input="\n".join(uniq), capture_output=True, text=True).stdout.split("\n")
        for raw, d in zip(uniq, dem):
            m = re.search(r"(\w+)(<.*>)?\(", d)
            if m:
                targs = re.sub(r"\(anonymous namespace\)::|shardrt::cuda::\w*::|shardrt::cuda::", "", m.group(2) or "")
                out[raw] = m.group(1) + targs
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--first", default="positional_embedding", help="a step's first kernel (substring of its name)")
    ap.add_argument("--skip", type=int, default=5, help="warm-up steps left out")
    a = ap.parse_args()
    rows = []
    for line in open(a.trace):
        s, e, node, gx, bx, name = line.rstrip("\n").split("\t", 5)
        if int(node) != 0:  # graph nodes only: the replayed step
            rows.append((int(s), int(e), int(gx), name))
    rows.sort()
    starts = [i for i, r in enumerate(rows) if a.first in r[3]]
    steps = [rows[i:j] for i, j in zip(starts, starts[1:])]
    n = collections.Counter(len(s) for s in steps).most_common(1)[0][0]
    steps = [s for s in steps if len(s) == n][a.skip:]
    if not steps:
        raise SystemExit("no complete steps in the trace")
    names = short_names([r[3] for r in steps[0]])
    span = statistics.median(s[-1][1] - s[0][0] for s in steps) / 1e3
    print(f"{len(steps)} steps of {n} kernels; first start to last end: median {span:.1f} us")
    crit, dur, lead = (collections.defaultdict(list) for _ in range(3))
    for s in steps:
        for i, (st, en, _, _) in enumerate(s):
            prev_end = s[i - 1][1] if i else st
            crit[i].append(en - prev_end)
            dur[i].append(en - st)
            lead[i].append(st - prev_end)
    by_kernel = collections.defaultdict(lambda: [0, 0.0, 0.0])
    print("  #   share  duration  start-prev.end  grid  kernel (us)")
    for i in range(n):
        c, d, l = (statistics.median(x[i]) / 1e3 for x in (crit, dur, lead))
        nm = names[steps[0][i][3]]
        print(f"{i:3d}  {c:6.2f}  {d:8.2f}  {l:14.2f}  {steps[0][i][2]:5d}  {nm}")
        k = by_kernel[nm]
        k[0] += 1
        k[1] += c
        k[2] += d
    print("by kernel: count, summed share, summed duration (us)")
    for nm, (cnt, c, d) in sorted(by_kernel.items(), key=lambda kv: -kv[1][1]):
        print(f"  {cnt:3d}  {c:7.1f}  {d:7.1f}  {nm}")


if __name__ == "__main__":
    main()
