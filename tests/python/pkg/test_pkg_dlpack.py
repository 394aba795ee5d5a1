"""DLPack in and out of shardrt._C: zero-copy both ways (checked by data pointers and by
mutations seen through the other side), every dtype, and the refusals."""
import numpy as np
import pytest
import torch

from pkg_util import import_shardrt

shardrt = import_shardrt()
_C = shardrt._C

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int8,
          torch.uint8, torch.bool]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_torch_round_trip_shares_memory(dtype):
    t = (torch.arange(12) % 3).to(dtype).reshape(3, 4)
    h = _C.HostTensor(t)  # borrows t's memory
    assert h.data_ptr == t.data_ptr()
    assert h.shape == (3, 4) and h.dtype == str(dtype).split(".")[1]
    back = torch.from_dlpack(h)
    assert back.data_ptr() == t.data_ptr() and back.dtype == dtype
    back[0, 0] = 1 if dtype != torch.bool else True
    assert t[0, 0] == back[0, 0]  # the write is seen through the original


def test_numpy_round_trip_and_buffer_protocol():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    h = _C.HostTensor(a)
    assert h.data_ptr == a.ctypes.data
    n = h.numpy()
    n[1, 2] = 42.0
    assert a[1, 2] == 42.0
    # memoryview: the buffer protocol path (no __dlpack__)
    mv = memoryview(np.arange(4, dtype=np.int64))
    hb = _C.HostTensor(mv)
    assert hb.dtype == "int64" and list(torch.from_dlpack(hb)) == [0, 1, 2, 3]


def test_producer_outlives_its_python_name():
    t = torch.arange(1000, dtype=torch.float32)
    h = _C.HostTensor(t)
    ptr = t.data_ptr()
    del t  # the HostTensor keeps the producer alive
    back = torch.from_dlpack(h)
    assert back.data_ptr() == ptr and float(back[999]) == 999.0


def test_unconsumed_capsule_is_freed_and_copy_makes_new_memory():
    h = _C.HostTensor(torch.ones(4))
    cap = h.__dlpack__()
    del cap  # the capsule's destructor frees its DLManagedTensor (checked under ASan)
    c = torch.from_dlpack(h, copy=True) if "copy" in torch.from_dlpack.__code__.co_varnames else None
    if c is not None:
        assert c.data_ptr() != h.data_ptr


def test_refusals():
    with pytest.raises(ValueError, match="not contiguous"):
        _C.HostTensor(torch.ones(4, 4).t())
    with pytest.raises(TypeError, match="__dlpack__ or the buffer protocol"):
        _C.HostTensor(object())

    class OnDevice:  # what a CUDA tensor answers
        def __dlpack_device__(self):
            return (2, 0)

        def __dlpack__(self, **kw):
            raise AssertionError("must not be asked for its memory")

    with pytest.raises(ValueError, match="not in host memory"):
        _C.HostTensor(OnDevice())
    with pytest.raises(TypeError, match="unsupported DLPack dtype"):
        _C.HostTensor(torch.ones(2, dtype=torch.complex64))


def _identity_engine(dtype="float32"):
    net = _C.Network("ident")
    x = net.input("x", dtype, [-1, 4], ["n"])
    (y,) = net.op("Relu", [x])
    net.output(y, "y")
    return _C.build_engine(net, _C.BuildConfig(shapes={"x": ([1, 4], [2, 4], [8, 4])}))


def test_engine_outputs_are_zero_copy_and_inputs_borrowed():
    ctx = _C.ExecutionContext(_identity_engine())
    x = torch.tensor([[-1.0, 2.0, -3.0, 4.0]] * 3)
    out = ctx.run({"x": x})["y"]
    y = torch.from_dlpack(out)
    assert y.data_ptr() == out.data_ptr  # torch wraps the engine's buffer
    assert torch.equal(y, x.relu())
    # numpy inputs work too
    out2 = ctx.run({"x": np.ones((2, 4), dtype=np.float32)})["y"]
    assert out2.shape == (2, 4)
    # the output buffer outlives the HostTensor and the context
    del out, ctx
    assert torch.equal(y, x.relu())


def test_run_errors_name_the_input():
    ctx = _C.ExecutionContext(_identity_engine())
    with pytest.raises(shardrt.Error, match="x"):
        ctx.run({"x": torch.ones(2, 4, dtype=torch.float64)})
    with pytest.raises(ValueError, match="input 'x' is not contiguous"):
        ctx.run({"x": torch.ones(4, 2).t()})
