"""The input-length policy, one for training and inference: the longest input in tokens (``--max-length``) and
what a longer one does (``--truncation``): stop the run with one line naming it (``error``), or lose its start
(``left``: the question and answer a task's text ends with are kept). Light: no torch."""

from __future__ import annotations

from ..errors import DHRDInputError

TRUNCATIONS = ("error", "left")

# dhrd train's --max-length; a trained model saves its own and inference reads it back (``inference_limits``)
DEFAULT_MAX_LENGTH = 512
# The SuperGLUE runs' setting, with --truncation left: the example reproduce configs' [train] max_length
# (examples/reproduce/*.toml; a test holds them to it), so `dhrd benchmark --train` times the step those runs take.
SUPERGLUE_MAX_LENGTH = 768
# Not a training setting: the cap of inference with a model from elsewhere (no saved --max-length) whose
# config and tokenizer name no context length either.
UNKNOWN_CONTEXT_LENGTH = 2048


def check_truncation(truncation: str) -> str:
    if truncation not in TRUNCATIONS:
        raise DHRDInputError(f"--truncation must be 'error' or 'left', not {truncation!r}")
    return truncation


def encode_texts(texts: list[str], tokenizer, max_length: int, truncation: str) -> list[list[int]]:
    """Token ids of each input, exactly as ``tokenizer(text)`` (and so ``pipeline``) gives them; with
    ``truncation='left'`` the start is dropped, as a tokenizer saved with ``truncation_side='left'`` does."""
    if truncation == "left":
        side = tokenizer.truncation_side
        tokenizer.truncation_side = "left"
        try:
            return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        finally:
            tokenizer.truncation_side = side
    return tokenizer(texts, verbose=False)["input_ids"]  # lengths are checked by the caller, who names the input


def too_long_message(lengths: list[int], max_length: int, source: str, names: list | None = None) -> str | None:
    """The one line an input longer than ``max_length`` stops a run with: the file (or split) and the first
    row too long, how many are and what to change; None when every input fits."""
    too_long = [k for k, n in enumerate(lengths) if n > max_length]
    if not too_long:
        return None
    first, longest = too_long[0], max(lengths[k] for k in too_long)
    name = names[first] if names is not None else f"input {first + 1}"
    return (
        f"{source}: {name}: {lengths[first]} tokens; {len(too_long)} of {len(lengths)} inputs are longer than "
        f"--max-length {max_length} (longest {longest} tokens); raise --max-length to {longest} (memory grows "
        "with it), or pass --truncation left to drop the start of the passage and keep the question and answer"
    )


def encode_within(
    texts: list[str], tokenizer, max_length: int, truncation: str, source: str, names: list | None = None
) -> list[list[int]]:
    """Token ids under the policy: an input longer than ``max_length`` is an error (``too_long_message``), or
    with ``truncation='left'`` loses its start; every other input is encoded as ``tokenizer(text)`` encodes it.
    ``names``: how the message names each input (``row 7``), else by its position."""
    ids = encode_texts(texts, tokenizer, max_length, "none")
    if check_truncation(truncation) == "error":
        message = too_long_message([len(row) for row in ids], max_length, source, names)
        if message:
            raise DHRDInputError(message)
        return ids
    too_long = [k for k, row in enumerate(ids) if len(row) > max_length]
    if not too_long:
        return ids
    for k, row in zip(too_long, encode_texts([texts[k] for k in too_long], tokenizer, max_length, "left")):
        ids[k] = row
    return ids
