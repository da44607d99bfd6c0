"""Commands that make smaller models: finetune, distill, prune (one training loop behind all three)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..core import model_source
from ..core import validate as check
from ..core.config import AugmentConfig, PruneConfig, TrainConfig, TransferConfig
from ..core.errors import MahaError
from ..core.files import PRUNING_RECORD, TRAINING_RECORD
from .checks import one_writer
from .options import (
    AttentionWeight,
    Augment,
    CutFrom,
    DataDir,
    Dataset,
    ElasticDepths,
    FoldLabelCase,
    FreezeEmbeddings,
    HiddenWeight,
    LabelCol,
    LabelMap,
    LayerMap,
    MaxTrainRows,
    MixedPrecision,
    Patience,
    PretrainEpochs,
    RelationHeads,
    TextCol,
    TransferLabelCol,
    TransferMax,
    TransferSetOpt,
    TransferTextCol,
    TransferUseLabels,
    TransferWindow,
    TrustRemoteCode,
    data_config,
    load_data,
    load_transfer,
)
from .output import console, out_console


def finetune(model: Annotated[str, typer.Option(
    help="Hub id or folder of the model to fine-tune.")], out: Annotated[Path,
                                                                         typer.Option(help="Output model folder.")],
             dataset: Dataset = "mahanews-shc", data_dir: DataDir = None, text_col: TextCol = None,
             label_col: LabelCol = None, max_train_rows: MaxTrainRows = None, fold_label_case: FoldLabelCase = False,
             label_map: LabelMap = None, epochs: float = TrainConfig.epochs, batch_size: int = TrainConfig.batch_size,
             lr: float = TrainConfig.lr, max_length: int = TrainConfig.max_length,
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
    _check_training(cfg, out, TRAINING_RECORD, (model, ), (dataset, data_dir), trust_remote_code)
    from ..train.loop import finetune as run

    data = data_config(dataset, data_dir, text_col, label_col, max_train_rows=max_train_rows, seed=seed,
                       fold_label_case=fold_label_case, label_map=label_map)
    summary = run(model, load_data(data), cfg, out, resume=resume, data=data, trust_remote_code=trust_remote_code)
    _say_once(f"wrote {out} (best dev macro-F1 {summary['result']['best_dev_macro_f1']:.4f})")


def _check_training(cfg: TrainConfig, out: Path, marker: str, models: tuple[str | None, ...],
                    data: tuple[str | None, ...], trust_remote_code: bool) -> None:
    """Model sources and the output folder (a previous `marker` output, holding no input) before any work, then
    the folder's lock (the command has checked `cfg` itself, before importing its training code)."""
    for model in filter(None, models):
        model_source.check_model(model, trust_remote_code=trust_remote_code)
        check.check_max_length(model, cfg.max_length)
    check.check_output_dir(out, marker, inputs=models + data)
    one_writer(out)


def _train_cfg(epochs: float, batch_size: int, lr: float, max_length: int, freeze_embeddings: bool, patience: int,
               mixed_precision: str, seed: int, **extra) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, max_length=max_length,
                       freeze_embeddings=freeze_embeddings, early_stopping_patience=patience,
                       mixed_precision=mixed_precision, seed=seed, **extra)


def _layer_counts(option: str, value: str | None) -> list[int] | None:
    """A comma-separated list of whole numbers (`--layer-map`, `--elastic-depths`), None when not given; the
    numbers are checked against the models later."""
    if value is None:
        return None
    try:
        return [int(part) for part in value.split(",")]
    except ValueError:
        raise MahaError(f"{option} {value}: expected whole numbers separated by commas, e.g. 2,3") from None


def _levers(augment: int | None, attention_weight: float, relation_heads: int, layer_map: str | None) -> dict:
    """The knowledge levers' TrainConfig fields from their options: `--augment` must be a count of 1 or more
    when given, `--layer-map` a comma-separated list of layer numbers (checked against the teacher later)."""
    if augment is not None:
        check.check_range("--augment", augment, 1)
    return {
        "augment": AugmentConfig(per_text=augment or 0), "kd_attention_weight": attention_weight,
        "relation_heads": relation_heads, "kd_layer_map": _layer_counts("--layer-map", layer_map)
    }


