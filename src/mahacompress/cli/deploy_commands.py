"""Commands that run or ship a model: evaluate, predict, trim, export, serve."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..core import model_source
from ..core import validate as check
from ..core.config import TrainConfig
from ..core.errors import MahaError
from ..core.files import EXPORT_RECORD, TRIM_RECORD
from ..core.registry import EXPORT_BACKENDS, choices_help
from .checks import check_inference, check_label_map, one_writer
from .options import (
    AsJson,
    Backend,
    Corpus,
    DataDir,
    Dataset,
    DedupTest,
    FoldLabelCase,
    LabelCol,
    LabelMap,
    MaxLength,
    TextCol,
    TrustRemoteCode,
    splits_from_options,
)
from .output import console, print_json, print_metrics


def evaluate(model: Annotated[str, typer.Option(help="Model folder or hub id.")], dataset: Dataset = "mahanews-shc",
             split: Annotated[str, typer.Option(help="train | dev | test")] = "test", data_dir: DataDir = None,
             text_col: TextCol = None, label_col: LabelCol = None, fold_label_case: FoldLabelCase = False,
             label_map: LabelMap = None, dedup_test: DedupTest = False, backend: Backend = None,
             max_length: MaxLength = None, as_json: AsJson = False, trust_remote_code: TrustRemoteCode = False) -> None:
    """Accuracy, macro-F1, per-class figures and confusion matrix (also without classes no training row has)."""
    check.check_choice("--split", split, ("train", "dev", "test"))
    backend, max_length = check_inference(model, backend, max_length, trust_remote_code)
    check_label_map(label_map, model, trust_remote_code)
    from ..infer.evaluate import evaluate_model

    result = evaluate_model(
        model,
        splits_from_options(dataset, data_dir, text_col, label_col, dedup_test, fold_label_case=fold_label_case,
                            label_map=label_map), split, backend=backend, max_length=max_length,
        trust_remote_code=trust_remote_code)
    print_json(result) if as_json else print_metrics(f"{model} on {dataset}/{split}", result)


def predict(model: Annotated[str, typer.Option(help="Model folder or hub id.")],
            texts: Annotated[list[str] | None,
                             typer.Argument(help="Texts; none = one per line on stdin.")] = None,
            csv_file: Annotated[Path | None, typer.Option("--csv", help="CSV file with a text column.")] = None,
            text_col: Annotated[str, typer.Option(help="Text column of --csv.")] = "text", backend: Backend = None,
            max_length: MaxLength = None, as_json: AsJson = False, trust_remote_code: TrustRemoteCode = False) -> None:
    """Label and probability for each text."""
    backend, max_length = check_inference(model, backend, max_length, trust_remote_code)
    from ..infer.predict import predict_texts, read_text_column

    if csv_file is not None:
        items = read_text_column(csv_file, text_col)
    elif texts:
        items = list(texts)
    else:
        items = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    rows = predict_texts(model, items, backend=backend, max_length=max_length, trust_remote_code=trust_remote_code)
    if as_json:
        print_json(rows)
        return
    writer = csv.writer(sys.stdout, delimiter="\t", lineterminator="\n")
    for row in rows:
        writer.writerow([row["label"], f"{row['probability']:.4f}", row["text"]])


def _check_deploy(model: Path, out: Path, marker: str, corpus: list[Path] | None, trust_remote_code: bool) -> None:
    """A trim/export command's model folder, corpus files and output folder (a previous `marker` output), first;
    then the folder's lock."""
    model_source.check_model(str(model), trust_remote_code=trust_remote_code)
    for path in corpus or []:
        check.check_input_file(path, "corpus file")
    check.check_output_dir(out, marker, inputs=(model, *(corpus or [])))
    one_writer(out)


def _corpus(model: Path, corpus: list[Path] | None, text_col: str) -> tuple[list[str], list[str]]:
    from ..models.trim import read_corpus, training_corpus

    if corpus:
        return read_corpus(corpus, text_col), [str(p) for p in corpus]
    return training_corpus(model), ["the model's training split and transfer set"]


