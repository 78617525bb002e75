"""The Trainer-shaped API (DHRDTrainer on ``datasets`` datasets, Trainer options, callbacks, metrics, a peft
config) and ``dhrd train``'s command line generated from DHRDTrainingArguments."""

from __future__ import annotations

import json
import shutil

import pytest
from transformers import TrainerCallback
from typer.testing import CliRunner

from dhrd.cli.commands import app
from dhrd.errors import DHRDInputError
from dhrd.provenance import dhrd_version
from dhrd.training.argparser import parse_train_arguments
from dhrd.training.run import train
from dhrd.training.trainer import DHRDTrainer
from dhrd.training.training_args import DHRDTrainingArguments

runner = CliRunner()
POSITIVE = ["a good film", "great fun", "lovely acting", "a fine story", "good and warm", "great cast"]
NEGATIVE = ["a bad film", "dull plot", "awful acting", "a poor story", "bad and cold", "terrible cast"]


@pytest.fixture()
def reviews():
    import datasets

    labels = datasets.ClassLabel(names=["negative", "positive"])
    features = datasets.Features({"review": datasets.Value("string"), "label": labels})
    rows = {"review": POSITIVE + NEGATIVE, "label": [1] * 6 + [0] * 6}
    train_set = datasets.Dataset.from_dict(rows, features=features)
    return train_set, train_set.select(range(0, 12, 2))


def config(tmp_path, backbone, **overrides) -> DHRDTrainingArguments:
    settings = dict(
        output_dir=str(tmp_path / "run"),
        backbone=str(backbone),
        text_column="review",
        num_train_epochs=2,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        bf16=False,
        max_length=64,
        report_to="none",
    )
    return DHRDTrainingArguments(**{**settings, **overrides})


class Seen(TrainerCallback):
    def __init__(self):
        self.evaluations, self.steps = [], 0

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.evaluations.append(metrics)


def test_trainer_on_datasets_trains_and_saves_with_callbacks_and_metrics(tmp_path, tiny_backbone, reviews):
    seen = Seen()
    trainer = DHRDTrainer(
        args=config(tmp_path, tiny_backbone),
        train_dataset=reviews[0],
        eval_dataset=reviews[1],
        callbacks=[seen],
        compute_metrics=lambda prediction: {"rows_seen": float(len(prediction.label_ids))},
    )
    result = train(trainer=trainer)
    assert (tmp_path / "run" / "model" / "config.json").is_file()
    assert result.metrics["train_rows"] == 12 and result.metrics["eval_rows"] == 6
    # the ClassLabel names the labels; the user's metric is logged beside DHRD's, every epoch
    assert result.metrics["classes"]["custom"]["labels"] == ["negative", "positive"]
    assert [e["eval_rows_seen"] for e in seen.evaluations] == [6.0, 6.0]
    assert all("eval_score" in e for e in seen.evaluations) and seen.steps == 6
    saved = json.loads((tmp_path / "run" / "train_args.json").read_text())
    assert saved["text_column"] == "review" and saved["report_to"] == []


