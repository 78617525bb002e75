"""Probe (issue 25): RSS of LoRA training steps of 8 x L tokens on the shared SmolLM2 backbone.

    python scripts/memory_probe.py ATTENTION RECOMPUTE_ALL LENGTHS    e.g. eager 0 128,512,256,512
TRIM=1: malloc_trim after each step; MALLOC_MMAP_THRESHOLD_=4194304: the threshold dhrd fixes. Prints RSS after
the forward pass, the step's peak and RSS after the step (GB). Runs the plain step: no activation budget.
"""

import ctypes
import gc
import os
import sys
import time

import torch

from dhrd.memory import peak_rss_gb as hwm
from dhrd.memory import reset_peak
from dhrd.memory import rss_gb as rss
from dhrd.modeling import load_tokenizer, resolve_backbone
from dhrd.training.loss_terms import reasoning_loss_sum
from dhrd.training.model_setup import build_model, reasoning_head
from dhrd.training.training_args import DHRDTrainingArguments

attn, ckpt, lens = sys.argv[1], sys.argv[2] == "1", [int(x) for x in sys.argv[3].split(",")]
trim = os.environ.get("TRIM") == "1"
libc = ctypes.CDLL("libc.so.6")
torch.set_num_threads(2)
print("start", round(rss(), 2))
args = DHRDTrainingArguments(attention=attn, gradient_checkpointing=ckpt, output_dir="runs/memory-probe")
backbone = resolve_backbone(None)
tok = load_tokenizer(backbone)
model, clf, lm, _ = build_model(args, backbone, ("a", "b"), tok)
w = reasoning_head(clf, lm)
print("loaded", round(rss(), 2), "peak", round(hwm(), 2))
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
model.train()
for L in lens:
    reset_peak()
    ids = torch.randint(0, 49000, (8, L))
    am = torch.ones_like(ids)
    lm_labels = ids.clone()
    lm_labels[:, : L // 2] = -100
    t = time.time()
    out = model(input_ids=ids, attention_mask=am, return_last_hidden_state=True)
    loss = torch.nn.functional.cross_entropy(out.logits, torch.zeros(8, dtype=torch.long))
    s, n = reasoning_loss_sum(w(), out.last_hidden_state, lm_labels)
    after_fwd = rss()
    (loss + s / n).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    del out, loss, s
    gc.collect()
    if trim:
        libc.malloc_trim(0)
    print(f"L={L} fwd_rss={after_fwd:.2f} peak={hwm():.2f} after={rss():.2f} {time.time() - t:.1f}s", flush=True)