def trim(model: Annotated[Path, typer.Argument(help="Classifier folder (with tokenizer.json).")],
         out: Annotated[Path, typer.Option(help="Folder for the trimmed classifier.")], corpus: Corpus = None,
         text_col: Annotated[str, typer.Option(help="Text column of CSV corpora.")] = "text",
         trust_remote_code: TrustRemoteCode = False) -> None:
    """Keep only the vocabulary pieces a corpus needs (and their embedding rows)."""
    from ..models.trim import trim as run

    _check_deploy(model, out, TRIM_RECORD, corpus, trust_remote_code)
    texts, names = _corpus(model, corpus, text_col)
    record = run(model, texts, out, corpus_names=names, trust_remote_code=trust_remote_code)
    console.print(f"wrote {out}: kept {record['pieces_kept']} of {record['pieces_before']} pieces")


def export(model: Annotated[Path, typer.Argument(help="Classifier folder.")],
           out: Annotated[Path, typer.Option(help="Folder to write the deployable model to.")], backend: Annotated[
               str | None,
               typer.Option(
                   help=choices_help(EXPORT_BACKENDS) +
                   f"; default: {EXPORT_BACKENDS[0]}, or static (its only one) for a "
                   "static-embedding student; a calibrated one calibrates on 512 texts of the model's training "
                   "split, or of --corpus"), ] = None,
           trim_vocab: Annotated[
               bool,
               typer.Option(help="Trim the vocabulary first (to --corpus, default the training corpus).")] = False,
           corpus: Corpus = None, text_col: str = "text",
           dataset: Annotated[str | None,
                              typer.Option(
                                  help="Score the export on this dataset's test split (for the model card).")] = None,
           data_dir: DataDir = None, fold_label_case: FoldLabelCase = False, label_map: LabelMap = None,
           max_length: MaxLength = None, trust_remote_code: TrustRemoteCode = False) -> None:
    """Write a folder that runs with onnxruntime (openvino-int8: OpenVINO), tokenizers and numpy only (a
    static-embedding student: tokenizers and numpy), with a model card."""
    from ..core.registry import CALIBRATED_BACKENDS
    from ..deploy.export import export as run
    from ..deploy.export import export_backend
    from ..infer.calibration import calibration_sample
    from ..models.trim import read_corpus, training_corpus

    if backend is not None:
        check.check_choice("--backend", backend, EXPORT_BACKENDS)
    if max_length is not None:
        check.check_range("--max-length", max_length, 1)
    calibrated = backend in CALIBRATED_BACKENDS  # its corpus (or the training corpus) calibrates it
    _check_deploy(model, out, EXPORT_RECORD, corpus if trim_vocab or calibrated else None, trust_remote_code)
    if max_length is None:  # the length it was trained with, as evaluate and predict run it
        max_length = model_source.recorded_max_length(str(model)) or TrainConfig.max_length
    check.check_max_length(str(model), max_length)
    check_label_map(label_map, model, trust_remote_code)
    backend = export_backend(model, backend, trimming=trim_vocab)
    texts, names = _corpus(model, corpus, text_col) if trim_vocab else (None, [])
    calibration = None
    if calibrated:  # as the grid and optimize calibrate: a seeded sample of the training split (or --corpus)
        calibration = calibration_sample(
            read_corpus(corpus, text_col) if corpus else training_corpus(model, with_transfer=False))
    splits = (splits_from_options(dataset, data_dir, None, None, fold_label_case=fold_label_case, label_map=label_map)
              if dataset else None)
    manifest = run(model, out, backend=backend, corpus=texts, corpus_names=names, splits=splits, max_length=max_length,
                   calibration_texts=calibration, trust_remote_code=trust_remote_code)
    console.print(f"wrote {out} ({manifest['disk_bytes'] / 2**20:.1f} MiB)")


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
