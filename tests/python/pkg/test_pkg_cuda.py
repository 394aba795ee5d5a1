"""CUDA tensors through the package without host copies: ExecutionContext.run on torch CUDA
tensors (DLPack in, device outputs out, the caller's stream respected), shardrt.compile and
the torch.compile backend on CUDA modules against eager PyTorch on the GPU, and the
refusals (CPU context, mixed devices, non-contiguous, another GPU).

The GPU tests skip without a GPU or a CUDA build; the refusals at the top run everywhere."""
import contextlib

import pytest
import torch
import torch.nn.functional as F

from pkg_util import assert_close, import_shardrt

shardrt = import_shardrt()
_C = shardrt._C

HAVE_GPU = torch.cuda.is_available() and bool(getattr(_C, "with_cuda", False))
gpu = pytest.mark.skipif(not HAVE_GPU, reason="needs a GPU and a CUDA build of shardrt")

# fp32 engines vs torch eager on the GPU: same math in another order, fused kernels, no TF32
# in shardrt (torch's default for matmul is no TF32 either): ~1e-6 relative per op; these
# small models stay well under 1e-4 (1e-3 for the transformer, as in test_pkg_compile.py).
FP32 = dict(atol=1e-4, rtol=1e-4)


def _add_engine(dtype="float32", device="cpu"):
    """y = x + x over [n, 7], n in 1..16: exact in every dtype, so round trips compare equal."""
    net = _C.Network("twice")
    x = net.input("x", dtype, [-1, 7], ["n"])
    (y,) = net.op("Add", [x, x])
    net.output(y, "y")
    return _C.build_engine(net, _C.BuildConfig(shapes={"x": ([1, 7], [4, 7], [16, 7])}, device=device))


class _FakeCuda:
    """Answers as a CUDA tensor would, without a GPU."""

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, **kw):
        raise AssertionError("must not be asked for its memory")


# ---- everywhere ----

def test_cpu_context_refuses_cuda_inputs_by_name():
    ctx = _C.ExecutionContext(_add_engine(), device="cpu")
    assert ctx.cuda_device == -1
    with pytest.raises(ValueError, match=r"input 'x' is in CUDA memory but this ExecutionContext runs on \"cpu\""):
        ctx.run({"x": _FakeCuda()})
    with pytest.raises(ValueError, match="runs on \"cpu\""):
        ctx.set_inputs({"x": _FakeCuda()})
    with pytest.raises(shardrt.Error, match="runs on \"cpu\""):
        ctx.output_shapes()
    with pytest.raises(shardrt.Error, match="runs on \"cpu\""):
        ctx.outputs_device()


def test_mixed_devices_and_outputs_for_host_runs_are_refused():
    ctx = _C.ExecutionContext(_add_engine(), device="cpu")
    net = _C.Network("two")
    a = net.input("a", "float32", [2])
    b = net.input("b", "float32", [2])
    (y,) = net.op("Add", [a, b])
    net.output(y, "y")
    ctx2 = _C.ExecutionContext(_C.build_engine(net, _C.BuildConfig()))
    with pytest.raises(ValueError, match="input 'a' is in CUDA memory but input 'b' is not"):
        ctx2.run({"a": _FakeCuda(), "b": torch.ones(2)})
    with pytest.raises(ValueError, match="outputs= is for CUDA inputs"):
        ctx.run({"x": torch.ones(2, 7)}, outputs={})
    # The host path is unchanged by the new keywords.
    y = torch.from_dlpack(ctx.run({"x": torch.ones(2, 7)}, stream=None)["y"])
    assert torch.equal(y, torch.full((2, 7), 2.0))


# ---- on a GPU ----