def distill(teacher: Annotated[str, typer.Option(help="Fine-tuned teacher folder or hub id.")], student: Annotated[
    str,
    typer.Option(
        help="pruned:S | layers:N[:even|ends] (which N teacher layers: evenly spaced, the default, or the bottom "
        "and top ones) | static[:DIM] (a static-embedding student, DIM 256 by default; the teacher must be a "
        "folder) | a student model folder"), ], out: Annotated[Path, typer.Option(help="Output model folder.")],
            dataset: Dataset = "mahanews-shc", data_dir: DataDir = None, text_col: TextCol = None,
            label_col: LabelCol = None, max_train_rows: MaxTrainRows = None, fold_label_case: FoldLabelCase = False,
            label_map: LabelMap = None, epochs: float = TrainConfig.epochs, batch_size: int = TrainConfig.batch_size,
            lr: float = TrainConfig.lr, max_length: int = TrainConfig.max_length,
            freeze_embeddings: FreezeEmbeddings = TrainConfig.freeze_embeddings,
            patience: Patience = TrainConfig.early_stopping_patience,
            alpha: Annotated[float, typer.Option(help="Weight of the KD term.")] = TrainConfig.kd_alpha,
            temperature: Annotated[float, typer.Option(help="Softmax temperature T.")] = TrainConfig.kd_temperature,
            hidden_weight: HiddenWeight = TrainConfig.kd_hidden_weight,
            attention_weight: AttentionWeight = TrainConfig.kd_attention_weight,
            relation_heads: RelationHeads = TrainConfig.relation_heads, layer_map: LayerMap = None,
            augment: Augment = None, transfer_set: TransferSetOpt = None, transfer_text_col: TransferTextCol = None,
            transfer_label_col: TransferLabelCol = None, transfer_window: TransferWindow = TransferConfig.window_words,
            transfer_max: TransferMax = None, transfer_use_labels: TransferUseLabels = False,
            pretrain_epochs: PretrainEpochs = TrainConfig.pretrain_epochs,
            mixed_precision: MixedPrecision = TrainConfig.mixed_precision, seed: int = TrainConfig.seed,
            cut_from: CutFrom = None, elastic_depths: ElasticDepths = None, resume: bool = False,
            trust_remote_code: TrustRemoteCode = False) -> None:
    """Knowledge distillation into a shallower student, an existing student, a pruned teacher or a static student."""
    cfg = _train_cfg(epochs, batch_size, lr, max_length, freeze_embeddings, patience, mixed_precision, seed,
                     kd_alpha=alpha, kd_temperature=temperature, kd_hidden_weight=hidden_weight,
                     pretrain_epochs=pretrain_epochs, elastic_depths=_layer_counts("--elastic-depths", elastic_depths),
                     **_levers(augment, attention_weight, relation_heads, layer_map))
    check.check_train_config(cfg)
    from ..train.distill import check_student_levers, describe
    from ..train.distill import distill as run

    spec = describe(student)
    if pretrain_epochs > 0 and spec["kind"] != "static":
        raise MahaError(f"--pretrain-epochs pre-trains a static student's table; --student {student} has none "
                        "(use --student static[:DIM], or leave the option out)")
    if cut_from is not None:
        _check_cut(teacher, student, spec, cut_from)
    if spec["kind"] == "static":
        _check_static(teacher, student, spec["dim"], cfg)
    _check_training(cfg, out, PRUNING_RECORD if spec["kind"] == "pruned" else TRAINING_RECORD,
                    (teacher, spec.get("path"), str(cut_from) if cut_from else None), (dataset, data_dir, transfer_set),
                    trust_remote_code)
    check_student_levers(teacher, student, cfg, trust_remote_code=trust_remote_code)
    if spec["kind"] == "pruned":
        check.check_range("--student pruned:S", spec["sparsity"], 0, 1, lo_open=True, hi_open=True)
    data = data_config(dataset, data_dir, text_col, label_col, max_train_rows=max_train_rows, seed=seed,
                       fold_label_case=fold_label_case, label_map=label_map)
    splits = load_data(data)
    transfer = load_transfer(splits, transfer_set, transfer_text_col, transfer_label_col, transfer_window, transfer_max,
                             transfer_use_labels, data_dir)
    if spec["kind"] == "pruned":
        from ..train.pruning.prune import prune

        prune(teacher, splits, cfg, PruneConfig(sparsity=spec["sparsity"]), out, resume=resume, distill_from=teacher,
              transfer=transfer, data=data, trust_remote_code=trust_remote_code)
    elif spec["kind"] == "static":
        from ..train.static import distill_static

        distill_static(teacher, splits, cfg, out, dim=spec["dim"], resume=resume, transfer=transfer, data=data,
                       trust_remote_code=trust_remote_code)
    else:
        run(teacher, student, splits, cfg, out, resume=resume, transfer=transfer, data=data,
            trust_remote_code=trust_remote_code, cut_from=str(cut_from) if cut_from else None)
    _say_once(f"wrote {out}")