def test_a_loaded_causal_lm_as_model_trains_like_its_name(tmp_path, tiny_backbone, reviews):
    """As TRL's trainers take a model object: a loaded AutoModelForCausalLM is the backbone itself (shared, not
    copied; bf16 weights trained in float32), the run and saved model name it by its folder, and it trains as
    its name does, with the same seed."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def run(name: str, model) -> tuple[DHRDTrainer, dict]:
        trainer = DHRDTrainer(
            model=model,
            args=config(tmp_path / name, "default"),
            train_dataset=reviews[0],
            eval_dataset=reviews[1],
            processing_class=AutoTokenizer.from_pretrained(tiny_backbone),
        )
        return trainer, train(trainer=trainer).metrics

    by_name_trainer, by_name = run("name", str(tiny_backbone))
    given = AutoModelForCausalLM.from_pretrained(tiny_backbone, dtype=torch.bfloat16)
    trainer, by_object = run("object", given)
    classifier = trainer.model.get_base_model()  # under the built-in LoRA
    assert classifier.model is given.base_model and given.dtype == torch.float32
    assert trainer.prepared.tokenizer.pad_token_id is not None
    assert [e["score"] for e in by_object["epochs"]] == [e["score"] for e in by_name["epochs"]]
    losses = [[h["eval_loss"] for h in t.state.log_history if "eval_loss" in h] for t in (by_name_trainer, trainer)]
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)  # the same run but for the weights' bf16 rounding
    saved = json.loads((tmp_path / "object" / "run" / "train_args.json").read_text())
    assert saved["backbone"] == str(tiny_backbone)


def test_the_trainer_is_built_one_way_with_the_loss_settings_of_its_arguments(tmp_path, tiny_backbone, reviews):
    """One constructor: DHRD prepares the run from its arguments, whose alpha, beta and class weights the loss
    takes (no second way in with a ready model and loss settings of its own); ``trainer_overrides`` change only
    Trainer's copy of the arguments."""
    import inspect

    assert not {"alpha", "beta", "reasoning_weight", "class_weights"} & set(inspect.signature(DHRDTrainer).parameters)
    args = config(tmp_path, tiny_backbone, beta=2.0, class_weights="positive=2.0")
    quiet = {"save_strategy": "no", "eval_strategy": "no", "load_best_model_at_end": False}
    trainer = DHRDTrainer(args=args, train_dataset=reviews[0], eval_dataset=reviews[1], trainer_overrides=quiet)
    assert (trainer.alpha, trainer.beta) == (0.0, 2.0) and trainer.class_weights.tolist() == [1.0, 2.0]
    assert trainer.prepared.trainer is trainer and trainer.prepared.args.save_strategy == "epoch"
    assert trainer.args.save_strategy == "no" and trainer.args.output_dir == str(tmp_path / "run" / "checkpoints")
    with pytest.raises(TypeError, match="alpha"):
        DHRDTrainer(args=args, train_dataset=reviews[0], eval_dataset=reviews[1], alpha=0.5)


def test_a_model_that_is_no_causal_lm_is_a_one_line_error(tmp_path, tiny_backbone, reviews):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    classifier = AutoModelForSequenceClassification.from_pretrained(tiny_backbone, num_labels=2)
    unnamed_config = AutoConfig.from_pretrained(tiny_backbone)
    unnamed_config._name_or_path = ""  # built, not loaded
    unnamed = AutoModelForCausalLM.from_config(unnamed_config)
    for model, message in ((classifier, "with its LM head"), (unnamed, "no name"), (object(), "a causal LM")):
        with pytest.raises(DHRDInputError, match=message):
            DHRDTrainer(
                model=model, args=config(tmp_path, tiny_backbone), train_dataset=reviews[0], eval_dataset=reviews[1]
            )


def test_a_trainer_option_outside_dhrd_fields_takes_effect(tmp_path, tiny_backbone, reviews):
    args = config(tmp_path, tiny_backbone, eval_strategy="steps", eval_steps=2, max_steps=4)
    trainer = DHRDTrainer(args=args, train_dataset=reviews[0], eval_dataset=reviews[1])
    assert trainer.args.save_strategy == "steps" and trainer.args.load_best_model_at_end
    result = train(trainer=trainer)
    assert [e["epoch"] for e in result.metrics["epochs"]] == [pytest.approx(2 / 3), pytest.approx(4 / 3)]
    assert trainer.state.global_step == 4 and result.metrics["best_checkpoint"]


def test_peft_config_replaces_the_built_in_lora(tmp_path, tiny_backbone, reviews):
    from peft import LoraConfig

    given = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])
    trainer = DHRDTrainer(
        args=config(tmp_path, tiny_backbone, num_train_epochs=1),
        train_dataset=reviews[0],
        eval_dataset=reviews[1],
        peft_config=given,
    )
    used = trainer.model.peft_config["default"]
    assert used.r == 2 and set(used.target_modules) == {"q_proj", "v_proj"} and "score" in used.modules_to_save
    names = [n for n, p in trainer.model.named_parameters() if p.requires_grad and "lora_" in n]
    assert names and all("q_proj" in n or "v_proj" in n for n in names)
    assert given.modules_to_save is None  # the caller's config is left as given


