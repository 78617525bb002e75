"""Teachers that write rationales, behind one small interface (``Teacher``): chat requests in, generations out.

* ``LocalTeacher``: a transformers causal LM (hub name, directory or GGUF file), batched generation with
  left padding and the KV cache, bf16 where the CPU supports it.
* ``OpenAITeacher``: any OpenAI-compatible server (vLLM, Ollama, llama.cpp, OpenAI) through the official
  ``openai`` client, N requests in flight; the client retries timeouts, 429 and 5xx with back-off.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from ..errors import DHRDInputError
from .prompts import TeacherItem


@dataclass
class Generation:
    text: str | None
    completion_tokens: int = 0
    finish_reason: str | None = None


@dataclass
class Request:
    item: TeacherItem
    messages: list[dict]
    attempt: int = 0


class Teacher:
    """Turns chat requests into generations, yielding ``(request, generation)`` in completion order."""

    name: str

    def generate(self, requests: Sequence[Request], temperature: float, max_new_tokens: int, seed: int):
        raise NotImplementedError

    def close(self) -> None:
        pass


def teacher_slug(name: str) -> str:
    """A file-system-safe name for cache folders."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.rstrip("/").split("/")[-1]).strip("_") or "teacher"


def teacher_name(model: str, gguf_file: str | None = None, base_url: str | None = None) -> str:
    """The name a teacher's rows are recorded under (and its cache folder named by): known before it loads."""
    return f"openai:{model}" if base_url else f"local:{teacher_slug(gguf_file or model)}"


# ------------------------------------------------------------------------------------------ local model
class LocalTeacher(Teacher):
    """A local causal LM decoding through ``generation.generate_batches``: each batch's rows are yielded the
    moment the batch finishes, so the run appends them to its cache before the next batch is decoded."""

    def __init__(self, model: str, gguf_file: str | None = None, batch_size: int = 8, bf16: bool | None = None):
        import torch

        from ..modeling import load_causal_lm, load_tokenizer, resolve_backbone
        from ..runtime import bf16_supported

        path = resolve_backbone(model, gguf_file)
        self.name = teacher_name(model, gguf_file)
        self.bf16 = bf16_supported() if bf16 is None else bf16
        self.tokenizer = load_tokenizer(path)
        # Plain bf16 weights (not autocast): half the memory traffic per decoded token, which is the cost.
        self.model, _ = load_causal_lm(path, dtype=torch.bfloat16 if self.bf16 else torch.float32)
        self.model.eval()
        self.batch_size = batch_size

    def generate(self, requests, temperature, max_new_tokens, seed):
        from .generation import chat_prompt_ids, generate_batches

        prompts = [chat_prompt_ids(self.tokenizer, r.messages) for r in requests]
        batches = generate_batches(
            self.model,
            self.tokenizer,
            prompts,
            batch_size=self.batch_size,
            max_new_tokens=max_new_tokens,
            do_sample=temperature > 0,
            temperature=temperature,
            seed=seed,
        )
        for batch in batches:
            for i, output in zip(batch.indices, batch.outputs):
                finish = "stop" if output.stopped else "length"
                yield requests[i], Generation(output.text, output.new_tokens, finish)


# ---------------------------------------------------------------------------------------------- server
class OpenAITeacher(Teacher):
    """Chat completions from an OpenAI-compatible server. The key is read from ``api_key_env`` (servers
    that need none accept any value). The official client retries connection errors, timeouts, 408, 409,
    429 and 5xx with exponential back-off; any other 4xx stops the run with the server's message."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 4,
    ):
        import openai

        self.openai = openai
        self.base_url, self.model = base_url, model
        self.client = openai.OpenAI(
            base_url=base_url,
            api_key=os.environ.get(api_key_env) or "not-needed",
            timeout=timeout,
            max_retries=max_retries,
        )
        self.concurrency = max(1, concurrency)
        self.name = teacher_name(model, base_url=base_url)

    def _one(self, request: Request, temperature: float, max_new_tokens: int, seed: int) -> Generation:
        openai = self.openai
        try:
            response = self.client.chat.completions.create(
                model=self.model,
                messages=request.messages,
                temperature=temperature,
                max_tokens=max_new_tokens,
                seed=seed,
            )
        except openai.APITimeoutError:
            raise DHRDInputError(
                f"{self.base_url}: request for example {request.item.idx} timed out after every retry "
                "(raise --timeout, or lower --concurrency)"
            ) from None
        except openai.APIConnectionError as error:
            raise DHRDInputError(f"{self.base_url}: cannot reach the server ({error.__cause__ or error})") from None
        except openai.APIStatusError as error:
            raise DHRDInputError(
                f"{self.base_url}: HTTP {error.status_code} for example {request.item.idx}: {_server_message(error)}"
            ) from None
        choices = getattr(response, "choices", None)
        if not choices:
            return Generation(None, 0, "no_choice")
        content = getattr(choices[0].message, "content", None)
        usage = getattr(response, "usage", None)
        tokens = getattr(usage, "completion_tokens", None) or 0
        return Generation(content if isinstance(content, str) else None, tokens, choices[0].finish_reason)

    def generate(self, requests, temperature, max_new_tokens, seed):
        pending = iter(requests)
        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = {}

            def submit() -> bool:
                request = next(pending, None)
                if request is None:
                    return False
                futures[pool.submit(self._one, request, temperature, max_new_tokens, seed)] = request
                return True

            while len(futures) < self.concurrency and submit():
                pass
            try:
                while futures:
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for future in done:
                        request = futures.pop(future)
                        yield request, future.result()
                        submit()
            finally:
                for future in futures:
                    future.cancel()

    def close(self) -> None:
        self.client.close()


def _server_message(error) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
        return str(inner)[:300]
    return str(error)[:300]