@contextlib.contextmanager
def _no_host_copies():
    """Any move of a tensor to the host (or to numpy) during the block raises."""
    def refuse(*a, **k):
        raise AssertionError("a tensor was copied to the host")

    orig_to = torch.Tensor.to

    def to(self, *args, **kwargs):
        target = kwargs.get("device", args[0] if args else None)
        if isinstance(target, (str, torch.device)) and torch.device(target).type == "cpu":
            refuse()
        return orig_to(self, *args, **kwargs)

    saved = {n: getattr(torch.Tensor, n) for n in ("cpu", "numpy", "tolist", "item")}
    try:
        for n in saved:
            setattr(torch.Tensor, n, refuse)
        torch.Tensor.to = to
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)
        torch.Tensor.to = orig_to


@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int64])
def test_dlpack_round_trip_of_cuda_tensors(dtype):
    name = str(dtype).split(".")[1]
    ctx = _C.ExecutionContext(_add_engine(name, "cuda"), device="cuda")
    assert ctx.device == "cuda" and ctx.cuda_device == torch.cuda.current_device()
    x = (torch.randn(5, 7, device="cuda") * 8).to(dtype)
    want = x + x
    stream = torch.cuda.current_stream().cuda_stream
    with _no_host_copies():
        # shardrt-allocated outputs (DeviceTensor), imported by torch without a copy
        out = ctx.run({"x": x}, stream=stream)["y"]
        assert isinstance(out, _C.DeviceTensor)
        assert out.__dlpack_device__() == (2, x.device.index)
        assert out.shape == (5, 7) and out.dtype == name
        y = torch.from_dlpack(out)
        assert y.device == x.device and y.data_ptr() == out.data_ptr
        assert torch.equal(y, want)
        # outputs into buffers torch allocates (the path shardrt.compile takes)
        made = {}

        def alloc(n, shape, dt):
            made[n] = torch.empty(shape, dtype=dtype, device=x.device)
            return made[n]

        outs = ctx.run({"x": x}, stream=stream, outputs=alloc)
        assert outs["y"] is made["y"] and torch.equal(outs["y"], want)
        # into a given dict of buffers; a DeviceTensor as an input (chained engines)
        buf = torch.empty(5, 7, dtype=dtype, device="cuda")
        res = ctx.run({"x": out}, stream=stream, outputs={"y": buf})
        assert res["y"] is buf and torch.equal(buf, want + want)
    # the DeviceTensor's memory outlives the context and the HostTensor-free run
    del ctx, out
    assert torch.equal(y, want)


@gpu
def test_split_api_and_refusals_on_cuda():
    ctx = _C.ExecutionContext(_add_engine("float32", "cuda"), device="cuda")
    x = torch.randn(16, 7, device="cuda")
    with pytest.raises(ValueError, match="not contiguous"):
        ctx.run({"x": torch.randn(7, 16, device="cuda").t()})
    with pytest.raises(shardrt.Error, match="input 'x' has dtype fp16, the engine expects fp32"):
        ctx.run({"x": x.half()})
    with pytest.raises(shardrt.Error, match="outside the engine's profile"):
        ctx.run({"x": torch.randn(17, 7, device="cuda")})
    ctx.set_inputs({"x": x}, stream=torch.cuda.current_stream())  # a torch.cuda.Stream works as well
    ctx.execute()
    assert ctx.output_shapes() == {"y": ("float32", (16, 7))}
    with pytest.raises(shardrt.Error, match=r"the buffer for output 'y' is fp32\[16,6\]"):
        ctx.outputs_device(outputs={"y": torch.empty(16, 6, device="cuda")})
    with pytest.raises(ValueError, match="not in CUDA memory"):
        ctx.outputs_device(outputs={"y": torch.empty(16, 7)})
    got = torch.from_dlpack(ctx.outputs_device()["y"])
    assert torch.equal(got, x + x)


@gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_tensor_on_another_gpu_is_refused():
    with torch.cuda.device(0):
        ctx = _C.ExecutionContext(_add_engine("float32", "cuda"), device="cuda")
    with pytest.raises(shardrt.Error, match="input 'x' is on GPU 1; this context runs on GPU 0"):
        ctx.run({"x": torch.randn(4, 7, device="cuda:1")})


