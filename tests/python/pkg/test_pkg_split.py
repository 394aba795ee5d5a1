"""shardrt.distributed.split_between_processes against accelerate's
PartialState.split_between_processes on the same items, for several world sizes."""
import pytest
import torch

from pkg_util import import_shardrt

shardrt = import_shardrt()
from shardrt.distributed import split_between_processes  # noqa: E402

accelerate_state = pytest.importorskip("accelerate.state")


class _FakeState:
    """What PartialState.split_between_processes reads of its instance."""

    def __init__(self, rank, world):
        self.process_index, self.num_processes, self.device = rank, world, torch.device("cpu")


def accelerate_split(items, rank, world, apply_padding=False):
    fn = accelerate_state.PartialState.split_between_processes
    with fn(_FakeState(rank, world), items, apply_padding=apply_padding) as out:
        return out


def ours(items, rank, world, apply_padding=False):
    with split_between_processes(items, apply_padding=apply_padding, rank=rank, world_size=world) as out:
        return out


@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 8, 10])
@pytest.mark.parametrize("padding", [False, True])
def test_lists_match_accelerate(world, n, padding):
    if padding and n == 0:
        pytest.skip("accelerate pads with inputs[-1]: an empty list has none")
    items = [f"prompt {i}" for i in range(n)]
    for rank in range(world):
        assert ours(list(items), rank, world, padding) == accelerate_split(list(items), rank, world, padding)


@pytest.mark.parametrize("world", [2, 3, 4])
def test_tensors_and_dicts_match_accelerate(world):
    t = torch.arange(10 * 3).reshape(10, 3)
    d = {"ids": list(range(7)), "mask": torch.arange(7)}
    for rank in range(world):
        assert torch.equal(ours(t, rank, world), accelerate_split(t, rank, world))
        a = ours(dict(d), rank, world)
        b = accelerate_split(dict(d), rank, world)
        assert a["ids"] == b["ids"] and torch.equal(a["mask"], b["mask"])


def test_tensor_padding_repeats_the_last_row():
    # accelerate pads tensors through a collective (pad_across_processes); ours pads locally
    # to the same length by repeating the last row, as it does for lists.
    t = torch.arange(5)
    assert ours(t, 0, 2, True).tolist() == [0, 1, 2]
    assert ours(t, 1, 2, True).tolist() == [3, 4, 4]


def test_unequal_dict_lengths_refused():
    with pytest.raises(ValueError, match="same length"):
        ours({"a": [1, 2], "b": [1]}, 0, 2)


def test_world_from_the_environment(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with split_between_processes(["A", "B", "C"]) as mine:
        assert mine == ["C"]