def test_another_peft_config_is_another_run(tmp_path, tiny_backbone, reviews):
    """A run directory trained under one peft config is not resumed under another (the checkpoint's adapter
    would not fit it); the same config, built again, is the same run."""
    from peft import LoraConfig

    from dhrd.errors import DHRDInputError
    from dhrd.training.prepare import peft_fingerprint

    def trainer(r):
        return DHRDTrainer(
            args=config(tmp_path, tiny_backbone, num_train_epochs=1),
            train_dataset=reviews[0],
            eval_dataset=reviews[1],
            peft_config=LoraConfig(r=r, lora_alpha=4, target_modules=["q_proj", "v_proj"]),
        )

    train(trainer=trainer(2))
    assert peft_fingerprint(LoraConfig(r=2, target_modules=["v_proj", "q_proj"])) == peft_fingerprint(
        LoraConfig(r=2, target_modules=["q_proj", "v_proj"])
    )
    with pytest.raises(DHRDInputError, match="peft_config"):
        train(trainer=trainer(4))
    train(trainer=trainer(2))  # resumed: the same config


def test_rationales_from_a_mapping_and_a_column(tmp_path, tiny_backbone, reviews):
    train_set, eval_set = reviews
    by_row = {k: f"it says {text.split()[-1]}" for k, text in enumerate(train_set["review"], start=1)}
    trainer = DHRDTrainer(
        args=config(tmp_path, tiny_backbone, method="dhrd", num_train_epochs=1),
        train_dataset=train_set,
        eval_dataset=eval_set,
        rationales=by_row,
    )
    assert trainer.prepared.rows_without_rationale == 0
    assert all("lm_labels" in row for row in trainer.train_dataset)
    with_column = train_set.add_column("why", [by_row[k] for k in range(1, 13)])
    trainer = DHRDTrainer(
        args=config(tmp_path, tiny_backbone, method="dhrd", num_train_epochs=1),
        train_dataset=with_column,
        eval_dataset=eval_set,
        rationales="why",
    )
    assert trainer.prepared.args.rationale_column == "why" and trainer.prepared.rows_without_rationale == 0
    with pytest.raises(DHRDInputError, match="ids are not training rows"):
        DHRDTrainer(
            args=config(tmp_path, tiny_backbone, method="dhrd"),
            train_dataset=train_set,
            eval_dataset=eval_set,
            rationales={99: "no such row"},
        )


def test_forced_settings_are_defaults_an_explicit_value_overrides(tmp_path):
    default = DHRDTrainingArguments(output_dir=str(tmp_path))
    assert (default.eval_strategy, default.save_strategy, default.load_best_model_at_end) == ("epoch", "epoch", True)
    assert default.remove_unused_columns is False and default.train_sampling_strategy == "group_by_length"
    assert default.trainer_arguments().output_dir == str(tmp_path / "checkpoints")
    one_epoch = DHRDTrainingArguments(output_dir=str(tmp_path), num_train_epochs=1)
    assert (one_epoch.eval_strategy, one_epoch.load_best_model_at_end) == ("no", False)
    chosen = DHRDTrainingArguments(output_dir=str(tmp_path), save_strategy="no", eval_strategy="no", seed=3)
    assert (chosen.save_strategy, chosen.eval_strategy, chosen.data_seed) == ("no", "no", 3)
    assert DHRDTrainingArguments(task="rte", method="dhrd").output_dir == "runs/rte-dhrd"


def test_hf_flag_names_and_short_aliases_give_the_same_config():
    common = ["--task", "rte", "--output-dir", "runs/x", "--no-bf16"]
    hf = parse_train_arguments(
        [
            *common,
            "--num_train_epochs",
            "1",
            "--per_device_train_batch_size",
            "4",
            "--learning_rate",
            "1e-3",
            "--lora",
            "false",
            "--label_map",
            "0=a,1=b",
        ]
    )
    short = parse_train_arguments(
        [*common, "--epochs", "1", "--batch-size", "4", "--lr", "1e-3", "--full", "--label-names", "0=a,1=b"]
    )
    assert hf.to_dict() == short.to_dict()
    assert (hf.num_train_epochs, hf.per_device_train_batch_size, hf.lora, hf.bf16) == (1.0, 4, False, False)
    steps = parse_train_arguments(
        [
            "--report_to",
            "tensorboard",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "5",
            "--metric_for_best_model",
            "loss",
            "--restart",
            "--last-epoch",
        ]
    )
    assert steps.report_to == ["tensorboard"] and steps.eval_steps == 5 and steps.save_steps == 5
    assert steps.metric_for_best_model == "loss" and not steps.resume and not steps.best_epoch


