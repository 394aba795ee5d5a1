"""shardrt.distributed: data-parallel splitting (accelerate's split_between_processes) and
the communicators that run an engine's collective ops (torch.distributed, MPI)."""
from ._dist import (default_communicator, rank_and_world, rank_file, split_between_processes,  # noqa: F401
                    torch_communicator)

__all__ = ["default_communicator", "rank_and_world", "rank_file", "split_between_processes", "torch_communicator"]
