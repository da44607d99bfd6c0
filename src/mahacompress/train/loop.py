"""ONE training loop for fine-tuning, pruning and distillation.

What differs between those steps plugs in through `TrainHooks` (extra parameter groups, schedules,
penalties, when a "best" checkpoint may be chosen), a teacher (knowledge distillation: cached
logits, or a live model when intermediate layers are distilled too: `intermediate.py`'s hidden-state and
attention-relation terms) and elastic depths (`elastic.py`: shallower cuts of the student trained beside it);
the loop itself is plain PyTorch on Hugging Face Accelerate, so the same code runs on a CPU, one
GPU or several; mixed precision is a `torch.autocast` context and a `GradScaler` for fp16.

Resumable: every `checkpoint_every` optimizer steps the model, optimizer, scheduler, hook state,
best-so-far and RNG state go to `out_dir/checkpoint.pt` (written to a temporary file, then renamed),
and `resume=True` continues from there on the same batch order.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, gather_object
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import get_linear_schedule_with_warmup, set_seed

from ..core.config import DataConfig, TrainConfig
from ..core.errors import MahaError
from ..core.metrics import labels_present, macro_f1
from ..data.splits import Splits
from ..infer.evaluate import predict_logits
from .checkpoints import atomic_save, checkpoints_for, data_record, load_trainable_state, trainable_state
from .elastic import check_elastic, shallower, step_depths
from .intermediate import intermediate_terms
from .losses import kd_loss
from .precision import training_precision
from .processes import cpu_processes, failures_named, is_main_process, local_rows, process_count
from .progress import Heartbeat


class TrainHooks:
    """Extension points of the loop; the defaults do nothing (plain fine-tuning)."""

    def param_groups(self, model: torch.nn.Module) -> list[dict]:
        """Extra optimizer groups (e.g. mask scores with their own lr); excluded from default groups."""
        return []

    def on_step(self, step: int, total_steps: int) -> None:
        """Called before each training step: update schedules and thresholds."""

    def extra_loss(self, model: torch.nn.Module) -> torch.Tensor | None:
        """A term added to the task loss (e.g. an L1 penalty on mask scores)."""
        return None

    def may_select_best(self, step: int, total_steps: int) -> bool:
        """Whether the model at `step` may be kept as best / trigger early stopping."""
        return True

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned (on resume)."""


# the autocast dtype of each mixed precision (`precision.training_precision`'s answers); fp32 runs without autocast
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class FitResult:
    best_dev_macro_f1: float
    steps: int
    seconds: float
    stopped_early: bool
    # every dev evaluation as (step, dev macro-F1): the curve that says whether training had converged
    dev_history: list[tuple[int, float]]