def test_report_to_takes_several_integrations(tmp_path, superglue_dir, tiny_backbone):
    """Trainer's ``report_to`` is a list: several values on one flag, as with HfArgumentParser's list fields;
    one value stays the string it was (``optim_target_modules``' string is a pattern, its list names)."""
    from transformers.integrations import is_tensorboard_available

    from dhrd.training.train_options import check_train_arguments

    argv = ["--report_to", "tensorboard", "wandb", "--epochs", "1"]
    check_train_arguments(argv)  # the fast table accepts it as the real parser does
    assert parse_train_arguments(argv).report_to == ["tensorboard", "wandb"]
    assert parse_train_arguments(["--report-to", "none"]).report_to == []
    assert parse_train_arguments(["--optim_target_modules", "attn"]).optim_target_modules == "attn"
    assert parse_train_arguments(["--optim_target_modules", "q", "v"]).optim_target_modules == ["q", "v"]
    with pytest.raises(DHRDInputError, match="not an integration Trainer knows"):
        parse_train_arguments(["--report_to", "tensorbored"]).check_report_to()
    if not is_tensorboard_available():  # a missing integration: one line naming the extra, before any model loads
        data = ["--task", "cb", "--data-dir", superglue_dir, "--backbone", tiny_backbone, "--output-dir", tmp_path]
        result = runner.invoke(app, ["train", *argv, *map(str, data)])
        assert result.exit_code == 2, result.output
        assert "--report_to tensorboard needs tensorboard: pip install 'dhrd[tensorboard]'" in result.output
        assert not (tmp_path / "train_args.json").exists()


def test_config_file_then_command_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("task: rte\nnum_train_epochs: 5\nlearning-rate: 0.001\nlora: false\nreport_to: [tensorboard]\n")
    args = parse_train_arguments(["--config", str(path), "--epochs", "2"])
    assert (args.task, args.num_train_epochs, args.learning_rate, args.lora) == ("rte", 2.0, 1e-3, False)
    assert args.report_to == ["tensorboard"]
    (tmp_path / "bad.json").write_text(json.dumps({"epochz": 1}))
    with pytest.raises(DHRDInputError, match="unknown setting epochz"):
        parse_train_arguments(["--config", str(tmp_path / "bad.json")])


def test_help_lists_every_default_in_groups():
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = result.output
    for shown in ("--epochs", "--num_train_epochs", "--report_to", "--full", "--restart", "--config"):
        assert shown in text
    for default in ("(default: 0.0002)", "(default: 3.0)", "(default: 8)", "(default: cosine)", "(default: linear)"):
        assert default in text
    assert text.index("\ndata:") < text.index("\nloss:") < text.index("\ntransformers.TrainingArguments")
    assert "[default: ..." not in runner.invoke(app, ["evaluate", "--help"]).output
    assert "[default: the model's" in " ".join(runner.invoke(app, ["evaluate", "--help"]).output.split())


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"dhrd {dhrd_version()}"


def test_bad_values_are_one_line_errors():
    with pytest.raises(DHRDInputError, match="invalid float value: 'many'"):
        parse_train_arguments(["--epochs", "many"])
    with pytest.raises(DHRDInputError, match="save and eval strategy to match"):
        parse_train_arguments(["--eval_strategy", "steps", "--save_strategy", "epoch", "--load_best_model_at_end"])
    result = runner.invoke(app, ["train", "--batch-size", "x"])
    assert result.exit_code == 2


