"""The saved model on the Hugging Face Hub: its model card (``README.md``) and ``dhrd push``.

The card is written with ``huggingface_hub``'s ``ModelCard`` from what the run recorded: the model's
``config.json`` (labels, head, the portable data settings), the run's ``train_args.json`` and
``metrics.json``, and any ``eval-<split>.json`` that ``dhrd evaluate`` wrote beside the weights. It names
no path of this machine: data files by their names, the backbone by its hub id where one is known.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import CommitOperationAdd, EvalResult, HfApi, ModelCard, ModelCardData, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id

from .data.tasks import TASKS
from .errors import DHRDInputError
from .modeling import (
    SPEC_KEY,
    backbone_source,
    find_model_dir,
    hub_backbone_name,
    portable_config,
    portable_spec,
    run_settings,
)
from .runtime import write_text_atomic

logger = logging.getLogger(__name__)

CARD = "README.md"
PAPER = "https://arxiv.org/abs/2509.21487"
SUPERGLUE_HUB = "aps/super_glue"
MODEL_ID_PLACEHOLDER = "<user>/<model>"  # the usage snippets' model id until `dhrd push` names the repository
# Licences of known backbones (the fine-tuned weights inherit them)
KNOWN_LICENSES = {"HuggingFaceTB/SmolLM2-135M-Instruct": "apache-2.0"}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
# Never uploaded: evaluate's JSON (it names local paths; its numbers are in the card), temporary files
LOCAL_ONLY = ("eval-", ".")
METRIC_NAMES = {
    "f1": "macro-F1",  # CB's official F1
    "macro_f1": "macro-F1",  # a user file's or dataset's
    "f1a": "F1a",
    "em": "exact match",
    "accuracy": "accuracy",
    "score": "score",
}
HUB_METRIC_TYPES = {"macro_f1": "f1"}  # the hub's (evaluate's) metric id, where dhrd's key differs


# ------------------------------------------------------------------------------------------------ reading
def saved_config(model_dir: Path) -> dict:
    """``config.json`` of a model dhrd saved (it carries the ``dhrd`` settings), else one line and exit 2."""
    path = Path(model_dir) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DHRDInputError(f"{model_dir}: not a saved dhrd model (no readable config.json)") from None
    if not isinstance(config, dict) or not isinstance(config.get(SPEC_KEY), dict):
        raise DHRDInputError(f"{path}: not a dhrd model (no '{SPEC_KEY}' settings; train one with dhrd train)")
    if not any((Path(model_dir) / name).is_file() for name in WEIGHT_FILES):
        raise DHRDInputError(f"{model_dir}: no weights ({', '.join(WEIGHT_FILES)}) beside config.json")
    if not (Path(model_dir) / "tokenizer_config.json").is_file():
        raise DHRDInputError(f"{model_dir}: no tokenizer (tokenizer_config.json) beside config.json")
    return config


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def saved_evaluations(model_dir: Path) -> list[dict]:
    """What ``dhrd evaluate`` wrote beside the weights (``eval-<split>.json``), in name order."""
    found = [_read_json(p) for p in sorted(Path(model_dir).glob("eval-*.json"))]
    return [m for m in found if isinstance(m, dict) and isinstance(m.get("tasks"), dict)]


# ----------------------------------------------------------------------------------------------- the card
def _dataset(spec: dict) -> tuple[str, str | None]:
    """(hub dataset type, the data's name) of the training data."""
    data = spec.get("data") or {}
    if data.get("tasks"):
        return SUPERGLUE_HUB, "SuperGLUE " + ", ".join(TASKS[t].folder for t in data["tasks"] if t in TASKS)
    if data.get("dataset"):  # a datasets dataset: a hub name as given, a saved directory by its name
        return "custom", data["dataset"]
    name = data.get("validation_file") or data.get("train_file") or "own data"
    loader = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
    return loader.get(Path(name).suffix.lower(), "custom"), name


def evaluation_source(evaluation: dict) -> str | None:
    """What a ``dhrd evaluate`` JSON scored beyond the model's own data: a file by its name, a dataset by its
    name (and configuration)."""
    if evaluation.get("file"):
        return evaluation["file"]
    if evaluation.get("dataset"):
        config = evaluation.get("dataset_config")
        return evaluation["dataset"] + (f" ({config})" if config else "")
    return None


def eval_results(spec: dict, metrics: dict, split: str, source: str | None = None) -> list[EvalResult]:
    """The hub's ``model-index`` entries of one scored split: every metric of every task (in percent)."""
    dataset_type, dataset_name = _dataset(spec)
    results = []
    for task, values in metrics.get("tasks", {}).items():
        config = TASKS[task].hub_config if task in TASKS and dataset_type == SUPERGLUE_HUB else None
        name = f"SuperGLUE {TASKS[task].folder}" if config else (source or dataset_name)
        for metric, value in values.items():
            if metric in METRIC_NAMES and isinstance(value, int | float):
                results.append(
                    EvalResult(
                        task_type="text-classification",
                        task_name="Text Classification",
                        dataset_type=dataset_type if source is None else "custom",
                        dataset_name=name,
                        dataset_config=config,
                        dataset_split=split,
                        metric_type=HUB_METRIC_TYPES.get(metric, metric),
                        metric_name=METRIC_NAMES[metric],
                        metric_value=round(float(value), 2),
                    )
                )
    return results


def run_splits(metrics: dict) -> list[tuple[str, dict, str | None]]:
    """(split, scores, source) of each split the training run scored: its validation split (unless
    --skip-validation; the model's own data), and its --test-file, scored once by the kept model (named by the
    file's name: never this machine's path)."""
    splits = [(metrics.get("split", "validation"), metrics, None)] if metrics.get("tasks") else []
    test = metrics.get("test") or {}
    return splits + ([("test", test, Path(test.get("file") or "test file").name)] if test.get("tasks") else [])


def card_data(config: dict, settings: dict, metrics: dict, evaluations: list[dict], model_name: str) -> ModelCardData:
    spec = portable_spec(config[SPEC_KEY])
    # from the run's own record (a local path is recognised there; the config holds only its name)
    base = hub_backbone_name(backbone_source(settings.get("backbone"), settings.get("gguf_file")))
    dataset_type, _ = _dataset(spec)
    results = [r for split, scores, source in run_splits(metrics) for r in eval_results(spec, scores, split, source)]
    for evaluation in evaluations:
        results += eval_results(spec, evaluation, evaluation.get("split", "validation"), evaluation_source(evaluation))
    # evaluate on the run's own validation split repeats the run's entries: the hub lists each result once
    results = list({repr(vars(r)): r for r in results}.values())
    tags = ["dhrd", "dual-head-reasoning-distillation", "text-classification"]
    if dataset_type == SUPERGLUE_HUB:
        tags.append("superglue")
    return ModelCardData(
        model_name=model_name,
        base_model=base,
        library_name="transformers",
        pipeline_tag="text-classification",
        datasets=[SUPERGLUE_HUB] if dataset_type == SUPERGLUE_HUB else None,
        license=KNOWN_LICENSES.get(base or ""),
        tags=tags,
        eval_results=results or None,
    )


def _metrics_rows(metrics: dict, split: str, source: str) -> list[str]:
    rows = []
    for task, values in metrics.get("tasks", {}).items():
        shown = ", ".join(f"{METRIC_NAMES[k]} {v:.2f}" for k, v in values.items() if k in METRIC_NAMES and k != "score")
        score, examples = values.get("score", 0.0), values.get("examples")
        # the score of always answering one label on the same rows (scores written before it was recorded: none)
        floor = metrics.get("floors", {}).get(task)
        floor = f"{floor['score']:.2f}" if floor else "-"
        rows.append(f"| {split} | {source} | {task} | {shown} | {score:.2f} | {floor} | {examples} |")
    return rows


def _settings_rows(settings: dict, spec: dict, metrics: dict) -> list[str]:
    method = spec.get("method", settings.get("method"))
    lora = (
        f"r {settings.get('lora_r')}, alpha {settings.get('lora_alpha')}, dropout {settings.get('lora_dropout')} "
        "(merged into the weights)"
        if settings.get("lora", True)
        else "none (full fine-tuning)"
    )
    batch = settings.get("per_device_train_batch_size")
    if settings.get("gradient_accumulation_steps", 1) > 1:
        batch = f"{batch} x {settings['gradient_accumulation_steps']} accumulation steps"
    rows = {
        "method": method,
        "loss": f"beta * L_cls + alpha * L_reason, alpha {spec.get('alpha')}, beta {spec.get('beta')}",
        "rationale mode": spec.get("rationale_mode") or "-",
        "rationales": Path(settings["rationales"]).name if settings.get("rationales") else "-",
        "epochs": settings.get("num_train_epochs"),
        "epoch kept": ("best on validation" if settings.get("best_epoch", True) else "last")
        if float(settings.get("num_train_epochs") or 1) > 1
        else None,
        "learning rate": f"{settings.get('learning_rate')} ({settings.get('lr_scheduler_type')}, "
        f"{settings.get('warmup_steps')} warm-up steps, weight decay {settings.get('weight_decay')})",
        "batch size": batch,
        "LoRA": lora,
        "head / pooling": f"{settings.get('head')} / {settings.get('pooling')}",
        "input format": (spec.get("data") or {}).get("input_format"),
        "max length / truncation": f"{spec.get('max_length')} tokens / {spec.get('truncation')}",
        "training rows": metrics.get("train_rows"),
        "rows without a rationale": metrics.get("rows_without_rationale"),
        "seed": settings.get("seed"),
        "training time": f"{metrics['train_seconds']} s" if metrics.get("train_seconds") is not None else None,
    }
    return [f"| {k} | {v} |" for k, v in rows.items() if v is not None]


def _input_note(spec: dict) -> str:
    data = spec.get("data") or {}
    if data.get("tasks"):
        return (
            "The input is the task's formatted prompt, as `dhrd` builds it: "
            "`dhrd.load_task_split(task, 'validation', input_format)[i].text` shows it."
        )
    parts = [f"the `{data.get('text_column')}` column"]
    if data.get("text_pair_column"):
        parts.append(f"a newline and the `{data['text_pair_column']}` column")
    if data.get("instruction") and data.get("instruction_in_input"):
        parts.append(f"a newline and the instruction {data['instruction']!r}")
    return "The input is " + ", then ".join(parts) + "."


def _usage(config: dict, model_id: str) -> str:
    native = config.get("model_type") != "dhrd"
    if native:
        plain = (
            "The head is linear and pools the last token, so the model is the backbone's own "
            "`*ForSequenceClassification` checkpoint and loads with no custom code:\n\n"
            "```python\nfrom transformers import pipeline\n\n"
            f'classify = pipeline("text-classification", model="{model_id}", top_k=None)\n'
            'print(classify("your input text"))\n```\n'
        )
    else:
        plain = (
            "The head is the paper's MLP, so the modeling code is saved beside the weights "
            "(`trust_remote_code=True` runs it):\n\n"
            "```python\nimport torch\n"
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
            f'tokenizer = AutoTokenizer.from_pretrained("{model_id}")\n'
            f'model = AutoModelForSequenceClassification.from_pretrained("{model_id}", trust_remote_code=True)\n'
            'inputs = tokenizer(["your input text"], return_tensors="pt")\n'
            "with torch.no_grad():\n"
            "    probabilities = model(**inputs).logits.softmax(-1)[0]\n"
            "print({model.config.id2label[i]: float(p) for i, p in enumerate(probabilities)})\n```\n"
        )
    with_dhrd = (
        "With `dhrd` (the length policy of training, batches bounded in memory, streamed and resumable files):\n\n"
        "```bash\n"
        f"hf download {model_id} --local-dir model\n"
        "dhrd predict --model model --file new.csv --output predictions.jsonl\n"
        "```\n\n"
        "```python\nfrom dhrd import load_classifier, predict_proba\n\n"
        'model, tokenizer = load_classifier("model")\n'
        'probabilities = predict_proba(model, tokenizer, ["your input text"])\n```\n'
    )
    return f"### With transformers only\n\n{plain}\n### With dhrd\n\n{with_dhrd}"


def model_card(
    config: dict, settings: dict, metrics: dict, evaluations: list[dict] = (), model_id: str | None = None
) -> ModelCard:
    """The card of a saved model: hub metadata (base model, library, pipeline tag, datasets, the scores as
    ``model-index``) and a body with the method, the training settings, the scores of each split, the labels
    and how to use the model with and without dhrd."""
    spec = portable_spec(config[SPEC_KEY])
    model_id = model_id or MODEL_ID_PLACEHOLDER
    backbone = spec.get("backbone") or "the backbone"
    _, data_name = _dataset(spec)
    title = f"{data_name} classifier on {backbone.split('/')[-1]}, trained with dhrd"
    default_name = f"dhrd-{Path(data_name).stem}-{backbone.split('/')[-1]}".replace(" ", "-").replace(",", "").lower()
    name = model_id.split("/")[-1] if model_id != MODEL_ID_PLACEHOLDER else default_name
    data = card_data(config, settings, metrics, list(evaluations), model_name=name)
    labels = [config["id2label"][k] for k in sorted(config["id2label"], key=int)]
    scores = [
        row for split, run, _ in run_splits(metrics) for row in _metrics_rows(run, split, "training run's evaluation")
    ]
    for evaluation in evaluations:
        source = evaluation_source(evaluation) or "dhrd evaluate"
        scores += _metrics_rows(evaluation, evaluation.get("split", "validation"), source)
    reasoning = (
        "During training the backbone's own LM head (the reasoning head) also learned a teacher's rationales "
        f"(`[x, Reasoning:, r, Final Answer:, y]`, weighted by alpha = {spec.get('alpha')}); it is train-time only."
        if spec.get("method") == "dhrd"
        else "This is the paper's pooled baseline: alpha = 0, no reasoning head."
    )
    body = f"""
# {title}

A text classifier made from the decoder-only language model `{backbone}` by
[Dual-Head Reasoning Distillation]({PAPER}) (DHRD; Xu et al., arXiv 2509.21487) with the `dhrd`
package. A pooled classification head reads the hidden state of the last input token.
{reasoning}
At inference the model is a plain pooled classifier: one forward pass per input, no generated text.

**Labels** (in `id2label` order): {", ".join(f"`{label}`" for label in labels)}.
{_input_note(spec)}

## Scores

Metrics in percent, on the original examples (each task's official metric; `score` averages a task's pair;
`floor`: the score of always answering the best single label on the same examples, which a model must beat to
have learnt anything).

| split | scored by | task | metrics | score | floor | examples |
|---|---|---|---|---:|---:|---:|
{chr(10).join(scores)}

## Training

| setting | value |
|---|---|
{chr(10).join(_settings_rows(settings, spec, metrics))}

## Usage

{_usage(config, model_id)}
## Citation

```bibtex
@article{{xu2025dhrd,
  title   = {{Dual-Head Reasoning Distillation: Improving Classifier Accuracy with Train-Time-Only Reasoning}},
  author  = {{Xu and Zhou and Shukla and Yang and Ruan and Lin and Zou and Liu and Lakshmanan}},
  journal = {{arXiv preprint arXiv:2509.21487}},
  year    = {{2025}}
}}
```
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def _card(model_dir: Path, settings: dict | None, metrics: dict | None, model_id: str | None) -> ModelCard | None:
    """The card of a saved model from its run's ``train_args.json`` and ``metrics.json`` (unless given); None
    for a model from elsewhere (no run beside it)."""
    settings = settings if settings is not None else run_settings(model_dir)
    if metrics is None:
        metrics = _read_json(model_dir.parent / "metrics.json") if settings else None
    if not settings or not metrics:
        return None
    return model_card(saved_config(model_dir), settings, metrics, saved_evaluations(model_dir), model_id)


def write_model_card(
    model_dir: str | Path, settings: dict | None = None, metrics: dict | None = None, model_id: str | None = None
) -> Path | None:
    """Write ``README.md`` beside the weights, atomically. ``settings`` and ``metrics`` default to the run's
    ``train_args.json`` and ``metrics.json``; without them (a model from elsewhere) nothing is written."""
    card = _card(Path(model_dir), settings, metrics, model_id)
    return None if card is None else write_text_atomic(Path(model_dir) / CARD, str(card))


# ------------------------------------------------------------------------------------------------ pushing
def upload_files(model_dir: Path) -> list[str]:
    """The files a push uploads: every file beside the weights but evaluate's JSON and temporary files."""
    return sorted(p.name for p in Path(model_dir).iterdir() if p.is_file() and not p.name.startswith(LOCAL_ONLY))


@dataclass
class PushPlan:
    """What a push sends: each file in the repository by its name, either as it is on disk or, for the card
    (naming the repository) and a config cleaned of local paths, as bytes made in memory."""

    model_dir: Path
    repo_id: str
    files: dict[str, Path | bytes]

    def sizes(self) -> dict[str, int]:
        return {name: len(f) if isinstance(f, bytes) else f.stat().st_size for name, f in self.files.items()}

    def operations(self) -> list[CommitOperationAdd]:
        return [CommitOperationAdd(path_in_repo=name, path_or_fileobj=f) for name, f in self.files.items()]


def push_plan(model_dir: str | Path, repo_id: str) -> PushPlan:
    """What ``push`` would upload, read from disk and changed in memory only: the local folder is never
    written. Bad input (no saved dhrd model, an invalid repository id) is one line, before any network."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise DHRDInputError(f"{repo_id}: not a hub repository id ({_first_line(error)})") from None
    model_dir = find_model_dir(model_dir)
    config = saved_config(model_dir)
    files: dict[str, Path | bytes] = {name: model_dir / name for name in upload_files(model_dir)}
    clean = portable_config(config)
    if clean != config:  # saved by an older dhrd, with this machine's paths
        logger.warning("%s: config.json names local paths; the pushed copy names them by their names", model_dir)
        files["config.json"] = (json.dumps(clean, indent=2, sort_keys=True) + "\n").encode()
    card = _card(model_dir, None, None, repo_id)
    if card is not None:
        files[CARD] = str(card).encode()
    elif CARD in files:  # a card from elsewhere: only its placeholder id is filled in
        files[CARD] = (model_dir / CARD).read_text(encoding="utf-8").replace(MODEL_ID_PLACEHOLDER, repo_id).encode()
    else:
        logger.warning("%s: no run beside it to write a model card from; pushing without one", model_dir)
    return PushPlan(model_dir, repo_id, dict(sorted(files.items())))


def describe(plan: PushPlan, private: bool = False) -> list[str]:
    """``dhrd push --dry-run``'s lines: the target and each file with its size."""
    sizes = plan.sizes()
    created = "private" if private else "public"
    lines = [f"would push {len(sizes)} files ({_size(sum(sizes.values()))}) from {plan.model_dir} to "
             f"{constants.ENDPOINT}/{plan.repo_id} (created {created} where it does not exist):"]  # fmt: skip
    width = max(len(name) for name in sizes)
    for name, size in sizes.items():
        made = " (made for this push)" if isinstance(plan.files[name], bytes) else ""
        lines.append(f"  {name:<{width}}  {_size(size):>9}{made}")
    return lines


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def push(
    model_dir: str | Path, repo_id: str, private: bool = False, token: str | None = None, api: HfApi | None = None
) -> str:
    """Upload a saved model (weights, config, tokenizer, modeling code, card) to the hub repository
    ``repo_id``, creating it where needed, in one commit. Returns the repository's URL.

    The card naming the repository is made in memory and sent as the commit's README.md: the local folder is
    never written, so a failed push (no network, a refused token) leaves it exactly as it was, and pushing one
    model to two repositories leaves no card naming whichever came last. Every network or hub failure is
    one line (``DHRDInputError``)."""
    plan = push_plan(model_dir, repo_id)
    api = api or HfApi(token=token)
    if token is None and api.token is None and get_token() is None and not constants.is_offline_mode():
        raise DHRDInputError(f"{repo_id}: not pushed: no hub token (log in with `hf auth login`, set HF_TOKEN or "
                             "pass --token)")  # fmt: skip
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        # a name without a namespace is created in the token's own: the card names the full id
        full_id = getattr(url, "repo_id", None) or repo_id
        if full_id != repo_id:
            plan = push_plan(plan.model_dir, full_id)
        api.create_commit(
            repo_id=full_id, operations=plan.operations(), commit_message="Upload a DHRD classifier (dhrd push)"
        )
    except PUSH_FAILURES as error:
        raise DHRDInputError(push_failure(repo_id, error, api.endpoint)) from None
    return str(url)


def trained_repo_id(args) -> str:
    """Trainer's repository for a run: ``hub_model_id``, else the run directory's name (in the token's
    namespace)."""
    return args.hub_model_id or Path(args.output_dir).name


def push_trained(model_dir: str | Path, args) -> str:
    """``--push_to_hub``: the saved model folder with its card, once the run is saved. Trainer's own pushes (the
    checkpoint folder's LoRA adapter, at every save) are not the usable model, and dhrd turns them off
    (``DHRDTrainingArguments.trainer_arguments``). A failure is one line that says the model is saved."""
    repo_id = trained_repo_id(args)
    try:
        url = push(model_dir, repo_id, private=bool(args.hub_private_repo), token=args.hub_token)
    except DHRDInputError as error:
        retry = f"dhrd push {model_dir} {repo_id}"
        raise DHRDInputError(f"{error}; the trained model is saved: `{retry}` retries") from None
    logger.info("pushed %s to %s", model_dir, url)
    return url


# huggingface_hub's HTTP client's own root error (httpx's or httpx2's HTTPError; requests' errors, in hub < 1.0,
# are OSErrors): connection refused, a name that does not resolve, timeouts, a dropped connection
TRANSPORT_ERROR = next(base for base in HfHubHTTPError.__bases__ if base is not OSError)
PUSH_FAILURES = (HfHubHTTPError, TRANSPORT_ERROR, OSError, HFValidationError)  # offline mode is an OSError
HTTP_HINTS = {
    401: "the hub refused the token: log in with `hf auth login`, set HF_TOKEN or pass --token (with write access)",
    403: "the token may not write there: use a token with write access to that namespace",
    404: "no such repository or namespace visible to this token",
}


def push_failure(repo_id: str, error: Exception, endpoint: str) -> str:
    """One line saying why a push failed and what to do; the local model is as it was."""
    prefix = f"{repo_id}: not pushed (the local model is unchanged): "
    if isinstance(error, OfflineModeIsEnabled):
        return prefix + "HF_HUB_OFFLINE is set; pushing needs the network (unset it)"
    if isinstance(error, HfHubHTTPError) and getattr(error, "response", None) is not None:
        status = error.response.status_code
        said = _first_line(error.server_message or "") if getattr(error, "server_message", None) else ""
        hint = HTTP_HINTS.get(status, _first_line(error))
        return prefix + f"HTTP {status} from {endpoint}: {hint}" + (f" (hub: {said[:200]})" if said else "")
    if isinstance(error, TRANSPORT_ERROR) or isinstance(error, ConnectionError | TimeoutError):
        return prefix + f"cannot reach {endpoint} ({type(error).__name__}: {_first_line(error)[:200]})"
    return prefix + _first_line(error)[:300]


def _first_line(error) -> str:
    text = str(error)
    return next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)


__all__ = [
    "PushPlan",
    "describe",
    "model_card",
    "push",
    "push_plan",
    "push_trained",
    "upload_files",
    "write_model_card",
]
