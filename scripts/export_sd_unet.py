#!/usr/bin/env python3
"""Exports a Stable Diffusion 1.5 UNet (diffusers UNet2DConditionModel) to ONNX for shardrt's
examples/data_parallel_stable_diffusion.

By default the UNet has SD-1.5's configuration and random (seeded) weights, which is enough to
time the model; --checkpoint DIR loads real weights instead (a diffusers UNet folder:
config.json + diffusion_pytorch_model.safetensors, e.g. the `unet` folder of an SD-1.5
pipeline). --tiny gives a small UNet of the same structure (block_out_channels (32, 64), one
layer per block, cross_attention_dim 32, 8x8 latents) for tests.

Inputs: sample [batch, 4, H, W] (float), timestep [batch] (float32, the scheduler's integer
timesteps as floats), encoder_hidden_states [batch, seq, cross_attention_dim]; output:
out_sample [batch, 4, H, W]. The batch axis is dynamic (classifier-free guidance doubles it).

Exporter (--exporter): torch.onnx's dynamo exporter by default: its attention
decomposition is what shardrt fuses into shardrt.Attention (the TorchScript export's is not
fused yet, which makes a 64x64 UNet call many times slower), and it writes torch's group_norm
as InstanceNormalization over [batch, groups, -1] plus a Reshape and the per-channel affine
Mul/Add. `--exporter torchscript` uses the TorchScript exporter at opset 17, which writes
group norm the same way. (GroupNormalization-18 has per-group scale and bias; shardrt's
importer refuses that form and takes only GroupNormalization-21's per-channel one.)

  python scripts/export_sd_unet.py -o unet.onnx                 (SD-1.5 shape, random weights)
  python scripts/export_sd_unet.py -o unet.onnx --fp16          (weights and I/O in fp16)
  python scripts/export_sd_unet.py -o unet.onnx --checkpoint stable-diffusion-v1-5/unet
  python scripts/export_sd_unet.py -o tiny.onnx --tiny
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings

# SD-1.5's UNet (runwayml/stable-diffusion-v1-5, unet/config.json).
SD15_CONFIG = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, act_fn="silu",
    center_input_sample=False, downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, mid_block_scale_factor=1,
    norm_eps=1e-5)

# The same structure, small: for tests (8x8 latents, 32-wide cross attention).
TINY_CONFIG = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8)

OPSET = 17


def make_unet(args):
    import torch
    from diffusers import UNet2DConditionModel

    if args.checkpoint:
        unet = UNet2DConditionModel.from_pretrained(args.checkpoint, torch_dtype=torch.float32)
    else:
        torch.manual_seed(args.seed)
        unet = UNet2DConditionModel(**(TINY_CONFIG if args.tiny else SD15_CONFIG))
    return unet.eval()


class Wrapper:
    """forward(sample, timestep, encoder_hidden_states) -> out_sample (a plain tensor)."""

    def __new__(cls, unet):
        import torch

        class UNet(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, sample, timestep, encoder_hidden_states):
                return self.m(sample, timestep, encoder_hidden_states, return_dict=False)[0]

        return UNet(unet).eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", required=True, help="ONNX file to write")
    ap.add_argument("--checkpoint", help="diffusers UNet folder (config.json + weights); default: random weights")
    ap.add_argument("--tiny", action="store_true", help="a small UNet of the same structure (tests)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    ap.add_argument("--fp16", action="store_true", help="export in fp16 (weights, inputs and output)")
    ap.add_argument("--batch", type=int, default=2, help="batch of the example inputs traced (the axis stays dynamic)")
    ap.add_argument("--seq", type=int, default=77, help="text length of the example inputs (77 for CLIP; --tiny: 77 too)")
    ap.add_argument("--config-out", help="also write the UNet's configuration (JSON) here")
    ap.add_argument("--exporter", choices=["dynamo", "torchscript"], default="dynamo",
                    help="torch's ONNX exporter (default dynamo: its attention is fused by shardrt)")
    args = ap.parse_args(argv)
    if args.checkpoint and args.tiny:
        ap.error("--tiny and --checkpoint exclude each other")

    import torch

    unet = make_unet(args)
    cfg = unet.config
    dtype = torch.float16 if args.fp16 else torch.float32
    model = Wrapper(unet).to(dtype)
    size = cfg.sample_size
    sample = torch.randn(args.batch, cfg.in_channels, size, size, dtype=dtype)
    # float32 timesteps whatever the model's dtype: fp16 cannot hold 999 exactly enough for the
    # sinusoidal embedding (diffusers casts the embedding to the model's dtype itself).
    timestep = torch.full((args.batch,), 999.0, dtype=torch.float32)
    ehs = torch.randn(args.batch, args.seq, cfg.cross_attention_dim, dtype=dtype)
    names = ["sample", "timestep", "encoder_hidden_states"]
    axes = {"sample": {0: "batch"}, "timestep": {0: "batch"}, "encoder_hidden_states": {0: "batch"},
            "out_sample": {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if args.exporter == "dynamo":
            # torch.export's graph: its attention decomposition is what shardrt fuses into
            # shardrt.Attention (the TorchScript export's is not yet), and group norm comes out
            # as InstanceNormalization, as at opset 17.
            batch = torch.export.Dim("batch", min=1, max=4096)
            torch.onnx.export(model, (sample, timestep, ehs), args.output, dynamo=True, input_names=names,
                              output_names=["out_sample"], dynamic_shapes=({0: batch}, {0: batch}, {0: batch}),
                              optimize=True, verbose=False)
        else:
            torch.onnx.export(model, (sample, timestep, ehs), args.output, dynamo=False, input_names=names,
                              output_names=["out_sample"], dynamic_axes=axes, opset_version=OPSET)
    if args.config_out:
        with open(args.config_out, "w") as f:
            json.dump({k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(cfg).items()
                       if isinstance(v, (int, float, str, bool, list, tuple)) or v is None}, f, indent=1)
    n_params = sum(p.numel() for p in unet.parameters())
    print(f"export_sd_unet: {n_params / 1e6:.1f} M parameters, {'fp16' if args.fp16 else 'fp32'}, {args.exporter} exporter, "
          f"latents {cfg.in_channels}x{size}x{size}, cross attention {cfg.cross_attention_dim} -> {args.output}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
