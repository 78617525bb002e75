"""Five small training cells in one process (issue 25): RSS after each. A 4-layer, hidden-256 Llama on the shared
GPT-2 tokenizer, CB 16 rows, full fine-tuning: a cell left alive would hold ~0.2 GB.

    python scripts/memory_cells.py OUT_DIR
"""

import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

import dhrd
from dhrd import DHRDTrainingArguments, train
from dhrd.runtime import find_shared


def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return round(int(line.split()[1]) / 2**20, 3)


root = Path(sys.argv[1]) / "small-llama"
if not (root / "config.json").is_file():
    tok = AutoTokenizer.from_pretrained(find_shared("models/gpt2-tokenizer", "DHRD_GPT2_TOKENIZER"))
    tok.save_pretrained(root)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(root)
print("dhrd from", dhrd.__file__, "start", rss(), flush=True)
out = Path(sys.argv[1])
for seed in range(1, 6):
    args = DHRDTrainingArguments(
        output_dir=str(out / f"cell-{seed}"),
        task="cb",
        data_dir=str(find_shared("data/superglue", "DHRD_SUPERGLUE")),
        backbone=str(root),
        max_train_examples=16,
        max_eval_examples=16,
        num_train_epochs=1,
        lora=False,
        learning_rate=1e-3,
        per_device_train_batch_size=8,
        bf16=False,
        max_length=512,
        truncation="left",
        best_epoch=False,
        seed=seed,
        resume=False,
    )
    train(args)
    print(f"after cell {seed}: RSS {rss()} GB (no extra gc)", flush=True)
