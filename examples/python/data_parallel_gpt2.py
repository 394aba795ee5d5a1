"""Data-parallel GPT-2 generation: Torch-TensorRT's data_parallel_gpt2.py with shardrt.

Each process compiles the model and generates for its share of the prompts, split by
accelerate's PartialState exactly as the guide does it; the tokens are checked against
PyTorch's greedy generation, and the compile time and time per forward call are printed.

    torchrun --nproc_per_node 2 examples/python/data_parallel_gpt2.py            # GPT-2 from the Hub
    torchrun --nproc_per_node 2 examples/python/data_parallel_gpt2.py --tiny     # offline: small random GPT-2
    mpirun -n 2 python examples/python/data_parallel_gpt2.py --tiny              # accelerate reads MPI's env too

(PYTHONPATH=<build>/python, or shardrt installed with `pip install .`.)
"""
import argparse
import time

import torch
from accelerate import PartialState
from transformers import GPT2Config, GPT2LMHeadModel

import shardrt

parser = argparse.ArgumentParser()
parser.add_argument("--tiny", action="store_true", help="a 2-layer GPT-2 with random weights (no download)")
parser.add_argument("--max-length", type=int, default=40)
args = parser.parse_args()

# cpu=True on machines without a GPU: accelerate then runs its multi-process CPU mode (gloo)
# under torchrun/mpirun instead of one process per GPU.
distributed_state = PartialState(cpu=not torch.cuda.is_available())

if args.tiny:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=128, n_head=4, vocab_size=1000, n_positions=128))
    input_id = torch.tensor([[464, 207, 758, 218, 180, 625]])
    decode = lambda ids: " ".join(map(str, ids.tolist()))  # noqa: E731
else:
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained("gpt2")
    model = GPT2LMHeadModel.from_pretrained("gpt2", pad_token_id=tokenizer.eos_token_id)
    input_id = tokenizer("I enjoy walking with my cute dog", return_tensors="pt").input_ids
    decode = lambda ids: tokenizer.decode(ids)  # noqa: E731
model.config.use_cache = False
model = model.eval().to(distributed_state.device)
input_id = input_id.to(distributed_state.device)

# One engine for every sequence length up to max_length (the guide compiles with dynamic=False
# and recompiles per length; a shape range does it once).
t0 = time.perf_counter()
trt_model = shardrt.compile(
    model,
    arg_inputs=[shardrt.Input(min_shape=(1, 1), opt_shape=(1, args.max_length // 2), max_shape=(1, args.max_length),
                              dtype=torch.int64, name="input_ids")],
    use_explicit_typing=True,
    min_block_size=1,
)
compile_s = time.perf_counter() - t0


def greedy(forward, ids, max_length):
    """Greedy decoding without a KV cache: the whole sequence goes through each call."""
    calls = []
    while ids.shape[1] < max_length:
        t = time.perf_counter()
        logits = forward(ids).logits
        calls.append(time.perf_counter() - t)
        ids = torch.cat([ids, logits[:, -1:].argmax(-1)], dim=1)
    return ids, calls


with distributed_state.split_between_processes([input_id, input_id]) as prompt:
    cur_input = torch.clone(prompt[0]).to(distributed_state.device)
    gen_tokens, calls = greedy(trt_model, cur_input, args.max_length)
    with torch.no_grad():
        ref_tokens, ref_calls = greedy(model, cur_input, args.max_length)
    gen_text = decode(gen_tokens[0])

ok = torch.equal(gen_tokens, ref_tokens)
rank = distributed_state.process_index
print(f"[rank {rank} of {distributed_state.num_processes}] compile {compile_s:.2f} s; forward {1e3 * sum(calls) / len(calls):.2f} ms/call with shardrt, "
      f"{1e3 * sum(ref_calls) / len(ref_calls):.2f} ms/call in PyTorch eager ({len(calls)} calls)")
print(f"[rank {rank} of {distributed_state.num_processes}] tokens {'match' if ok else 'DIFFER from'} PyTorch's greedy decoding: {gen_text!r}")
raise SystemExit(0 if ok else 1)
