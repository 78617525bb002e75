"""Backbones and the classifier: build from a decoder LM, save for plain transformers, load back.

A linear head with last-token pooling is saved as the backbone's own ``*ForSequenceClassification``
checkpoint (loads with no custom code: ``AutoModelForSequenceClassification``, ``pipeline``, vLLM). Any
other head or pooling is saved with its modeling code beside the weights (``trust_remote_code=True``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
)

from .errors import DHRDInputError, cache_root
from .hf.configuration_dhrd import DHRDConfig
from .hf.modeling_dhrd import DHRDForSequenceClassification
from .runtime import atomic_directory, find_shared

logger = logging.getLogger(__name__)

DHRDConfig.register_for_auto_class()
DHRDForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
# the installed classes, so that Auto* loads of a DHRD directory (the tokenizer's too) never need its .py files
AutoConfig.register(DHRDConfig.model_type, DHRDConfig, exist_ok=True)

DEFAULT_BACKBONE_HUB = "HuggingFaceTB/SmolLM2-135M-Instruct"
SHARED_SMOLLM2 = Path("models") / "smollm2-135m-instruct-q4_1" / "SmolLM2-135M-Instruct.Q4_1.gguf"
SPEC_KEY = "dhrd"  # the config attribute that records how inputs were built
# Local backbone files whose hub model is known: a saved model names the hub model, not this machine's file.
KNOWN_HUB_NAMES = {SHARED_SMOLLM2.name: DEFAULT_BACKBONE_HUB}
RUN_SETTINGS = "train_args.json"  # beside model/ in a run directory: the run's arguments, local paths included
REASONING_HEAD_FILE = "reasoning_head.safetensors"  # the LM head kept beside a classifier (--keep-reasoning-head)


def default_backbone() -> str:
    """``$DHRD_BACKBONE``, the shared SmolLM2-135M-Instruct GGUF, or else its hub name."""
    found = find_shared(SHARED_SMOLLM2, "DHRD_BACKBONE")
    return str(found) if found is not None else DEFAULT_BACKBONE_HUB


def split_backbone(name_or_path: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """``dir/file.gguf`` -> (``dir``, ``file.gguf``); anything else is passed on unchanged."""
    if gguf_file is None and name_or_path.lower().endswith(".gguf"):
        path = Path(name_or_path)
        if not path.is_file():
            raise DHRDInputError(f"{path}: backbone GGUF file not found")
        return str(path.parent), path.name
    return name_or_path, gguf_file


def backbone_source(backbone: str | None, gguf_file: str | None = None) -> str:
    """The backbone as the user named it (``dir/file.gguf`` when the GGUF file is given apart)."""
    if backbone and gguf_file:
        return str(Path(backbone) / gguf_file)
    return str(backbone or default_backbone())


def hub_backbone_name(backbone: str) -> str | None:
    """The hub id of a backbone: a hub name as given, a local file whose hub model is known (the shared
    SmolLM2 GGUF), else None (any other local folder or file)."""
    path = Path(backbone)
    converted = re.sub(r"-[0-9a-f]{16}$", "", path.name) + ".gguf"  # a GGUF's conversion cache (gguf_to_hf)
    for name in (path.name, converted):
        if name in KNOWN_HUB_NAMES:
            return KNOWN_HUB_NAMES[name]
    if path.exists() or path.is_absolute() or backbone.startswith((".", "~")):
        return None
    return backbone if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", backbone) else None


def portable_backbone_name(backbone: str) -> str:
    """What a saved model calls its backbone: its hub id where one is known, else the local name's last part
    (never a path of this machine)."""
    return hub_backbone_name(backbone) or Path(backbone).name


def portable_spec(spec: dict) -> dict:
    """The saved settings without this machine's paths: a data folder is dropped (elsewhere SuperGLUE loads
    from the hub; in its run directory a model gets it back from ``train_args.json``), data files keep only
    their names (evaluation and prediction of a file-trained model always take ``--file``), and the backbone
    is named by ``portable_backbone_name``. What loading, evaluation and prediction read is unchanged."""
    spec = copy.deepcopy(spec)
    data = spec.get("data") or {}
    if data.get("data_dir"):
        data["data_dir"] = None
    for key in ("train_file", "validation_file"):
        if data.get(key):
            data[key] = Path(data[key]).name
    if spec.get("backbone") and spec["backbone"] != "default":
        spec["backbone"] = portable_backbone_name(spec["backbone"])
    return spec


def portable_config(config: dict) -> dict:
    """A saved ``config.json`` without this machine's paths: the DHRD settings through ``portable_spec``, and
    the backbone's ``_name_or_path`` (a GGUF's conversion cache is a local folder) by the backbone's name."""
    clean = dict(config)
    if isinstance(clean.get(SPEC_KEY), dict):
        clean[SPEC_KEY] = portable_spec(clean[SPEC_KEY]) or None
    text_config = clean.get("text_config")
    if isinstance(text_config, dict) and text_config.get("_name_or_path"):
        named = (clean.get(SPEC_KEY) or {}).get("backbone")
        source = named if named not in (None, "default") else text_config["_name_or_path"]
        clean["text_config"] = dict(text_config, _name_or_path=portable_backbone_name(source))
    return clean


