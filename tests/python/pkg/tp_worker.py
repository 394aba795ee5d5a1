"""One rank of the two-process package tests (test_pkg_distributed.py), launched by
`torchrun --nproc_per_node 2 tp_worker.py torch OUT` or `mpirun -n 2 python tp_worker.py mpi OUT`.

Each rank runs, through its communicator (torch.distributed/gloo callbacks, or MPI):
1. the MLP 16 -> 64 -> 8 built with the Network API and sharded by a plan (fc1 colwise,
   fc2 rowwise), the same for every rank;
2. a hand-written tensor-parallel network: this rank's slices of the weights and an explicit
   shardrt.AllReduce (and an AllGather), through a dp=1 x tp=2 mesh made with split();
and writes its outputs and the torch reference to OUT/rank<r>.pt.
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from pkg_util import import_shardrt  # noqa: E402

shardrt = import_shardrt()
_C = shardrt._C


def weights():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(64, 16, generator=g) / 4, torch.randn(64, generator=g) / 10,
            torch.randn(8, 64, generator=g) / 8, torch.randn(8, generator=g) / 10)


def full_network(w1, b1, w2, b2):
    net = _C.Network("mlp")
    x = net.input("x", "float32", [4, 16])
    (h,) = net.op("shardrt.Linear", [x, net.weight("fc1.weight", w1), net.weight("fc1.bias", b1)],
                  {"trans_b": 1, "activation": "relu"}, name="fc1")
    (y,) = net.op("shardrt.Linear", [h, net.weight("fc2.weight", w2), net.weight("fc2.bias", b2)],
                  {"trans_b": 1, "activation": "none"}, name="fc2")
    net.output(y, "y")
    return net


def manual_network(w1, b1, w2, b2, rank, world):
    rows = slice(rank * 64 // world, (rank + 1) * 64 // world)
    net = _C.Network("mlp_tp")
    x = net.input("x", "float32", [4, 16])
    (h,) = net.op("shardrt.Linear", [x, net.weight("w1", w1[rows].contiguous()), net.weight("b1", b1[rows].contiguous())],
                  {"trans_b": 1, "activation": "relu"})
    (p,) = net.op("shardrt.Linear", [h, net.weight("w2", w2[:, rows].contiguous())], {"trans_b": 1})
    (s,) = net.op("shardrt.AllReduce", [p], {"reduce": "sum", "group": "tp"})
    (y,) = net.op("Add", [s, net.weight("b2", b2)])
    (hg,) = net.op("shardrt.AllGather", [h], {"axis": 1, "group": "tp"})  # the full hidden layer
    net.output(y, "y")
    net.output(hg, "h")
    return net


def main():
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "torch":
        import torch.distributed as dist
        dist.init_process_group("gloo")
        comm = shardrt.distributed.torch_communicator()
    else:
        comm = _C.Communicator.from_mpi()
    rank, world = comm.rank, comm.size
    w1, b1, w2, b2 = weights()
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    h_ref = torch.relu(x @ w1.T + b1)
    y_ref = h_ref @ w2.T + b2

    plan = '{"tp_plan": {"fc1": "colwise", "fc2": "rowwise"}}'
    engine = _C.build_rank_engine(full_network(w1, b1, w2, b2), plan, tp=world, tp_index=rank)
    y_plan = torch.from_dlpack(_C.ExecutionContext(engine, comm=comm).run({"x": x})["y"]).clone()

    mesh = _C.Communicator.mesh(comm, dp=1, tp=world)  # split() through the callbacks / MPI
    ctx = _C.ExecutionContext(_C.build_engine(manual_network(w1, b1, w2, b2, rank, world)), comm=mesh)
    outs = ctx.run({"x": x})
    y_manual = torch.from_dlpack(outs["y"]).clone()
    h_gathered = torch.from_dlpack(outs["h"]).clone()

    single = _C.ExecutionContext(_C.build_engine(full_network(w1, b1, w2, b2)))
    y_single = torch.from_dlpack(single.run({"x": x})["y"]).clone()
    comm.barrier()
    torch.save({"rank": rank, "world": world, "backend": comm.backend, "y_plan": y_plan, "y_manual": y_manual,
                "h_gathered": h_gathered, "h_ref": h_ref, "y_ref": y_ref, "y_single": y_single},
               os.path.join(out, f"rank{rank}.pt"))
    if mode == "torch":
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
