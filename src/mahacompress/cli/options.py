"""The options several commands share (typer aliases), and the library objects they name: the data
configuration, its splits and a transfer set. Nothing here imports torch, so options are checked first."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..core.config import BACKENDS, DataConfig, TrainConfig, TransferConfig
from ..core.registry import choices_help
from ..data.sources import NAMED
from .output import console

Dataset = Annotated[str, typer.Option(help=" | ".join([*NAMED, "a folder of CSVs"]))]
DataDir = Annotated[str | None, typer.Option(help="Folder holding the dataset's CSV files.")]
TextCol = Annotated[str | None, typer.Option(help="Text column (folder of CSVs).")]
LabelCol = Annotated[str | None, typer.Option(help="Label column (folder of CSVs).")]
FoldLabelCase = Annotated[
    bool,
    typer.Option(
        help="Labels that differ only in case or spacing are one label, spelled as most training rows spell it."), ]
LabelMap = Annotated[
    str | None,
    typer.Option(
        metavar="FILE", help="CSV of from,to rows (a first row from,to is a header): labels renamed in every split, "
        "before --fold-label-case and before dev/test labels are checked."), ]
DedupTest = Annotated[bool, typer.Option(help="Evaluate on the de-duplicated test split.")]
MaxTrainRows = Annotated[int | None, typer.Option(help="Stratified slice of the training split (quick runs).")]
HiddenWeight = Annotated[float, typer.Option(help="Weight of hidden-state distillation (runs the teacher live).")]
AttentionWeight = Annotated[
    float,
    typer.Option(
        help="Weight of MiniLMv2 attention-relation distillation: query-query, key-key, value-value on mapped layers "
        "(runs the teacher live).")]
RelationHeads = Annotated[int, typer.Option(help="Heads the attention relations are split into.")]
LayerMap = Annotated[
    str | None,
    typer.Option(
        help="Teacher layer (0-based) each student layer learns from in the intermediate terms, e.g. 0,11; default: "
        "the layers a layer student was copied from, else evenly spaced.")]
ElasticDepths = Annotated[
    str | None,
    typer.Option(
        help="Layer counts, e.g. 2,3,4: shallower cuts of a layer student trained beside it on every step (elastic "
        "depth), so a `--cut-from` of it to one of them starts from layers trained to work at that depth")]
Augment = Annotated[
    int | None,
    typer.Option(
        help="Up to N teacher-labelled variants of each training text (near-neighbour word replacement, deletion, "
        "cropping), trained with the KD term only.")]
CutFrom = Annotated[
    Path | None,
    typer.Option(
        help="With --student layers:N: copy the N layers from this trained student of the teacher (a "
        "teacher assistant, e.g. its 6-layer student) instead of from the teacher; a short schedule suffices.")]
PretrainEpochs = Annotated[
    float,
    typer.Option(
        help="Static students: epochs their table regresses the teacher's features (the input of its classification "
        "layer) before the head, which starts as the teacher's own, trains by KD; 0 = off.")]
Patience = Annotated[int, typer.Option(help="Early-stopping patience in evaluations; 0 = off.")]
FreezeEmbeddings = Annotated[bool, typer.Option(help="Freeze word embeddings (fast on CPU).")]
MixedPrecision = Annotated[str, typer.Option(help="no | bf16 | fp16")]
MaxLength = Annotated[
    int | None,
    typer.Option(
        help="Tokens per text; default: the length the model was trained with (its training.json or pruning.json), "
        f"else {TrainConfig.max_length}."), ]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Backend = Annotated[str | None,
                    typer.Option(help=choices_help(BACKENDS) +
                                 "; a calibrated one must be built first (benchmarks/runtimes.py); default: static "
                                 "for a static-embedding student, else fp32"), ]
TransferSetOpt = Annotated[
    str | None,
    typer.Option("--transfer-set",
                 help="Unlabelled text for the teacher to label: a CSV (--transfer-text-col) or one text per line."), ]
TransferTextCol = Annotated[str | None, typer.Option(help="Text column of a CSV transfer set (default: text).")]
TransferLabelCol = Annotated[
    str | None,
    typer.Option(
        help="Label column of the transfer set: reports teacher agreement; with --transfer-use-labels, trains on it."
    ), ]
TransferWindow = Annotated[int, typer.Option(help="Cut transfer texts into windows of this many words.")]
TransferMax = Annotated[int | None, typer.Option(help="Keep a seeded random sample of at most this many pieces.")]
TransferUseLabels = Annotated[bool, typer.Option(help="Also train on the transfer set's own labels.")]
TrustRemoteCode = Annotated[
    bool,
    typer.Option(
        "--trust-remote-code", help="Run Python code shipped in the model folder or hub repository (its config's "
        "auto_map). Only for models you trust."), ]
Corpus = Annotated[
    list[Path] | None,
    typer.Option(
        "--corpus", help="Text (one per line) or CSV files: the pieces to keep (trim, --trim-vocab) and the texts "
        "openvino-int8 calibrates on; default: the training split and transfer set recorded in "
        "MODEL/training.json (or pruning.json)."), ]


def data_config(dataset: str, data_dir: str | None, text_col: str | None, label_col: str | None,
                dedup_test: bool = False, max_train_rows: int | None = None, seed: int = DataConfig.seed,
                fold_label_case: bool = False, label_map: str | None = None) -> DataConfig:
    """The data the options name (training commands record it, so trim/export can rebuild the corpus)."""
    return DataConfig(dataset=dataset, data_dir=data_dir, text_col=text_col, label_col=label_col, dedup_test=dedup_test,
                      max_train_rows=max_train_rows, seed=seed, fold_label_case=fold_label_case, label_map=label_map)


def load_data(data: DataConfig):
    """The splits of `data`, read only once the options are checked (a bad option costs no reading)."""
    from ..data.splits import load_splits

    return load_splits(data)


def splits_from_options(*options, **keywords):
    """The splits of `data_config(*options, **keywords)`."""
    return load_data(data_config(*options, **keywords))


def load_transfer(splits, path: str | None, text_col: str | None, label_col: str | None, window: int,
                  max_pieces: int | None, use_labels: bool, data_dir: str | None):
    """The transfer set named on the command line (None without --transfer-set), its counts printed."""
    if path is None:
        return None
    from ..data.transfer import for_splits

    cfg = TransferConfig(path=path, text_col=text_col, label_col=label_col, window_words=window, max_pieces=max_pieces,
                         use_labels=use_labels)
    transfer = for_splits(cfg, splits, data_dir)
    c = transfer.counts
    console.print(f"transfer set {c['file']}: {c['kept']} pieces kept of {c['pieces']} "
                  f"({c['dropped_overlap']} overlapping dev/test texts, {c['dropped_duplicate']} duplicates, "
                  f"{c['dropped_by_cap']} over the cap dropped)")
    return transfer
