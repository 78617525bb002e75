"""The glibc heap in use after bf16 autocast forward+backward steps of SmolLM2 on 8 x L random tokens, L varying as
dynamic padding makes it (issue 25): oneDNN's primitive cache keeps kernels for every shape it meets.

    python scripts/onednn_cache_probe.py STEPS          # ONEDNN_PRIMITIVE_CACHE_CAPACITY=N to cap the cache
"""

import ctypes
import os
import sys
import time

import torch
from transformers import AutoModelForCausalLM

from dhrd.memory import release_memory, rss_gb
from dhrd.modeling import resolve_backbone

libc = ctypes.CDLL("libc.so.6")


class Mallinfo2(ctypes.Structure):
    names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    _fields_ = [(n, ctypes.c_size_t) for n in names.split()]


libc.mallinfo2.restype = Mallinfo2
libc.mallopt(-3, 4 * 2**20)  # the mmap threshold dhrd pins
torch.set_num_threads(2)
model = AutoModelForCausalLM.from_pretrained(resolve_backbone(None), attn_implementation="eager")
model.train()
release_memory()
base = libc.mallinfo2().uordblks
g = torch.Generator().manual_seed(0)
lengths = [int(x) for x in torch.randint(16, 72, (int(sys.argv[1]),), generator=g)]
start = time.perf_counter()
for length in lengths:
    ids = torch.randint(0, 49152, (8, length), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_ids=ids)
    out.logits[:, -1].float().logsumexp(-1).mean().backward()
    model.zero_grad(set_to_none=True)
    del out
release_memory()
capacity = os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "default")
grown = (libc.mallinfo2().uordblks - base) / 2**20
print(f"capacity {capacity}: {len(lengths)} steps {time.perf_counter() - start:.1f} s, heap in use +{grown:.0f} MB")
print(f"rss {rss_gb()} GB", flush=True)
