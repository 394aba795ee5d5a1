"""shardrt.save / shardrt.load: a compiled module survives the round trip (same outputs, same
output structure), and per-rank file names in distributed runs."""
import pytest
import torch

from pkg_util import import_shardrt

shardrt = import_shardrt()
from shardrt._dist import rank_file  # noqa: E402


class TwoOut(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        y = self.fc(x)
        return {"y": y, "sig": torch.sigmoid(y)}


def test_round_trip(tmp_path):
    torch.manual_seed(0)
    m = TwoOut().eval()
    x = torch.randn(3, 8)
    trt = shardrt.compile(m, arg_inputs=[shardrt.Input((1, 8), (3, 8), (8, 8), name="x")])
    path = tmp_path / "two.engine"
    written = shardrt.save(trt, path)
    assert written == path and path.is_file() and (tmp_path / "two.engine.meta.json").is_file()
    again = shardrt.load(path)
    a, b = trt(x), again(x)
    assert set(b) == {"y", "sig"}
    assert torch.equal(a["y"], b["y"]) and torch.equal(a["sig"], b["sig"])  # the same engine
    assert again(torch.randn(8, 8))["y"].shape == (8, 4)  # the dynamic profile came along


def test_bare_engine_file_loads_with_binding_order(tmp_path):
    torch.manual_seed(0)
    trt = shardrt.compile(torch.nn.Linear(4, 2).eval(), arg_inputs=[torch.randn(2, 4)])
    p = tmp_path / "bare.engine"
    trt.engine.save(str(p))  # no .meta.json
    x = torch.randn(2, 4)
    assert torch.equal(shardrt.load(p)(x), trt(x))


def test_rank_file_names(tmp_path, monkeypatch):
    assert rank_file("out/model.engine", 0, 1).as_posix() == "out/model.engine"
    assert rank_file("out/model.engine", 1, 4).as_posix() == "out/model_rank1_of_4.engine"
    assert rank_file("model", 0, 2).as_posix() == "model_rank0_of_2.engine"
    # A torchrun-like environment without torch.distributed: the files are per rank.
    torch.manual_seed(0)
    trt = shardrt.compile(torch.nn.Linear(4, 2).eval(), arg_inputs=[torch.randn(2, 4)])
    for r in range(2):
        monkeypatch.setenv("RANK", str(r))
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert shardrt.save(trt, tmp_path / "m.engine").name == f"m_rank{r}_of_2.engine"
    monkeypatch.setenv("RANK", "1")
    assert shardrt.load(tmp_path / "m.engine")(torch.ones(2, 4)).shape == (2, 2)
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(FileNotFoundError, match="m_rank1_of_3.engine.*found: m_rank0_of_2.engine"):
        shardrt.load(tmp_path / "m.engine")
