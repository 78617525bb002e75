"""What a run shows while it works: Trainer's progress bar with its logs as short lines, not dicts.

Trainer prints every log as a Python dict above its bar (``{'loss': '0.6931', 'grad_norm': '1.2', ...}``) and
a bar-less run prints the dicts alone. ``LogLines`` keeps transformers' bar (``ProgressCallback``) and writes
each log as one line a person reads at a glance: the step, the epoch, the training loss and learning rate, or a
validation pass's score.
"""

from __future__ import annotations

from tqdm.auto import tqdm
from transformers import Trainer
from transformers.trainer_callback import PrinterCallback, ProgressCallback

# Trainer's log keys, in the order and under the names a line shows them
TRAIN_KEYS = (
    ("loss", "loss"),
    ("loss_cls", "cls"),
    ("loss_lm", "lm"),
    ("grad_norm", "grad-norm"),
    ("grad_norm_cls", "cls-grad"),
    ("grad_norm_cls_shared", "cls-grad-backbone"),
    ("grad_norm_lm", "lm-grad"),
    ("grad_cosine", "cos"),
    ("learning_rate", "lr"),
)
SKIPPED = ("total_flos", "epoch", "step")
EVAL_NOISE = ("_per_second", "/examples", "/rows")


def number(value) -> str:
    if isinstance(value, float):
        return f"{value:.2e}" if 0 < abs(value) < 1e-3 else f"{value:.4g}"
    return str(value)


def log_line(logs: dict, step: int, max_steps: int) -> str:
    """One line for one Trainer log: a training log, a validation pass (``eval_*``) or the run's summary."""
    epoch = logs.get("epoch")
    where = f"step {step}/{max_steps}" + (f" · epoch {epoch:.2f}" if isinstance(epoch, int | float) else "")
    if any(k.startswith("eval_") for k in logs):
        # the metrics, without counts and speeds; a single task's own "score" repeats the run's
        shown = {k[5:]: v for k, v in logs.items() if k.startswith("eval_") and not k.endswith(EVAL_NOISE)}
        runtime = shown.pop("runtime", None)
        score = shown.pop("score", None)
        tasks = {k.split("/", 1)[0] for k in shown if "/" in k}
        if len(tasks) == 1:
            shown.pop(f"{tasks.pop()}/score", None)
        parts = [f"score {number(score)}"] if score is not None else []
        parts += [f"{k} {number(v)}" for k, v in shown.items()]
        took = f" ({runtime:.0f} s)" if isinstance(runtime, int | float) else ""
        return f"validation at {where}{took}: " + ", ".join(parts)
    if "train_runtime" in logs:
        loss = logs.get("train_loss")
        mean = f", mean loss {number(loss)}" if loss is not None else ""
        return f"trained {step} steps in {logs['train_runtime']:.0f} s{mean}"
    parts = [f"{name} {number(logs[key])}" for key, name in TRAIN_KEYS if key in logs]
    parts += [f"{k} {number(v)}" for k, v in logs.items() if k not in SKIPPED and k not in dict(TRAIN_KEYS)]
    return f"{where}: " + ", ".join(parts)


class LogLines(ProgressCallback):
    """transformers' training bar, with each log written above it as one line (``log_line``) and no nested
    bar for validation passes; with ``bars=False`` (Trainer's ``disable_tqdm``) only the lines."""

    def __init__(self, bars: bool = True):
        super().__init__()
        self.bars = bars

    def on_train_begin(self, args, state, control, **kwargs):
        self.current_step = 0
        if self.bars and state.is_world_process_zero:  # ProgressCallback's bar, named from its first frame
            self.training_bar = tqdm(total=state.max_steps, dynamic_ncols=True, desc="training")

    def on_step_end(self, args, state, control, **kwargs):
        if self.bars:
            super().on_step_end(args, state, control, **kwargs)

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        pass  # no second bar inside the training bar for a validation pass: its line reports it when done

    def on_train_end(self, args, state, control, **kwargs):
        if self.bars:
            super().on_train_end(args, state, control, **kwargs)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            line = log_line(logs, state.global_step, state.max_steps)
            if self.training_bar is not None:
                self.training_bar.write(line)
            else:
                print(line, flush=True)


def use_log_lines(trainer: Trainer) -> None:
    """Swap Trainer's dict printers (its bar's logs, or the bar-less printer) for ``LogLines``."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(LogLines(bars=not trainer.args.disable_tqdm))
