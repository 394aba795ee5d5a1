"""Data-parallel Stable Diffusion: Torch-TensorRT's data_parallel_stable_diffusion.py with shardrt.

Each process builds the pipeline, compiles its UNet with torch.compile(backend="shardrt"),
and renders its share of the prompts, split by accelerate's PartialState as the guide does
it. The images are checked against the same pipeline with the uncompiled UNet (same seed),
and the compile time and time per image are printed.

    torchrun --nproc_per_node 2 examples/python/data_parallel_stable_diffusion.py          # SD 2 from the Hub
    torchrun --nproc_per_node 2 examples/python/data_parallel_stable_diffusion.py --tiny   # offline: small random pipeline

--tiny assembles a pipeline of the same structure with random weights and no download: a
2-level UNet (the SD UNet's blocks, 32/64 channels), a 2-layer CLIP text encoder with a
character-level tokenizer written on the fly, a small VAE; 32x32 images, 4 DDIM steps.

(PYTHONPATH=<build>/python, or shardrt installed with `pip install .`.)
"""
import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch
from accelerate import PartialState

import shardrt  # registers the "shardrt" torch.compile backend
import shardrt.dynamo

parser = argparse.ArgumentParser()
parser.add_argument("--tiny", action="store_true", help="a small random-weight pipeline (no download)")
parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: 4 tiny, 50 otherwise)")
parser.add_argument("--out-dir", default=".", help="where result_<rank>.png is written")
args = parser.parse_args()

distributed_state = PartialState(cpu=not torch.cuda.is_available())
dtype = torch.float16 if torch.cuda.is_available() and not args.tiny else torch.float32


def tiny_pipeline():
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    # A character-level CLIP vocabulary: every printable ASCII character, alone and as a word
    # end ("a</w>"), the two special tokens, and no merges.
    chars = [chr(c) for c in range(33, 127)]
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    folder = tempfile.mkdtemp(prefix="tiny_clip_")
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")
    tokenizer = CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"),
                              model_max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                                                num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=77,
                                                bos_token_id=vocab["<|startoftext|>"],
                                                eos_token_id=vocab["<|endoftext|>"]))
    unet = UNet2DConditionModel(sample_size=4, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=8)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64, 64, 64),
                        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                        norm_num_groups=8, sample_size=32)
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=DDIMScheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


if args.tiny:
    pipe = tiny_pipeline()
    size, steps = dict(height=32, width=32), args.steps or 4
else:
    from diffusers import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained("stabilityai/stable-diffusion-2", torch_dtype=dtype, use_safetensors=True)
    size, steps = {}, args.steps or 50
pipe.set_progress_bar_config(disable=True)
pipe.to(distributed_state.device)
eager_unet = pipe.unet

# The guide's settings; dynamic=False: one engine per input shape (classifier-free guidance
# runs the UNet on a batch of 2).
backend = "shardrt"
compiled_unet = torch.compile(
    eager_unet,
    backend=backend,
    options={"truncate_long_and_double": True, "use_explicit_typing": True, "min_block_size": 2},
    dynamic=False,
)


def render(unet, prompt):
    pipe.unet = unet
    t = time.perf_counter()
    with torch.no_grad():
        image = pipe(prompt, num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(42),
                     output_type="np", **size).images[0]
    return image, time.perf_counter() - t


with distributed_state.split_between_processes(["a dog", "a cat"]) as prompt:
    t0 = time.perf_counter()
    render(compiled_unet, prompt)  # the first call compiles
    compile_s = time.perf_counter() - t0
    image, shardrt_s = render(compiled_unet, prompt)
    reference, eager_s = render(eager_unet, prompt)

rank = distributed_state.process_index
out = os.path.join(args.out_dir, f"result_{rank}.png")
try:
    from PIL import Image
    Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(out)
except ImportError:
    out = "(PIL missing: not saved)"
# Pixel values in [0, 1] after several denoising steps and the VAE: the fp32 engine and
# PyTorch differ by accumulated rounding (~1e-5 per op); 1e-3 leaves room for that while a
# wrong layer would move pixels by far more. fp16 on a GPU rounds at every op: 2e-2.
tol = 1e-3 if dtype == torch.float32 else 2e-2
err = float(np.abs(image - reference).max())
engines = sum(len(r.engines) for r in shardrt.dynamo.last_reports())
in_torch = sorted({op for r in shardrt.dynamo.last_reports() for op in r.torch_ops})
ok = err <= tol and engines > 0
print(f"[rank {rank} of {distributed_state.num_processes}] prompt {prompt!r}: first call (compile + render) "
      f"{compile_s:.2f} s; {steps} steps in {shardrt_s:.2f} s with shardrt, {eager_s:.2f} s in PyTorch eager; "
      f"max pixel difference {err:.2e} (tolerance {tol:g}); UNet: {engines} shardrt engine(s), "
      f"left to PyTorch: {', '.join(in_torch) or 'nothing'} -> {'OK' if ok else 'MISMATCH'}; image {out}")
raise SystemExit(0 if ok else 1)