def _check_cut(teacher: str, student: str, spec: dict, cut_from: Path) -> None:
    """--cut-from names a layer student of the teacher (a folder: same vocabulary and width, no pruned per-layer
    sizes, deep enough for --student layers:N), read from the configs alone, before any weights load."""
    if spec["kind"] != "layers":
        raise MahaError(f"--cut-from copies layers into a layers:N student; --student {student} is not one")
    if not cut_from.is_dir():
        raise MahaError(f"--cut-from {cut_from}: not a folder (a trained layer student of the teacher)")
    config = model_source.model_config(str(cut_from))
    depth = config.get("num_hidden_layers")
    if depth is None or config.get("model_type") in model_source.OWN_MODEL_TYPES:
        raise MahaError(f"--cut-from {cut_from}: not a layer student (its config has no plain layer count: a pruned "
                        "or static folder cannot be cut by layers)")
    if spec["layers"] > depth:
        raise MahaError(f"--student {student}: {cut_from} has {depth} layers; choose layers:1..{depth}")
    if Path(teacher).is_dir():
        mine = model_source.model_config(teacher)
        for key in ("vocab_size", "hidden_size"):
            if config.get(key) != mine.get(key):
                raise MahaError(f"--cut-from {cut_from}: its {key} {config.get(key)} differs from the teacher's "
                                f"{mine.get(key)}: cut a student of this teacher (not a trimmed or exported copy)")


def _check_static(teacher: str, student: str, dim: int, cfg: TrainConfig) -> None:
    """What a static student needs before any work: a teacher folder (its table is cut from the folder's tokenizer),
    a width of 1 up to the teacher's hidden size, and no intermediate-layer terms (it has no layers)."""
    if not Path(teacher).is_dir():
        raise MahaError(f"--teacher {teacher}: a static student is built from a local teacher folder (its tokenizer "
                        "is trimmed to the training corpus); fine-tune or download the teacher into a folder first")
    hidden = model_source.model_config(teacher).get("hidden_size")
    check.check_range("--student static:DIM", dim, 1, hidden)
    if cfg.intermediate or cfg.kd_layer_map is not None:
        raise MahaError(f"--student {student}: a static student has no layers; leave out --hidden-weight, "
                        "--attention-weight and --layer-map")