@gpu
def test_inputs_produced_on_a_side_stream():
    ctx = _C.ExecutionContext(_add_engine("float32", "cuda"), device="cuda")
    src = torch.randn(16, 7, device="cuda")
    side = torch.cuda.Stream()
    for _ in range(3):  # eager, captured, replayed
        x = torch.full((16, 7), float("nan"), device="cuda")
        torch.cuda.synchronize()
        with torch.cuda.stream(side):
            torch.cuda._sleep(50_000_000)  # ~25 ms of GPU time before the input is written
            x.copy_(src)
            # called on the side stream: shardrt orders its run after it, outputs before it
            out = ctx.run({"x": x}, stream=torch.cuda.current_stream().cuda_stream,
                          outputs=lambda n, s, d: torch.empty(s, device="cuda"))["y"]
            x.fill_(float("nan"))  # the caller's stream waits for shardrt's input copy
            y = out * 1  # on the side stream: sees the finished output
        side.synchronize()
        assert torch.equal(y, src + src)
    # produced on the side stream, handed over to the current stream by wait_stream
    with torch.cuda.stream(side):
        torch.cuda._sleep(50_000_000)
        x = src * 3
    torch.cuda.current_stream().wait_stream(side)
    y = torch.from_dlpack(ctx.run({"x": x}, stream=torch.cuda.current_stream().cuda_stream)["y"])
    torch.cuda.synchronize()
    assert torch.equal(y, src * 6)


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(16, 64)
        self.fc2 = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


@gpu
def test_compiled_mlp_on_cuda_without_host_copies():
    torch.manual_seed(0)
    m = MLP().cuda().eval()
    x = torch.randn(8, 16, device="cuda")
    trt = shardrt.compile(m, arg_inputs=[x])
    assert trt.context.device == "cuda"
    with torch.no_grad():
        want = m(x)
    with _no_host_copies():
        got = trt(x)
        got2 = trt(torch.randn(8, 32, device="cuda")[:, ::2])  # non-contiguous: made contiguous on the GPU
    assert got.device == x.device and got2.device == x.device
    torch.cuda.synchronize()
    assert_close(got.cpu(), want.cpu(), what="mlp cuda", **FP32)
    # dynamic batch through shardrt.Input
    trt = shardrt.compile(m, arg_inputs=[shardrt.Input((1, 16), (4, 16), (32, 16), dtype=torch.float32, name="x")],
                          device="cuda")
    for b in (1, 7, 32):
        xb = torch.randn(b, 16, device="cuda")
        with _no_host_copies():
            got = trt(xb)
        with torch.no_grad():
            assert_close(got.cpu(), m(xb).cpu(), what=f"batch {b}", **FP32)


@gpu
def test_compiled_gpt2_on_cuda_matches_eager():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=256, n_positions=64)
    model = transformers.GPT2LMHeadModel(cfg)
    model.config.use_cache = False
    model = model.cuda().eval()
    ids = torch.randint(0, 256, (2, 12), device="cuda")
    trt = shardrt.compile(model, arg_inputs=[ids])
    with torch.no_grad():
        want = model(ids).logits
    with _no_host_copies():
        got = trt(ids).logits
    assert got.device == ids.device
    # as test_pkg_compile's GPT-2: fp32, fused attention/norm: ~1e-5 on logits of size ~1.
    assert_close(got.cpu(), want.cpu(), atol=1e-3, rtol=1e-3, what="gpt2 cuda")


@gpu
def test_torch_compile_backend_on_cuda_without_host_copies():
    torch.manual_seed(0)
    m = MLP().cuda().eval()
    x = torch.randn(8, 16, device="cuda")
    with torch.no_grad():
        want = m(x)
        fast = torch.compile(m, backend="shardrt", options={"min_block_size": 1, "device": "cuda"})
        fast(x)  # compiles (dynamo may look at values on the host while tracing)
        with _no_host_copies():
            got = fast(x)
    assert got.device == x.device
    assert_close(got.cpu(), want.cpu(), what="torch.compile cuda", **FP32)
    reports = shardrt.dynamo.last_reports()
    assert reports and reports[-1].engines, "no engine was built"