def check_decoder_only(config, name: str) -> None:
    model_type = getattr(config, "model_type", None)
    text_type = getattr(config.get_text_config(), "model_type", model_type)
    if (
        getattr(config, "is_encoder_decoder", False)
        or text_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        or text_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    ):
        raise DHRDInputError(
            f"backbone {name!r} is a {model_type!r} model, not a decoder-only language model "
            "(use e.g. Llama/SmolLM2, Qwen2/3, Gemma3 or GPT-2)"
        )


def _custom_code_error(name: str, what: str) -> DHRDInputError:
    return DHRDInputError(
        f"{name}: {what} needs Python code shipped with the model, which dhrd does not run by default; "
        "pass --trust-remote-code (trust_remote_code=True) only if you trust its source"
    )


def _needs_custom_code(error: Exception) -> bool:
    return isinstance(error, ValueError) and "trust_remote_code=True" in str(error)


def _load_backbone_config(name: str, gguf_file: str | None, trust_remote_code: bool = False):
    try:
        if gguf_file:
            return AutoConfig.from_pretrained(name, gguf_file=gguf_file)
        return AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        if _needs_custom_code(error):
            raise _custom_code_error(name, "the backbone's config") from None
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DHRDInputError(
            f"backbone {name!r} cannot be found: it is not a local model directory or GGUF file, and the "
            f"Hugging Face hub did not provide it ({reason[:160]})"
        ) from None


def _gguf_cache_dir(directory: str, gguf_file: str) -> Path:
    path = Path(directory) / gguf_file
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_root() / "gguf" / f"{path.stem}-{key}"


def gguf_to_hf(directory: str, gguf_file: str) -> Path:
    """Dequantise a GGUF once (about 25 s for SmolLM2) into a cached HF directory that reloads in seconds.
    Written to a temporary folder and renamed, so a kill never leaves a half-written cache."""
    target = _gguf_cache_dir(directory, gguf_file)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # a message, not a bar: transformers' GGUF reader reports no progress, and the minute would look hung
    logger.info("converting %s to a transformers checkpoint, once (about a minute on 2 cores)...", gguf_file)
    began = time.perf_counter()
    # a GGUF holds no code, but files beside it (a tokenizer_config.json with an auto_map) might
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=gguf_file, dtype=torch.float32, trust_remote_code=False
    )
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # gguf-loaded models refuse to save while it is set
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(model.state_dict())
    with atomic_directory(target, replace=False) as tmp:  # another process may finish the same one first
        clean.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if clean.generation_config is not None:
            clean.generation_config.save_pretrained(tmp)
    logger.info("converted in %.0f s; later runs read %s", time.perf_counter() - began, target)
    return target


def resolve_backbone(name_or_path: str | None, gguf_file: str | None = None, trust_remote_code: bool = False) -> str:
    """A directory or hub name transformers loads quickly; GGUF files go through the conversion cache.
    Code shipped with the backbone (``auto_map``) runs only with ``trust_remote_code=True``."""
    name, gguf = split_backbone(name_or_path or default_backbone(), gguf_file)
    if gguf is not None:
        if not (Path(name) / gguf).is_file():
            raise DHRDInputError(f"{Path(name) / gguf}: backbone GGUF file not found")
        check_decoder_only(_load_backbone_config(name, gguf), f"{name}/{gguf}")
        return str(gguf_to_hf(name, gguf))
    check_decoder_only(_load_backbone_config(name, None, trust_remote_code), name)
    return name