def prune(model: Annotated[str, typer.Option(help="Fine-tuned teacher folder or hub id.")],
          out: Annotated[Path, typer.Option(help="Output folder for the compacted model.")],
          sparsity: Annotated[float,
                              typer.Option(help="Fraction of encoder Linear weights to remove, in (0, 1).")],
          dataset: Dataset = "mahanews-shc", data_dir: DataDir = None, text_col: TextCol = None,
          label_col: LabelCol = None, max_train_rows: MaxTrainRows = None, fold_label_case: FoldLabelCase = False,
          label_map: LabelMap = None, binarizer: Annotated[str,
                                                           typer.Option(help="topk | sigmoid")] = PruneConfig.binarizer,
          block_size: Annotated[int,
                                typer.Option(help="Square block size of attention matrices.")] = PruneConfig.block_size,
          score_lr: Annotated[float, typer.Option(help="Learning rate of the mask scores.")] = PruneConfig.score_lr,
          penalty: Annotated[float, typer.Option(help="L1 weight (sigmoid binariser).")] = PruneConfig.penalty,
          epochs: float = TrainConfig.epochs, batch_size: int = TrainConfig.batch_size, lr: float = TrainConfig.lr,
          max_length: int = TrainConfig.max_length, freeze_embeddings: FreezeEmbeddings = TrainConfig.freeze_embeddings,
          patience: Patience = TrainConfig.early_stopping_patience,
          distill_from: Annotated[str | None, typer.Option(
              help="Teacher folder: prune with KD.")] = None, alpha: float = TrainConfig.kd_alpha,
          temperature: float = TrainConfig.kd_temperature, hidden_weight: HiddenWeight = TrainConfig.kd_hidden_weight,
          attention_weight: AttentionWeight = TrainConfig.kd_attention_weight,
          relation_heads: RelationHeads = TrainConfig.relation_heads, layer_map: LayerMap = None,
          augment: Augment = None, transfer_set: TransferSetOpt = None, transfer_text_col: TransferTextCol = None,
          transfer_label_col: TransferLabelCol = None, transfer_window: TransferWindow = TransferConfig.window_words,
          transfer_max: TransferMax = None, transfer_use_labels: TransferUseLabels = False,
          mixed_precision: MixedPrecision = TrainConfig.mixed_precision, seed: int = TrainConfig.seed,
          resume: bool = False, trust_remote_code: TrustRemoteCode = False) -> None:
    """Block movement pruning, then physical removal of heads and neurons; writes DIR and DIR/pruning.json."""
    cfg = _train_cfg(epochs, batch_size, lr, max_length, freeze_embeddings, patience, mixed_precision, seed,
                     kd_alpha=alpha, kd_temperature=temperature, kd_hidden_weight=hidden_weight,
                     **_levers(augment, attention_weight, relation_heads, layer_map))
    pcfg = PruneConfig(sparsity=sparsity, binarizer=binarizer, block_size=block_size, score_lr=score_lr,
                       penalty=penalty)
    check.check_prune_config(pcfg)
    check.check_train_config(cfg)
    check.check_block_size(model, block_size)
    _check_training(cfg, out, PRUNING_RECORD, (model, distill_from), (dataset, data_dir, transfer_set),
                    trust_remote_code)
    from ..train.distill import check_student_levers
    from ..train.pruning.prune import prune as run

    check_student_levers(distill_from, model, cfg, trust_remote_code=trust_remote_code)

    data = data_config(dataset, data_dir, text_col, label_col, max_train_rows=max_train_rows, seed=seed,
                       fold_label_case=fold_label_case, label_map=label_map)
    splits = load_data(data)
    transfer = load_transfer(splits, transfer_set, transfer_text_col, transfer_label_col, transfer_window, transfer_max,
                             transfer_use_labels, data_dir)
    summary = run(model, splits, cfg, pcfg, out, resume=resume, distill_from=distill_from, transfer=transfer, data=data,
                  trust_remote_code=trust_remote_code)
    table = Table(
        title=f"{out}: {summary['reached_sparsity']:.2%} of encoder Linear weights removed (target {sparsity:.0%})")
    for col in ("layer", "sparsity", "heads kept", "removed heads", "FFN width"):
        table.add_column(col, justify="right")
    for i, layer in enumerate(summary["layers"]):
        table.add_row(str(i), f"{layer['sparsity']:.1%}", str(layer["heads"]), str(layer["removed_heads"]),
                      str(layer["ffn_width"]))
    _say_once(table, out_console)


def _say_once(message, to: Console = console) -> None:
    """Print on the main process only: launched with torchrun / accelerate, every process runs the command."""
    from ..train.processes import is_main_process

    if is_main_process():
        to.print(message)
