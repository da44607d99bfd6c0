"""`optimize`'s candidates: the grid's rows it tries (`resolve_candidates`), each one's untrained shape (built
with the shape training gives it and the vocabulary its export keeps, to be timed before anything is trained)
and a trained model's copy as it ships (`served_copy`)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from ..core.config import OPTIMIZE_RUNTIMES, GridConfig
from ..core.errors import MahaError
from ..core.files import TRAINING_RECORD, TRIM_RECORD, staged_dir, write_json
from ..core.hardware import unsupported_reason
from ..infer.numpy_engine import is_static
from ..models.folder import checkpoint_digest
from ..models.load import load_classifier, load_tokenizer, save_classifier
from ..models.trim import corpus_texts, trim
from ..study.context import RecipeContext
from ..study.recipes import KINDS, left_out, parse_row, settings_of
from ..study.rowspec import LAYER_KINDS, RowSpec, built_from, transfer_set
from ..train.distill import layer_student
from ..train.pruning.compact import compact, plan, save_pruned
from ..train.pruning.masks import MaskedModel, make_binarizer
from ..train.pruning.structure import structure_of
from ..train.static import build_table


def native_runtimes() -> list[str]:
    """The shippable transformer runtimes this machine runs at full speed."""
    return [r for r in OPTIMIZE_RUNTIMES if unsupported_reason(r) is None]


def resolve_candidates(names: list[str], *, transfer: bool, teacher_layers: int | None, teacher_hidden: int | None,
                       grid_cfg: GridConfig) -> tuple[list[RowSpec], dict[str, str]]:
    """The candidates' row specs (with `+tr` on every row that distils when a transfer set is given: it adds
    training text, not latency), the `kd` row a kdpNN prunes or a kdlN cuts added, and the rows left out with why
    (a layer student deeper than the teacher, `recipes.left_out`, as the grid skips such a row)."""
    specs: dict[str, RowSpec] = {}
    unfit: dict[str, str] = {}
    for name in names:
        spec = parse_row(name)
        if spec.served_from_another or spec.mp or not (KINDS[spec.kind].compressed or spec.kind == "static"):
            raise MahaError(f"candidate '{name}': expected a compressed row of the grid (kd[N], pNN[+kd], kdpNN, kdlN, "
                            "static), trained and run in fp32; the runtime is chosen by measurement")
        if spec.tr and not transfer:
            raise MahaError(f"candidate '{name}' uses the transfer set: give --transfer-set")
        if transfer and not spec.tr and (spec.kd or KINDS[spec.kind].distils):
            spec = parse_row(f"{spec.name}+tr")
        why = left_out(spec, grid_cfg, teacher_layers, teacher_hidden)
        if why:
            unfit[spec.name] = why
            continue
        source = built_from(spec)
        if source and source not in specs:
            specs[source] = parse_row(source)
        specs.setdefault(spec.name, spec)
    return list(specs.values()), unfit


def training_texts(ctx: RecipeContext, spec: RowSpec | None) -> list[str]:
    """What `spec` trains on (the training split, and its transfer set for a `+tr` row): the corpus its
    vocabulary is trimmed to, as `export` trims it (`trim.corpus_texts`, which export rebuilds from the model's
    record; the teacher, `spec` None: the training split)."""
    return corpus_texts(ctx.splits, transfer_set(ctx, spec) if spec and spec.tr else None)


def corpus_names(spec: RowSpec | None) -> list[str]:
    return ["the training split" + (" and transfer set" if spec and spec.tr else "")]


def build_shape(ctx: RecipeContext, spec: RowSpec, folder: Path) -> None:
    """Save `spec`'s model untrained, with the shape training gives it and the vocabulary its export keeps
    (reused while its settings hold)."""
    settings = settings_of(ctx.settings, spec)
    record = folder / TRAINING_RECORD
    if record.is_file() and json.loads(record.read_text(encoding="utf-8")).get("settings") == settings:
        return
    info = {"untrained_shape_of": spec.name, "settings": settings}
    corpus = training_texts(ctx, spec)
    if spec.kind == "static":  # the table before its training: the teacher's trimmed vocabulary, PCA, SIF
        model, tokenizer, _ = build_table(ctx.teacher_dir, corpus, ctx.cfg.static_dim,
                                          trust_remote_code=ctx.trust_remote_code)
        save_classifier(model, tokenizer, folder, info)
        return
    model = load_classifier(ctx.teacher_dir, trust_remote_code=ctx.trust_remote_code)
    tokenizer = load_tokenizer(ctx.teacher_dir, trust_remote_code=ctx.trust_remote_code)
    layers = spec.layers(ctx.cfg.student_layers)  # a kdlN has a kdN's shape, a kdpNN its kd student's before pruning
    if layers is not None:
        model = layer_student(model, layers, "ends" if spec.ends else "even")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{folder.name}.", dir=folder.parent) as work:
        untrimmed = Path(work) / "untrimmed"
        if spec.kind in LAYER_KINDS:
            save_classifier(model, tokenizer, untrimmed, info)
        else:
            pruned = random_compaction(model, spec.sparsity, ctx.cfg.prune.block_size)
            with staged_dir(untrimmed, TRAINING_RECORD) as tmp:
                save_pruned(pruned, tmp, tokenizer)
                write_json(tmp / TRAINING_RECORD, info)
        trim(
            untrimmed,
            corpus,
            folder,
            corpus_names=corpus_names(spec),  # copies training.json, the record above
            trust_remote_code=ctx.trust_remote_code)


def served_copy(out: Path, ctx: RecipeContext, spec: RowSpec, model_dir: str) -> str:
    """The trained model as its exported folder will hold it: its vocabulary trimmed to its training corpus
    (a static student's table is trimmed already). Its dev scores and the winner's final timing are this
    copy's, so what is judged is what ships; built once per trained model (keyed by its checkpoint)."""
    if is_static(model_dir):
        return model_dir
    folder = out / "served" / folder_of(spec)
    record = folder / TRIM_RECORD
    if not (record.is_file() and json.loads(record.read_text(encoding="utf-8")).get("source_checkpoint")
            == checkpoint_digest(model_dir)):
        trim(Path(model_dir), training_texts(ctx, spec), folder, corpus_names=corpus_names(spec),
             trust_remote_code=ctx.trust_remote_code)
    return str(folder)


def random_compaction(model: torch.nn.Module, sparsity: float, block_size: int, seed: int = 0) -> torch.nn.Module:
    """`model` compacted to `sparsity` by the pruner's own plan (`compact.plan`) over random scores. The plan fixes
    how many encoder weights go, not how a trained run splits them between heads and neurons or across layers
    (random scores spread them evenly; training may empty whole heads or layers), so a pruned shape's latency is
    an estimate of the trained model's, unlike a layer student's, which is exact."""
    structure = structure_of(model)
    masked = MaskedModel(model, structure, block_size, make_binarizer("topk", sparsity, 0.0))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for scores in masked.scores():
            scores.copy_(torch.rand(scores.shape, generator=generator))
    chosen = plan(masked, sparsity)
    masked.freeze(chosen.removed_heads, chosen.removed_neurons)
    return compact(masked.unwrap(), structure)


def folder_of(spec: RowSpec) -> str:
    """The folder name of `spec`'s shape, trial, model and served copy."""
    return spec.name.replace("+", "_")  # module names: identifiers, as the grid names row folders