def load_tokenizer(name: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The tokenizer of a backbone or model directory; a tokenizer class of its own (``auto_map``) is never
    imported unless ``trust_remote_code=True``: the standard class named in tokenizer_config.json is used."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except ValueError as error:
        if _needs_custom_code(error):
            raise _custom_code_error(name, "the tokenizer") from None
        raise
    return with_pad_token(tokenizer)


def with_pad_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # only used for padding; pooling never looks at it
    return tokenizer


def check_causal_lm(model) -> str:
    """A backbone handed over as a loaded model: a decoder-only causal LM (its LM head is DHRD's reasoning
    head). Returns the name it was loaded from ('' for a model built from a config)."""
    config = getattr(model, "config", None)
    if config is None or not callable(getattr(model, "get_output_embeddings", None)):
        raise DHRDInputError(f"model: a causal LM (AutoModelForCausalLM), not a {type(model).__name__}")
    if isinstance(model, DHRDForSequenceClassification) or model.get_output_embeddings() is None:
        raise DHRDInputError(
            f"model: a causal LM (AutoModelForCausalLM) with its LM head, the reasoning head; a "
            f"{type(model).__name__} has none. Pass the backbone it was built on"
        )
    name = getattr(model, "name_or_path", "") or ""
    check_decoder_only(config, name or type(model).__name__)
    return name


def load_causal_lm(
    name_or_path: str | None = None, gguf_file: str | None = None, dtype=torch.float32, trust_remote_code: bool = False
):
    """The backbone as a causal LM (its LM head is the reasoning head) and its tokenizer."""
    name = resolve_backbone(name_or_path, gguf_file, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, trust_remote_code=trust_remote_code)
    return model, load_tokenizer(name, trust_remote_code=trust_remote_code)


def build_classifier(
    backbone: str | None,
    label_names: tuple[str, ...] | list[str],
    head: str = "linear",
    pooling: str = "last",
    head_dropout: float = 0.1,
    gguf_file: str | None = None,
    seed: int = 0,
    trust_remote_code: bool = False,
    causal_lm=None,
    tokenizer: PreTrainedTokenizerBase | None = None,
):
    """A fresh classifier on a pretrained backbone. Returns (classifier, tokenizer, causal LM); the causal
    LM shares its transformer with the classifier, and its LM head is the train-time reasoning head. A
    ``causal_lm`` already loaded (with its ``tokenizer``) is used as it is, in float32 like a loaded one."""
    if causal_lm is None:
        causal_lm, tokenizer = load_causal_lm(backbone, gguf_file, trust_remote_code=trust_remote_code)
    else:
        check_causal_lm(causal_lm)
        if causal_lm.dtype != torch.float32:
            # the head and the optimiser's master weights are float32; bf16 is autocast per step (--bf16)
            logger.info("the given %s (%s) is trained in float32", type(causal_lm).__name__, causal_lm.dtype)
            causal_lm = causal_lm.float()
        tokenizer = with_pad_token(tokenizer if tokenizer is not None else load_tokenizer(backbone))
    config = DHRDConfig(
        text_config=causal_lm.config,
        pooling=pooling,
        head=head,
        head_dropout=head_dropout,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        pad_token_id=tokenizer.pad_token_id,
    )
    config._name_or_path = str(backbone or default_backbone())  # local during training; saved by name only
    with torch.device("meta"):
        classifier = DHRDForSequenceClassification(config)
    classifier.model = causal_lm.base_model  # the pretrained transformer, shared, not copied
    torch.manual_seed(seed)
    classifier.score = classifier.score.to_empty(device="cpu")
    for module in classifier.score.modules():
        classifier._init_weights(module)
    return classifier, tokenizer, causal_lm


# ----------------------------------------------------------------------------------------------- saving
def can_export_native(model: DHRDForSequenceClassification) -> bool:
    model_type = model.config.text_config.model_type
    return (
        model.config.head == "linear"
        and model.config.pooling == "last"
        and model_type in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
    )


def to_native(model: DHRDForSequenceClassification):
    """The same classifier as the backbone's own ``*ForSequenceClassification`` (linear head, last token)."""
    config = model.config.text_config.__class__.from_dict(model.config.text_config.to_dict())
    config.num_labels = model.config.num_labels
    config.id2label = dict(model.config.id2label)
    config.label2id = dict(model.config.label2id)
    config.pad_token_id = model.config.pad_token_id
    config.architectures = None
    native = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    prefix = native.base_model_prefix
    state = {f"{prefix}.{k}": v for k, v in model.model.state_dict().items()}
    state["score.weight"] = model.score.weight.detach()
    missing, unexpected = native.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"native export does not line up: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return native


def from_native(native) -> DHRDForSequenceClassification:
    """Wrap a standard ``*ForSequenceClassification`` (linear head, last token) as a DHRD classifier."""
    text_config = native.config.__class__.from_dict(native.config.to_dict())
    config = DHRDConfig(
        text_config=text_config,
        head="linear",
        pooling="last",
        num_labels=native.config.num_labels,
        id2label=dict(native.config.id2label),
        label2id=dict(native.config.label2id),
        pad_token_id=native.config.pad_token_id,
    )
    setattr(config, SPEC_KEY, getattr(native.config, SPEC_KEY, None))
    with torch.device("meta"):
        model = DHRDForSequenceClassification(config)
    model.model = native.base_model
    model.score = native.score
    return model


def save_classifier(
    model: DHRDForSequenceClassification,
    tokenizer,
    directory: str | Path,
    spec: dict | None = None,
    max_length: int | None = None,
    truncation: str = "error",
) -> Path:
    """Save for plain transformers, atomically (a temporary folder renamed into place)."""
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        if spec is not None:
            setattr(model.config, SPEC_KEY, spec)
        to_save = to_native(model) if can_export_native(model) else model
        if to_save is not model:
            setattr(to_save.config, SPEC_KEY, getattr(model.config, SPEC_KEY, None))
        to_save.save_pretrained(tmp)
        # config.json travels (dhrd push): no path of this machine in it
        saved_config = Path(tmp) / "config.json"
        clean = portable_config(json.loads(saved_config.read_text()))
        saved_config.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")
        if truncation == "left":
            tokenizer.truncation_side = "left"  # pipeline(..., truncation=True) then cuts as training did
        if max_length:
            tokenizer.model_max_length = max_length
        tokenizer.save_pretrained(tmp)
    return directory


def find_model_dir(path: str | Path) -> Path:
    """A model directory, or a training run's output directory holding ``model/``."""
    path = Path(path)
    if (path / "model" / "config.json").is_file():
        return path / "model"
    if (path / "config.json").is_file():
        return path
    raise DHRDInputError(f"{path}: no trained model here (expected config.json, or model/config.json in a run dir)")


def load_classifier(path: str | Path, dtype=torch.float32, trust_remote_code: bool = False):
    """(classifier, tokenizer) from a directory that ``save_classifier`` wrote, in either format.

    No Python file of the directory is ever imported unless ``trust_remote_code=True``: a DHRD model is
    built from the installed ``dhrd`` package's classes (never from the ``modeling_dhrd.py`` saved beside
    the weights), a native one and the tokenizer from the standard classes their configs name."""
    directory = find_model_dir(path)
    config = json.loads((directory / "config.json").read_text())
    if config.get("model_type") == DHRDConfig.model_type:
        model = DHRDForSequenceClassification.from_pretrained(directory, dtype=dtype)
    else:
        try:
            native = AutoModelForSequenceClassification.from_pretrained(
                directory, dtype=dtype, trust_remote_code=trust_remote_code
            )
        except ValueError as error:
            if _needs_custom_code(error):
                raise _custom_code_error(str(directory), "the model") from None
            raise
        model = from_native(native)
    _restore_data_dir(model, directory)
    model.eval()
    return model, load_tokenizer(str(directory), trust_remote_code=trust_remote_code)


def run_settings(model_dir: str | Path) -> dict:
    """The training arguments of the run a model directory belongs to (``<run>/train_args.json`` beside
    ``<run>/model``), or ``{}`` for a model from elsewhere. They hold this machine's paths; the model's own
    config does not."""
    model_dir = Path(model_dir)
    path = model_dir.parent / RUN_SETTINGS
    if model_dir.name != "model" or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}


