"""Small, seeded model definitions for the end-to-end tests.

Each ModelSpec builds an eval-mode torch module whose forward takes the model's inputs as
named tensors (a thin wrapper for library models, so both ONNX exporters see the same
signature) and returns one tensor. Configs are tiny so that export, build and run of the
whole suite fit in a few minutes on two cores; weights are random (seeded), which is all a
numerical comparison needs.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np


@dataclasses.dataclass
class ModelSpec:
    name: str
    make_module: Callable[[], "torch.nn.Module"]  # noqa: F821
    input_names: list[str]
    output_name: str
    # Per input: {axis: symbolic dim name}; the output's dynamic axes likewise.
    dynamic_axes: dict[str, dict[int, str]]
    output_axes: dict[int, str]
    # Symbolic dim name -> (min, max) for the dynamo exporter's torch.export.Dim.
    dim_ranges: dict[str, tuple[int, int]]
    # make_inputs(sizes, rng) -> {name: np.ndarray}; sizes maps symbolic dim name -> size.
    make_inputs: Callable[[dict[str, int], np.random.Generator], dict[str, np.ndarray]]
    example_sizes: dict[str, int]   # the sizes the exporters trace with
    test_sizes: list[dict[str, int]]  # the two shapes each engine is run at (inside the profile)
    profile_sizes: tuple[dict[str, int], dict[str, int], dict[str, int]]  # min / opt / max
    # Layers of float math between input and output (roughly): scales the bf16 tolerance.
    depth: int = 4


def _seed(seed: int = 0):
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)


def _ids_and_mask(sizes, rng, vocab, with_type_ids=False):
    b, s = sizes["batch"], sizes["seq"]
    ids = rng.integers(0, vocab, size=(b, s), dtype=np.int64)
    # Right padding on the last batch row (when there is more than one): every query row
    # still has at least one valid key, so no row is fully masked (whose output is
    # implementation-defined), but the mask path is exercised.
    mask = np.ones((b, s), dtype=np.int64)
    if b > 1:
        mask[-1, s - s // 3:] = 0
    out = {"input_ids": ids, "attention_mask": mask}
    if with_type_ids:
        tt = np.zeros((b, s), dtype=np.int64)
        tt[:, s // 2:] = 1
        out["token_type_ids"] = tt
    return out


# ---------------------------------------------------------------------------------------
# Hugging Face transformers models

_LM_AXES = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
_SEQ_RANGES = {"batch": (1, 8), "seq": (2, 64)}
_SEQ_EXAMPLE = {"batch": 2, "seq": 12}
_SEQ_TESTS = [{"batch": 1, "seq": 7}, {"batch": 3, "seq": 16}]
_SEQ_PROFILE = ({"batch": 1, "seq": 4}, {"batch": 2, "seq": 12}, {"batch": 4, "seq": 32})


def _lm_wrapper(model):
    import torch

    class LM(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, return_dict=False)[0]

    return LM(model).eval()


def _make_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    _seed(0)
    cfg = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1000, n_positions=128, bos_token_id=0, eos_token_id=0,
                     attn_implementation="sdpa")
    return _lm_wrapper(GPT2LMHeadModel(cfg).eval())


def _make_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    _seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                      num_hidden_layers=2, vocab_size=1000, max_position_embeddings=128,
                      attn_implementation="sdpa")
    return _lm_wrapper(LlamaForCausalLM(cfg).eval())


def _make_bert():
    import torch
    from transformers import BertConfig, BertModel

    _seed(0)
    cfg = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                     vocab_size=1000, max_position_embeddings=128, attn_implementation="sdpa")
    model = BertModel(cfg, add_pooling_layer=False).eval()

    class Bert(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                          return_dict=False)[0]

    return Bert(model).eval()


def _make_vit():
    import torch
    from transformers import ViTConfig, ViTModel

    _seed(0)
    cfg = ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=64, num_hidden_layers=2,
                    num_attention_heads=4, intermediate_size=128, attn_implementation="sdpa")
    model = ViTModel(cfg, add_pooling_layer=False).eval()

    class ViT(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return self.m(pixel_values=pixel_values, return_dict=False)[0]

    return ViT(model).eval()


def _image_inputs(channels, hw_key=None, fixed_hw=None):
    def make(sizes, rng):
        h = w = fixed_hw if fixed_hw else sizes[hw_key]
        x = rng.standard_normal((sizes["batch"], channels, h, w)).astype(np.float32)
        return {"pixel_values" if fixed_hw else "x": x}
    return make


GPT2 = ModelSpec(
    name="gpt2", make_module=_make_gpt2, input_names=["input_ids", "attention_mask"], output_name="logits",
    dynamic_axes=_LM_AXES, output_axes={0: "batch", 1: "seq"}, dim_ranges=_SEQ_RANGES,
    make_inputs=lambda s, r: _ids_and_mask(s, r, 1000), example_sizes=_SEQ_EXAMPLE, test_sizes=_SEQ_TESTS,
    profile_sizes=_SEQ_PROFILE, depth=2 * 4)

LLAMA = ModelSpec(
    name="llama_gqa", make_module=_make_llama, input_names=["input_ids", "attention_mask"], output_name="logits",
    dynamic_axes=_LM_AXES, output_axes={0: "batch", 1: "seq"}, dim_ranges=_SEQ_RANGES,
    make_inputs=lambda s, r: _ids_and_mask(s, r, 1000), example_sizes=_SEQ_EXAMPLE, test_sizes=_SEQ_TESTS,
    profile_sizes=_SEQ_PROFILE, depth=2 * 4)

BERT = ModelSpec(
    name="bert", make_module=_make_bert, input_names=["input_ids", "attention_mask", "token_type_ids"],
    output_name="last_hidden_state",
    dynamic_axes={**_LM_AXES, "token_type_ids": {0: "batch", 1: "seq"}}, output_axes={0: "batch", 1: "seq"},
    dim_ranges=_SEQ_RANGES, make_inputs=lambda s, r: _ids_and_mask(s, r, 1000, with_type_ids=True),
    example_sizes=_SEQ_EXAMPLE, test_sizes=_SEQ_TESTS, profile_sizes=_SEQ_PROFILE, depth=2 * 4)

VIT = ModelSpec(
    name="vit", make_module=_make_vit, input_names=["pixel_values"], output_name="last_hidden_state",
    dynamic_axes={"pixel_values": {0: "batch"}}, output_axes={0: "batch"}, dim_ranges={"batch": (1, 8)},
    make_inputs=_image_inputs(3, fixed_hw=16), example_sizes={"batch": 2},
    # The image size is fixed by the position embeddings, so only the batch varies.
    test_sizes=[{"batch": 1}, {"batch": 3}],
    profile_sizes=({"batch": 1}, {"batch": 2}, {"batch": 4}), depth=2 * 4)


# ---------------------------------------------------------------------------------------
# diffusers

def _make_unet():
    import torch
    from diffusers import UNet2DConditionModel

    _seed(0)
    model = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
        norm_num_groups=8).eval()

    class UNet(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, sample, timestep, encoder_hidden_states):
            return self.m(sample, timestep, encoder_hidden_states, return_dict=False)[0]

    return UNet(model).eval()


def _unet_inputs(sizes, rng):
    b, s = sizes["batch"], sizes["seq"]
    return {
        "sample": rng.standard_normal((b, 4, 8, 8)).astype(np.float32),
        # Distinct timesteps per batch row, in the usual [0, 1000) range.
        "timestep": rng.uniform(0, 999, size=(b,)).astype(np.float32),
        "encoder_hidden_states": rng.standard_normal((b, s, 32)).astype(np.float32),
    }


UNET = ModelSpec(
    name="unet2d_cond", make_module=_make_unet, input_names=["sample", "timestep", "encoder_hidden_states"],
    output_name="out_sample",
    dynamic_axes={"sample": {0: "batch"}, "timestep": {0: "batch"}, "encoder_hidden_states": {0: "batch", 1: "seq"}},
    output_axes={0: "batch"}, dim_ranges={"batch": (1, 8), "seq": (2, 64)}, make_inputs=_unet_inputs,
    example_sizes={"batch": 2, "seq": 6}, test_sizes=[{"batch": 1, "seq": 5}, {"batch": 3, "seq": 9}],
    profile_sizes=({"batch": 1, "seq": 2}, {"batch": 2, "seq": 6}, {"batch": 4, "seq": 16}), depth=16)


# ---------------------------------------------------------------------------------------
# Torch-written models

def _make_mlp():
    import torch
    from torch import nn

    _seed(0)

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(32, 64)
            self.fc2 = nn.Linear(64, 64)
            self.fc3 = nn.Linear(64, 10)

        def forward(self, x):
            x = torch.relu(self.fc1(x))
            x = nn.functional.gelu(self.fc2(x))
            return self.fc3(x)

    return MLP().eval()


def _make_convnet():
    import torch
    from torch import nn

    _seed(0)

    class ConvNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                nn.MaxPool2d(2),
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(32, 10)

        def forward(self, x):
            x = self.pool(self.features(x))
            return self.fc(torch.flatten(x, 1))

    m = ConvNet()
    # Non-trivial running statistics, so eval-mode BatchNorm is not the identity.
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    return m.eval()


MLP = ModelSpec(
    name="mlp", make_module=_make_mlp, input_names=["x"], output_name="y",
    dynamic_axes={"x": {0: "batch", 1: "seq"}}, output_axes={0: "batch", 1: "seq"},
    dim_ranges={"batch": (1, 8), "seq": (2, 64)},
    make_inputs=lambda s, r: {"x": r.standard_normal((s["batch"], s["seq"], 32)).astype(np.float32)},
    example_sizes={"batch": 2, "seq": 12}, test_sizes=_SEQ_TESTS, profile_sizes=_SEQ_PROFILE, depth=3)

CONVNET = ModelSpec(
    name="convnet", make_module=_make_convnet, input_names=["x"], output_name="y",
    # Height and width vary too ("hw"): AdaptiveAvgPool makes the head independent of them.
    dynamic_axes={"x": {0: "batch", 2: "hw", 3: "hw"}}, output_axes={0: "batch"},
    dim_ranges={"batch": (1, 8), "hw": (8, 64)}, make_inputs=_image_inputs(3, hw_key="hw"),
    example_sizes={"batch": 2, "hw": 16}, test_sizes=[{"batch": 1, "hw": 16}, {"batch": 3, "hw": 24}],
    profile_sizes=({"batch": 1, "hw": 8}, {"batch": 2, "hw": 16}, {"batch": 4, "hw": 32}), depth=4)
