"""Distributed runs from Python: which rank this process is, the world communicator
(torch.distributed through Python callbacks, or MPI), data-parallel splitting as
accelerate's PartialState does it, and the per-rank file names of saved engines."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any


def _torch_dist():
    try:
        import torch.distributed as dist
    except ImportError:
        return None
    return dist if dist.is_available() and dist.is_initialized() else None


def rank_and_world() -> tuple[int, int]:
    """(rank, world size): torch.distributed when initialised, else the launcher's environment
    (torchrun: RANK/WORLD_SIZE; mpirun: OMPI_COMM_WORLD_*; PMI/Slurm), else (0, 1)."""
    dist = _torch_dist()
    if dist is not None:
        return dist.get_rank(), dist.get_world_size()
    for r, w in (("RANK", "WORLD_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
                 ("PMI_RANK", "PMI_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
        if r in os.environ and w in os.environ:
            return int(os.environ[r]), int(os.environ[w])
    return 0, 1


def _launched_by_mpi() -> bool:
    return any(k in os.environ for k in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"))


# --- torch.distributed as a shardrt communicator ---------------------------------------

_REDUCE = {"sum": "SUM", "max": "MAX", "min": "MIN", "prod": "PRODUCT"}


def torch_communicator(group: Any = None, name: str = "world"):
    """A shardrt Communicator whose collectives run through torch.distributed (`group`, or
    the default group). torch.distributed must be initialised (torchrun + init_process_group;
    gloo for CPU tensors)."""
    import torch
    import torch.distributed as dist

    from . import _C

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("shardrt: torch.distributed is not initialised (call "
                           "torch.distributed.init_process_group('gloo') first)")
    rank = dist.get_rank(group)
    size = dist.get_world_size(group)

    def global_rank(r: int) -> int:
        return r if group is None else dist.get_global_rank(group, r)

    def all_reduce(send, recv, op):
        s, r = torch.from_dlpack(send), torch.from_dlpack(recv)
        if s.data_ptr() != r.data_ptr():
            r.copy_(s)
        if r.dtype in (torch.float16, torch.bfloat16):
            # shardrt's contract: reduce in fp32, round once.
            tmp = r.float()
            dist.all_reduce(tmp, op=getattr(dist.ReduceOp, _REDUCE[op]), group=group)
            r.copy_(tmp)
        elif r.dtype == torch.bool:
            # bool: sum/max are "or", prod/min are "and".
            tmp = r.to(torch.uint8)
            dist.all_reduce(tmp, op=dist.ReduceOp.MAX if op in ("sum", "max") else dist.ReduceOp.MIN, group=group)
            r.copy_(tmp.bool())
        else:
            dist.all_reduce(r, op=getattr(dist.ReduceOp, _REDUCE[op]), group=group)

    def all_gather(send, recv, counts):
        # As bytes: every dtype goes through, whatever the backend supports.
        s = torch.from_dlpack(send).view(torch.uint8)
        r = torch.from_dlpack(recv).view(torch.uint8)
        item = s.numel() // max(counts[rank], 1) if counts[rank] else r.numel() // max(sum(counts), 1)
        nbytes = [c * item for c in counts]
        if len(set(nbytes)) == 1:
            dist.all_gather(list(r.split(nbytes)), s, group=group)
            return
        m = max(nbytes)
        padded = torch.zeros(m, dtype=torch.uint8)
        padded[: s.numel()] = s
        bufs = [torch.empty(m, dtype=torch.uint8) for _ in counts]
        dist.all_gather(bufs, padded, group=group)
        for piece, buf, n in zip(r.split(nbytes), bufs, nbytes):
            piece.copy_(buf[:n])

    def broadcast(buf, root):
        dist.broadcast(torch.from_dlpack(buf).view(torch.uint8), src=global_rank(root), group=group)

    def barrier():
        dist.barrier(group=group)

    def split(color, key, sub_name):
        # Every rank learns every (color, key, rank); each group is made by every rank (as
        # new_group requires), in the same order.
        me = (color, key, rank)
        everyone: list = [None] * size
        dist.all_gather_object(everyone, me, group=group)
        mine = None
        for c in sorted({e[0] for e in everyone}):
            members = [global_rank(r) for (k, r) in sorted((k, r) for (cc, k, r) in everyone if cc == c)]
            # torch numbers a group's ranks in world-rank order: keys that reorder ranks are
            # not honoured (the mesh's splits never do).
            g = dist.new_group(members)
            if c == color:
                mine = g
        return torch_communicator(mine, name=sub_name)

    return _C.Communicator.from_callbacks(rank, size, all_reduce, all_gather, broadcast, barrier=barrier,
                                          split=split, backend="torch.distributed", name=name)


def default_communicator():
    """The world communicator of this process: torch.distributed when it is initialised (or
    torchrun launched us: gloo is initialised here), MPI under mpirun/srun, else one rank."""
    from . import _C

    torchrun = all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR"))
    if _torch_dist() is None and torchrun:
        import torch.distributed as dist
        dist.init_process_group("gloo")
    if _torch_dist() is not None:
        return torch_communicator()
    if _launched_by_mpi():
        if not _C.with_mpi:
            raise RuntimeError("shardrt: launched by mpirun, but this shardrt was built without MPI")
        return _C.Communicator.from_mpi()
    return _C.Communicator.single()


# --- data parallelism ---------------------------------------------------------------------

def _split_slice(length: int, rank: int, world: int) -> tuple[int, int, int, int]:
    per, extras = divmod(length, world)
    start = rank * per + min(rank, extras)
    end = start + per + (1 if rank < extras else 0)
    return start, end, per, extras


@contextlib.contextmanager
def split_between_processes(inputs: Any, apply_padding: bool = False, *, rank: int | None = None,
                            world_size: int | None = None):
    """This process's contiguous share of `inputs` (list, tuple, torch.Tensor, or a dict of
    those with equal lengths), as accelerate's PartialState.split_between_processes: the
    first `len % world` processes take one more item. With apply_padding, every process gets
    the same count by repeating the last item of `inputs` (for tensors: the last row,
    computed locally rather than through a collective).

        with shardrt.distributed.split_between_processes(prompts) as mine: ...
    """
    r, w = rank_and_world()
    rank = r if rank is None else rank
    world = w if world_size is None else world_size
    if world == 1:
        yield inputs
        return
    length = len(inputs)
    if isinstance(inputs, dict):
        length = len(inputs[next(iter(inputs))])
        if not all(len(v) == length for v in inputs.values()):
            raise ValueError("All values in the dictionary must have the same length")
    start, end, per, extras = _split_slice(length, rank, world)
    target = per + (1 if extras > 0 else 0)

    def split_values(x):
        if isinstance(x, dict):
            return {k: split_values(v) for k, v in x.items()}
        try:
            import torch
            is_tensor = isinstance(x, torch.Tensor)
        except ImportError:
            is_tensor = False
        if not (is_tensor or isinstance(x, (list, tuple))):
            return x  # as accelerate: anything else is handed over whole
        result = x[start:end]
        if apply_padding:
            if is_tensor:
                import torch
                missing = target - result.shape[0]
                if missing > 0:
                    result = torch.cat([result, x[-1:].expand(missing, *x.shape[1:])])
            else:
                result = result + type(result)([x[-1]]) * (target - len(result))
        return result

    yield split_values(inputs)


# --- per-rank engine files --------------------------------------------------------------------

def rank_file(path: str | os.PathLike, rank: int, world: int) -> Path:
    """`path` itself for one process; `<stem>_rank{r}_of_{w}.engine` beside it otherwise."""
    p = Path(path)
    if world <= 1:
        return p
    stem = p.name[: -len(p.suffix)] if p.suffix else p.name
    return p.with_name(f"{stem}_rank{rank}_of_{world}.engine")


# --- save / load of compiled modules ------------------------------------------------------------

_META_SUFFIX = ".meta.json"


def save(compiled: Any, path: str | os.PathLike) -> Path:
    """Writes a compiled module's engine to `path` (one process) or, in a distributed run
    (torch.distributed or MPI), this rank's engine to `<stem>_rank{r}_of_{w}.engine` beside
    `path`; the module's calling convention goes to the same name + '.meta.json'. Returns the
    engine file written."""
    import json

    from torch.utils import _pytree as pytree

    from ._compile import CompiledModule

    if not isinstance(compiled, CompiledModule):
        raise TypeError(f"shardrt.save: expected a module returned by shardrt.compile, got {type(compiled).__name__}")
    rank, world = rank_and_world()
    f = rank_file(path, rank, world)
    f.parent.mkdir(parents=True, exist_ok=True)
    compiled.engine.save(str(f))
    spec = None
    if compiled.out_spec is not None:
        try:
            spec = pytree.treespec_dumps(compiled.out_spec)
        except Exception:  # a container type pytree cannot serialise: outputs load as a tuple
            spec = None
    meta = {"format": 1, "input_names": compiled.input_names, "output_names": compiled.output_names,
            "out_spec": spec, "device": compiled.device, "arg_is_tensor": compiled.arg_is_tensor,
            "kwarg_names": compiled.kwarg_names, "rank": rank, "world_size": world}
    Path(str(f) + _META_SUFFIX).write_text(json.dumps(meta, indent=1))
    return f


def load(path: str | os.PathLike, device: str | None = None, comm: Any = None, verify_checksum: bool = True):
    """Loads what shardrt.save wrote (this rank's file in a distributed run). Engines with
    collective ops get the world communicator (default_communicator()) unless `comm` is given."""
    import json

    from torch.utils import _pytree as pytree

    from . import _C
    from ._compile import CompiledModule, _run_device, compiled_uses_collectives

    rank, world = rank_and_world()
    f = rank_file(path, rank, world)
    if not f.is_file():
        p = Path(path)
        stem = p.name[: -len(p.suffix)] if p.suffix else p.name
        found = sorted(x.name for x in p.parent.glob(f"{stem}*.engine")) if p.parent.is_dir() else []
        raise FileNotFoundError(f"shardrt.load: no engine {f} for rank {rank} of {world}"
                                + (f" (found: {', '.join(found)})" if found else ""))
    meta_path = Path(str(f) + _META_SUFFIX)
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    engine = _C.Engine.load(str(f), verify_checksum)
    if meta is None:  # a bare engine file (from the CLI or Engine.save): its bindings in order
        meta = {"input_names": [b["name"] for b in engine.inputs], "output_names": [b["name"] for b in engine.outputs],
                "out_spec": None, "device": "cpu", "arg_is_tensor": [True] * len(engine.inputs), "kwarg_names": []}
    spec = pytree.treespec_loads(meta["out_spec"]) if meta.get("out_spec") else None
    dev = device or meta.get("device") or "cpu"
    if comm is None and world > 1 and compiled_uses_collectives(engine):
        comm = default_communicator()
    return CompiledModule(engine, meta["input_names"], meta["output_names"], spec, dev, meta["arg_is_tensor"],
                          meta.get("kwarg_names", []), comm=comm, run_device=_run_device(dev))