def schedule(texts: int, cfg: TrainConfig) -> tuple[int, int, int]:
    """Steps per epoch, total steps and steps between dev evaluations of a run over `texts` training texts."""
    steps_per_epoch = math.ceil(texts / cfg.batch_size)
    return (steps_per_epoch, max(1, math.ceil(steps_per_epoch * cfg.epochs)),
            max(1, steps_per_epoch // max(1, cfg.evals_per_epoch)))


def _batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The batch order of one epoch, a pure function of (seed, epoch) so a resumed run replays it.

    Grouped by length (as transformers' `group_by_length`): shuffle, sort within windows of 16
    batches, shuffle the batches. Headlines vary from 5 to 190 tokens, so a random batch pads to its
    longest member; grouping roughly halves the padded tokens a CPU has to push through the model.
    """
    rng = np.random.default_rng(seed + epoch)
    order = rng.permutation(len(lengths))
    window = batch_size * 16
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        batches += [np.array(chunk[i:i + batch_size]) for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _optimizer(model: torch.nn.Module, cfg: TrainConfig, hooks: TrainHooks) -> torch.optim.Optimizer:
    """AdamW with the usual no-decay split for biases and LayerNorms, plus the hooks' own groups."""
    extra = hooks.param_groups(model)
    taken = {id(p) for g in extra for p in g["params"]}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in taken:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or name.endswith(".bias") else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups + extra if g["params"]], lr=cfg.lr)


def freeze_word_embeddings(model: torch.nn.Module) -> None:
    """Stop training the word embeddings: on CPU their 96M-row AdamW update dominates each step."""
    model.get_input_embeddings().weight.requires_grad_(False)


def fit(model: torch.nn.Module, tokenizer, splits: Splits, cfg: TrainConfig, out_dir: Path, *,
        hooks: TrainHooks | None = None, teacher_logits: np.ndarray | None = None,
        teacher_model: torch.nn.Module | None = None, resume: bool = False, desc: str = "fine-tune") -> FitResult:
    """Train `model` in place on `splits.train`, select on dev macro-F1, and load the best weights back.

    A teacher turns on the KD loss: `teacher_logits` ([len(train), num_labels], aligned with
    `splits.train`, computed once), or `teacher_model`, run on every batch; the live teacher is what
    `cfg.kd_hidden_weight > 0` and `cfg.kd_attention_weight > 0` need, since its hidden states and attention
    projections are too big to cache. A hidden-state projection (student and teacher widths differ) trains
    with the model and is not part of it.

    Launched as several processes (torchrun, accelerate launch), `cfg.batch_size` stays the global
    batch: each process takes its share of every batch and DDP averages the gradients, so the run
    follows the same steps, schedule and checkpoints as a single-process one. Dev evaluation is
    split across processes and gathered; only the main process writes checkpoints.
    """
    hooks = hooks or TrainHooks()
    out_dir = Path(out_dir)
    if len(splits.train) == 0 or len(splits.dev) == 0:
        raise MahaError(f"{splits.name}: empty train or dev split, nothing to train on")
    if teacher_logits is not None and teacher_logits.shape != (len(splits.train), len(splits.labels)):
        raise MahaError(
            f"teacher logits have shape {teacher_logits.shape}, expected ({len(splits.train)}, {len(splits.labels)})")
    if teacher_logits is not None and teacher_model is not None:
        raise MahaError("give the teacher as cached logits or as a live model, not both")
    set_seed(cfg.seed)
    check_elastic(getattr(model.config, "num_hidden_layers", None), cfg, process_count())
    terms = intermediate_terms(model, teacher_model, cfg)  # checked before any work; None when not asked for
    hidden = terms is not None and terms.hidden_states
    if cfg.freeze_embeddings:
        freeze_word_embeddings(model)

    # Mixed precision is one torch.autocast context plus a GradScaler for fp16, not Accelerate's
    # `mixed_precision`: Accelerate's state is a process-wide singleton that refuses a second precision,
    # and the grid trains fp32 and bf16 rows in one process.
    optimizer = _optimizer(model, cfg, hooks)
    if terms is not None and terms.parameters():
        optimizer.add_param_group({"params": terms.parameters(), "weight_decay": cfg.weight_decay})
    # Mask scores stop receiving gradients once pruning fixes the structure: DDP must be told.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=bool(hooks.param_groups(model)))
    accelerator = Accelerator(cpu=cpu_processes(), kwargs_handlers=[ddp])
    rank, processes, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    if cfg.batch_size < processes:
        raise MahaError(f"batch size {cfg.batch_size} is the global batch: it cannot be split over "
                        f"{processes} processes; use --batch-size {processes} or more, or fewer processes")
    precision = training_precision(cfg.mixed_precision, accelerator.device)
    amp_dtype = AUTOCAST_DTYPES.get(precision)
    scaler = torch.amp.GradScaler(accelerator.device.type, enabled=precision == "fp16")
    steps_per_epoch, total_steps, eval_every = schedule(len(splits.train), cfg)
    # Not prepared: a prepared scheduler steps once per process, and every process runs every step here.
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    device = accelerator.device
    if teacher_model is not None:
        teacher_model.to(device).eval().requires_grad_(False)
    if terms is not None:
        terms.to(device)

    encoded = tokenizer(list(splits.train.texts), truncation=True, max_length=cfg.max_length)["input_ids"]
    lengths = [len(ids) for ids in encoded]
    labels = torch.tensor(splits.train.labels)
    cached_logits = torch.from_numpy(teacher_logits).float() if teacher_logits is not None else None

    ckpt_path, best_path = out_dir / "checkpoint.pt", out_dir / "best.pt"
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not resume:  # a fresh run must not pick up another run's best weights
            ckpt_path.unlink(missing_ok=True)
            best_path.unlink(missing_ok=True)
    accelerator.wait_for_everyone()
    step, best_f1, bad_evals, stopped_early, elapsed, history = 0, -1.0, 0, False, 0.0, []
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        load_trainable_state(accelerator.unwrap_model(model), state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        hooks.load_state_dict(state["hooks"])
        step, best_f1, bad_evals, elapsed = state["step"], state["best_f1"], state["bad_evals"], state["elapsed"]
        history = state.get("dev_history", [])
        if terms is not None:
            terms.load_state_dict(state.get("intermediate", {}))
        torch.set_rng_state(state["torch_rng"])

    def save_checkpoint() -> None:
        if main:
            atomic_save(
                {
                    "model": trainable_state(accelerator.unwrap_model(model)), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "hooks": hooks.state_dict(),
                    "step": step, "best_f1": best_f1, "bad_evals": bad_evals, "elapsed": elapsed + time.time() - start,
                    "dev_history": history, "torch_rng": torch.get_rng_state(),
                    "intermediate": terms.state_dict() if terms is not None else {}
                }, ckpt_path)

    def task_loss(logits: torch.Tensor, target: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
        """The KD term against the teacher's logits `target`, or cross-entropy alone without a teacher."""
        if target is None:
            return F.cross_entropy(logits, y)
        return kd_loss(logits, target, y, cfg.kd_alpha, cfg.kd_temperature)

    def check_finite(loss: torch.Tensor) -> None:
        """Stop on a loss that is NaN or infinite in any process (all processes agree, none hangs)."""
        bad = (~torch.isfinite(loss.detach())).float().reshape(1)
        if processes > 1:
            bad = accelerator.reduce(bad, reduction="sum")
        if bad.item():
            kept = f"the last good checkpoint stays in {ckpt_path}" if ckpt_path.exists() else "no checkpoint yet"
            raise MahaError(f"step {step + 1}: the training loss is not finite (NaN or infinite); stopped, {kept}, "
                            f"no model written (check the learning rate, temperature and data)")

    start = time.time()
    model.train()
    columns = (TextColumn(f"[bold]{desc}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TimeRemainingColumn(),
               )
    with Progress(*columns, disable=not main) as progress, failures_named(rank, processes, step_of=lambda: step):
        task = progress.add_task(desc, total=total_steps, completed=step, info="")
        heartbeat = Heartbeat(desc, total_steps, step, enabled=main and not progress.console.is_terminal)
        while step < total_steps and not stopped_early:
            epoch, offset = divmod(step, steps_per_epoch)
            for global_idx in _batches(lengths, cfg.batch_size, cfg.seed, epoch)[offset:]:
                if step >= total_steps:
                    break
                hooks.on_step(step, total_steps)
                batch_idx = local_rows(global_idx, rank, processes)
                # each process's mean loss, weighted by its share: DDP's average is then the global batch's mean
                share = len(batch_idx) * processes / max(len(global_idx), processes)
                batch = tokenizer.pad({"input_ids": [encoded[i] for i in batch_idx]}, return_tensors="pt").to(device)
                y = labels[batch_idx].to(device)
                with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                    with terms.recording() if terms is not None else contextlib.nullcontext():
                        out = model(**batch, output_hidden_states=hidden)
                        if teacher_model is not None:
                            with torch.no_grad():
                                taught = teacher_model(**batch, output_hidden_states=hidden)
                    target = (taught.logits.float() if teacher_model is not None else
                              cached_logits[batch_idx].to(device) if cached_logits is not None else None)
                    loss = task_loss(out.logits.float(), target, y)
                    if terms is not None:
                        loss = loss + terms.loss(out, taught, batch["attention_mask"])
                    for depth in step_depths(cfg.elastic_depths) if cfg.elastic_depths else []:
                        with shallower(model, depth):  # the same batch through a cut the student will serve as
                            loss = loss + task_loss(model(**batch).logits.float(), target, y)
                    loss = loss * share
                    extra = hooks.extra_loss(model)
                    if extra is not None:
                        loss = loss + extra
                check_finite(loss)
                accelerator.backward(scaler.scale(loss))
                extra_params = terms.parameters() if terms is not None else []
                if processes > 1:  # outside the DDP-wrapped model: averaged here, as DDP averages the model's
                    for p in extra_params:
                        if p.grad is not None:
                            p.grad = accelerator.reduce(p.grad, reduction="mean")
                if cfg.max_grad_norm:
                    scaler.unscale_(optimizer)
                    accelerator.clip_grad_norm_([*model.parameters(), *extra_params], cfg.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                progress.update(task, advance=1, info=f"loss {loss.item():.3f} best dev F1 {max(best_f1, 0):.3f}")
                if (beat := heartbeat.line(step, loss.item())) is not None:
                    progress.console.print(beat, markup=False, highlight=False, soft_wrap=True)

                if step % eval_every == 0 or step == total_steps:
                    if hooks.may_select_best(step, total_steps):
                        dev_f1 = _dev_macro_f1(model, tokenizer, splits, cfg, accelerator)
                        history.append((step, round(dev_f1, 5)))
                        if dev_f1 > best_f1:
                            best_f1, bad_evals = dev_f1, 0
                            if main:
                                atomic_save(trainable_state(accelerator.unwrap_model(model)), best_path)
                        else:
                            bad_evals += 1
                        if main:  # a line that stays: a log file (no terminal) gets no live bar, only these
                            minutes = (elapsed + time.time() - start) / 60
                            progress.console.print(f"{desc}: step {step}/{total_steps}, dev macro-F1 {dev_f1:.3f} "
                                                   f"(best {best_f1:.3f}), {minutes:.1f} min", markup=False,
                                                   highlight=False, soft_wrap=True)  # one line, even in a log
                        if main and cfg.early_stopping_patience and bad_evals >= cfg.early_stopping_patience:
                            accelerator.set_trigger()
                        stopped_early = accelerator.check_trigger()  # the main process decides for all
                    model.train()
                if step % cfg.checkpoint_every == 0 or stopped_early:
                    save_checkpoint()
                if stopped_early:
                    break
    if terms is not None:
        terms.remove()
    accelerator.wait_for_everyone()  # best.pt is complete before anyone reads it
    unwrapped = accelerator.unwrap_model(model)
    if best_path.exists():
        load_trainable_state(unwrapped, torch.load(best_path, map_location="cpu", weights_only=True))
    else:  # no evaluation was allowed (e.g. a schedule longer than training): keep the last weights
        best_f1 = _dev_macro_f1(model, tokenizer, splits, cfg, accelerator)
    return FitResult(best_dev_macro_f1=best_f1, steps=step, seconds=elapsed + time.time() - start,
                     stopped_early=stopped_early, dev_history=history)


def _dev_macro_f1(model: torch.nn.Module, tokenizer, splits: Splits, cfg: TrainConfig,
                  accelerator: Accelerator) -> float:
    """Dev macro-F1: each process scores a contiguous share of the dev texts, all get the same gathered figure."""
    unwrapped = accelerator.unwrap_model(model)
    with accelerator.split_between_processes(list(splits.dev.texts)) as texts:
        logits = predict_logits(unwrapped, tokenizer, texts, batch_size=2 * cfg.batch_size, max_length=cfg.max_length,
                                device=accelerator.device)
    predicted = np.concatenate(gather_object([logits])).argmax(-1)
    # over the classes dev holds or the model predicts, as training has always scored: the dataset's every class
    # would average in a class dev lacks, changing the recorded figure and which checkpoint is kept
    return macro_f1(splits.dev.labels, predicted, labels_present(splits.dev.labels, predicted))


def finetune_seconds(model_name: str, splits: Splits, cfg: TrainConfig, *, trust_remote_code: bool = False,
                     probe_steps: int = 3) -> tuple[float, int, float]:
    """How long `finetune` of `model_name` on `splits` takes here at the least: (seconds, steps, seconds per step).

    One step is measured, not assumed: `probe_steps` optimizer steps on a batch of the training texts of median
    length (the loop batches texts of similar length, so a median one pads as a typical step does), on the device
    and in the precision `fit` would use, on a copy of the model that is then dropped (nothing is trained or kept;
    the random state is restored, so the fine-tune that follows starts as it would have), the fastest after the
    first (which warms up). Steps are those `fit` takes to the earliest stop its schedule allows (the first
    evaluation always counts as better, so `early_stopping_patience` worse ones after it); evaluation and
    checkpoints come on top. What `optimize` holds a time budget against before it starts a teacher's fine-tune."""
    from ..models.load import load_classifier, load_tokenizer

    device = torch.device("cuda" if torch.cuda.is_available() and not cpu_processes() else "cpu")
    amp_dtype = AUTOCAST_DTYPES.get(training_precision(cfg.mixed_precision, device))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        tokenizer = load_tokenizer(model_name, trust_remote_code=trust_remote_code)
        model = load_classifier(model_name, splits.labels, trust_remote_code=trust_remote_code).to(device)
        if cfg.freeze_embeddings:
            freeze_word_embeddings(model)
        model.train()
        size = min(cfg.batch_size, len(splits.train))
        encoded = tokenizer(list(splits.train.texts), truncation=True, max_length=cfg.max_length)["input_ids"]
        middle = np.argsort([len(ids) for ids in encoded], kind="stable")[max(0, (len(encoded) - size) // 2):][:size]
        batch = tokenizer([splits.train.texts[i] for i in middle], truncation=True, max_length=cfg.max_length,
                          padding=True, return_tensors="pt").to(device)
        labels = torch.tensor([splits.train.labels[i] for i in middle], device=device)
        optimizer = _optimizer(model, cfg, TrainHooks())
        times = []
        for _ in range(max(2, probe_steps)):
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                loss = model(**batch, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        del model, optimizer
    _, total, eval_every = schedule(len(splits.train), cfg)
    steps = min(total, (cfg.early_stopping_patience + 1) * eval_every) if cfg.early_stopping_patience else total
    per_step = min(times[1:])
    return steps * per_step, steps, per_step


def finetune(model_name: str, splits: Splits, cfg: TrainConfig, out_dir: Path, *, resume: bool = False,
             data: DataConfig | None = None, trust_remote_code: bool = False) -> dict:
    """Fine-tune a hub id or folder on `splits` and save a standard classifier folder to `out_dir`.

    Checkpoints live in `<out_dir>.work/` until the run succeeds; the finished folder appears
    atomically with `id2label`/`label2id` set and a `training.json` that says how it was made
    (`data`, the configuration `splits` was loaded with, included). `trust_remote_code` lets the model run
    the Python code its folder or hub repository ships.
    """
    from ..models.load import load_classifier, load_tokenizer, save_classifier

    tokenizer = load_tokenizer(model_name, trust_remote_code=trust_remote_code)
    model = load_classifier(model_name, splits.labels, trust_remote_code=trust_remote_code)
    with checkpoints_for(out_dir) as work:
        result = fit(model, tokenizer, splits, cfg, work, resume=resume, desc="fine-tune")
        summary = {
            "base_model": model_name, "dataset": splits.summary(), "data_config": data_record(data),
            "train_config": asdict(cfg), "result": asdict(result)
        }
        if is_main_process():
            save_classifier(model, tokenizer, Path(out_dir), summary)
    return summary
