"""torch dtype ↔ shardrt dtype names and ONNX data type numbers."""
from __future__ import annotations

import torch

TORCH_TO_NAME = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.float64: "float64",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.int8: "int8",
    torch.uint8: "uint8",
    torch.bool: "bool",
}

# ONNX TensorProto.DataType numbers, as Cast's `to` takes them.
TORCH_TO_ONNX = {
    torch.float32: 1,
    torch.uint8: 2,
    torch.int8: 3,
    torch.int32: 6,
    torch.int64: 7,
    torch.bool: 9,
    torch.float16: 10,
    torch.float64: 11,
    torch.bfloat16: 16,
}


def supported(dt: torch.dtype) -> bool:
    return dt in TORCH_TO_NAME


def name(dt: torch.dtype) -> str:
    try:
        return TORCH_TO_NAME[dt]
    except KeyError:
        raise TypeError(f"shardrt has no dtype for {dt}") from None


def onnx(dt: torch.dtype) -> int:
    return TORCH_TO_ONNX[dt]