def _restore_data_dir(model, directory: Path) -> None:
    """A model in its run directory reads the data folder it trained on (``--data-dir``), as before the
    config stopped carrying local paths."""
    data = model_spec(model).get("data")
    settings = run_settings(directory)
    local = settings.get("data_dir")
    if data is not None and local and not data.get("data_dir"):
        data["data_dir"] = local
    # and the training file as it was given, where the validation split was carved from it
    given = settings.get("train_file")
    if data is not None and given and data.get("validation_fraction") and data.get("train_file") == Path(given).name:
        data["train_file"] = given


def save_reasoning_head(weight: torch.Tensor, model_dir: Path) -> Path:
    """The LM head's weight beside the classifier (for a tied head, the trained embedding matrix), so that
    ``dhrd explain`` can let the reasoning head write again."""
    path = Path(model_dir) / REASONING_HEAD_FILE
    save_file({"lm_head.weight": weight.detach().float().cpu().contiguous()}, str(path))
    return path


def reasoning_lm(model_path: str | Path, trust_remote_code: bool = False):
    """The trained backbone with its saved LM head on top: a causal LM for ``generate``, with the classifier
    and tokenizer."""
    directory = find_model_dir(model_path)
    head = directory / REASONING_HEAD_FILE
    if not head.is_file():
        raise DHRDInputError(
            f"{head}: no reasoning head was kept with this model; train with --method dhrd --keep-reasoning-head"
        )
    classifier, tokenizer = load_classifier(directory, trust_remote_code=trust_remote_code)
    config = classifier.config.text_config
    config.tie_word_embeddings = False
    lm = AutoModelForCausalLM.from_config(config)
    lm.base_model.load_state_dict(classifier.model.state_dict())
    lm.get_output_embeddings().weight.data.copy_(load_file(str(head))["lm_head.weight"])
    return lm.eval(), classifier, tokenizer


def model_spec(model) -> dict:
    return getattr(model.config, SPEC_KEY, None) or {}