def test_a_run_saved_by_the_old_arguments_resumes(tmp_path, tiny_backbone, superglue_dir):
    """train_args.json written by the dataclass before DHRDTrainingArguments extended TrainingArguments: only
    DHRD's ~70 keys. The same settings resume from its checkpoint."""
    settings = dict(
        output_dir=str(tmp_path / "run"),
        task="cb",
        data_dir=str(superglue_dir),
        backbone=str(tiny_backbone),
        num_train_epochs=2,
        per_device_train_batch_size=8,
        bf16=False,
        max_length=128,
        max_train_examples=8,
    )
    first = train(DHRDTrainingArguments(**settings))
    checkpoints = sorted((tmp_path / "run" / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name[11:]))
    shutil.rmtree(checkpoints[-1])  # as if killed before the last epoch's checkpoint
    (tmp_path / "run" / "metrics.json").unlink()
    saved = json.loads((tmp_path / "run" / "train_args.json").read_text())
    old = {k: saved[k] for k in OLD_KEYS if k in saved}
    old.pop("instruction_in_input")  # a setting the old run predates: counts as its default
    (tmp_path / "run" / "train_args.json").write_text(json.dumps(old))
    again = train(DHRDTrainingArguments(**settings))
    assert again.metrics["resumed_from"] == str(checkpoints[0])
    assert [e["epoch"] for e in again.metrics["epochs"]] == [e["epoch"] for e in first.metrics["epochs"]]


OLD_KEYS = (
    "output_dir task input_format data_dir train_file validation_file dataset dataset_config text_column "
    "text_pair_column label_column id_column rationale_column encoding label_map instruction instruction_in_input "
    "max_train_examples max_eval_examples subset_seed backbone gguf_file head pooling head_dropout method alpha beta "
    "class_weights rationales rationale_mode lm_scope max_rationale_tokens keep_reasoning_head lora lora_r "
    "lora_alpha lora_dropout learning_rate num_train_epochs best_epoch metric_for_best_model early_stopping_patience "
    "per_device_train_batch_size per_device_eval_batch_size gradient_accumulation_steps max_length truncation "
    "warmup_steps weight_decay lr_scheduler_type seed bf16 gradient_checkpointing group_by_length optim "
    "torch_compile attention bits_dropout save_steps save_total_limit logging_steps resume report_to "
    "trust_remote_code"
).split()


def test_plain_trainer_save_model_reloads_with_the_trained_head(tmp_path, tiny_backbone, reviews):
    """Only Trainer's own methods: train(), then save_model(): AutoModelForSequenceClassification reloads the
    classifier with its trained head (LoRA merged), not an adapter over a freshly initialised head."""
    import torch
    from transformers import AutoModelForSequenceClassification

    trainer = DHRDTrainer(
        args=config(tmp_path, tiny_backbone, num_train_epochs=1, head="linear"),
        train_dataset=reviews[0],
        eval_dataset=reviews[1],
    )
    trainer.train()
    trainer.save_model(str(tmp_path / "saved"))
    assert not (tmp_path / "saved" / "adapter_config.json").exists()
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
    trained = trainer.model.merge_and_unload().eval()
    batch = trainer.prepared.tokenizer(["a great film", "dull and too long"], return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, trained(**batch).logits.to(torch.float32))


def test_plain_trainer_predict_takes_raw_text_rows(tmp_path, tiny_backbone, reviews):
    """Trainer's own predict() on a raw datasets.Dataset (the review column, with or without labels) gives the
    logits of the encoded rows; a KeyError 'input_ids' before."""
    import numpy as np

    trainer = DHRDTrainer(
        args=config(tmp_path, tiny_backbone, num_train_epochs=1), train_dataset=reviews[0], eval_dataset=reviews[1]
    )
    trainer.train()
    labelled = trainer.predict(reviews[1])
    assert labelled.predictions.shape == (6, 2) and list(labelled.label_ids) == list(reviews[1]["label"])
    assert "test_loss" in labelled.metrics
    unlabelled = trainer.predict(reviews[1].remove_columns("label"))
    assert unlabelled.label_ids is None
    np.testing.assert_allclose(unlabelled.predictions, labelled.predictions, atol=1e-5)
    encoded = trainer.predict(trainer.encode_rows(reviews[1]))  # encoded rows go through as given
    np.testing.assert_allclose(encoded.predictions, labelled.predictions, atol=1e-5)
