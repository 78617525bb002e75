"""Two training cells in one process on the shared SmolLM2 and a ComVE slice, as ``dhrd demo`` runs them (issue 25):
resident memory at each stage, and what is still alive between the cells (tensors, modules, the heap).

    python scripts/memory_two_cells.py OUT_DIR [ROWS] [METHODS]     # METHODS: pooled,dhrd (the default)
"""

import ctypes
import gc
import json
import os
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import torch
import yaml

from dhrd import DHRDTrainingArguments, train
from dhrd.memory import release_memory, rss_gb
from dhrd.reproduction.demo import comve_config

out = Path(sys.argv[1])
rows = int(sys.argv[2]) if len(sys.argv) > 2 else 64
methods = (sys.argv[3] if len(sys.argv) > 3 else "pooled,dhrd").split(",")
t0 = time.perf_counter()


def smaps() -> dict:
    found = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":")
        if key in ("Rss", "Anonymous", "Pss_File"):
            found[key] = round(int(value.split()[0]) / 2**20, 3)
    heap = 0
    text = Path("/proc/self/smaps").read_text().splitlines()
    in_heap = False
    for line in text:
        if line[:1].isdigit() or line[:1] in "abcdef":
            in_heap = line.rstrip().endswith("[heap]")
        elif in_heap and line.startswith("Rss:"):
            heap += int(line.split()[1])
    found["heap"] = round(heap / 2**20, 3)
    return found


def alive() -> dict:
    gc.collect()
    tensors, modules = [], Counter()
    for o in gc.get_objects():
        try:
            if isinstance(o, torch.Tensor):
                tensors.append(o)
            elif isinstance(o, torch.nn.Module):
                modules[type(o).__name__] += 1
        except ReferenceError:
            pass
    storages = {}
    for t in tensors:
        try:
            s = t.untyped_storage()
            storages[s.data_ptr()] = s.nbytes()
        except (RuntimeError, NotImplementedError):
            pass
    return {
        "tensors": len(tensors),
        "tensor_gb": round(sum(storages.values()) / 2**30, 3),
        "modules": sum(modules.values()),
        "top_modules": modules.most_common(4),
    }


def stage(name: str, **extra) -> None:
    record = {"stage": name, "python_blocks": sys.getallocatedblocks(), "t": round(time.perf_counter() - t0)}
    record.update(rss=rss_gb(), **smaps(), **extra)
    print(json.dumps(record), flush=True)


libc = ctypes.CDLL("libc.so.6")


class Mallinfo2(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_size_t)
        for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    ]


libc.mallinfo2.restype = Mallinfo2


def malloc_gb() -> dict:
    """glibc's view, all arenas: bytes in use from the heaps, free in them, and in mmapped blocks."""
    info = libc.mallinfo2()
    return {
        k: round(getattr(info, n) / 2**30, 3)
        for k, n in (("in_use", "uordblks"), ("free", "fordblks"), ("mmapped", "hblkhd"))
    }


trace = os.environ.get("TRACE") == "1"
config = yaml.safe_load(comve_config(out).read_text())
stage("imports", malloc=malloc_gb())
if trace:
    tracemalloc.start(int(os.environ.get("TRACE_FRAMES", "1")))
    before = tracemalloc.take_snapshot()
for method in methods:
    args = DHRDTrainingArguments(
        output_dir=str(out / method),
        **config,
        method=method,
        head="linear",
        input_format="native",
        best_epoch=False,
        num_train_epochs=1,
        learning_rate=1e-3,
        max_train_examples=rows,
        max_eval_examples=rows,
        seed=1,
        subset_seed=1,
        resume=False,
        disable_tqdm=True,
    )
    metrics = train(args).metrics
    stage(f"{method}: train() returned", memory=metrics["memory"])
    stage(f"{method}: alive", **alive())
    release_memory()
    stage(f"{method}: after release_memory", malloc=malloc_gb())
    if trace:
        grown = tracemalloc.take_snapshot().compare_to(before, "traceback")
        print(f"python allocations grown: {sum(s.size_diff for s in grown) / 2**20:.1f} MB", flush=True)
        for stat in grown[:6]:
            print(f"{stat.size_diff / 2**20:.1f} MB in {stat.count_diff} blocks:", flush=True)
            for line in stat.traceback.format()[-12:]:
                print("   ", line, flush=True)
