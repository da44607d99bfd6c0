"""Knowledge distillation: a teacher-logit cache and shallow students made from the teacher's layers.

The loss terms live in `losses.py` (the intermediate ones wired in `intermediate.py`) and are added by the
one training loop when it is given a teacher, so pruning + KD and layer-subset students share one loop. Our
training inputs are fixed per text (augmented variants are made once, before training; deterministic
truncation), so teacher logits are computed once per (teacher, texts, tokenisation) and cached on disk: no
teacher forward pass is paid per step. Hidden-state distillation (`kd_hidden_weight > 0`) needs every token's
hidden state in every layer, too big to cache (about 1 GB for 2k headlines), and the attention-relation term
(`kd_attention_weight > 0`, MiniLMv2's query-query, key-key and value-value relations of the mapped layers)
every mapped layer's query, key and value projections, bigger still, so either runs the teacher live on each
batch instead.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import broadcast_object_list
from transformers import PreTrainedModel

from ..core.config import DataConfig, TrainConfig
from ..core.errors import MahaError
from ..core.files import atomic_path, cache_root
from ..data.splits import Splits, TextSet
from ..data.transfer import TransferSet
from ..infer.evaluate import predict_logits
from ..models.load import config_labels, load_classifier, load_config, load_tokenizer, save_classifier
from .augment import teacher_augmented
from .checkpoints import checkpoints_for, data_record
from .elastic import check_elastic
from .intermediate import check_intermediate
from .loop import fit
from .losses import UNLABELLED, evenly_spaced
from .processes import is_main_process, process_count, process_state
from .pruning.structure import layer_list, set_layer_list


def default_cache() -> Path:
    """`$MAHACOMPRESS_CACHE/teacher-logits`, by default under ~/.cache/mahacompress (files.cache_root)."""
    return cache_root() / "teacher-logits"


def _fingerprint(teacher: str, texts: list[str], max_length: int, kind: str = "logits") -> str:
    """Key of a cached teacher matrix: teacher identity (its config and weight file sizes/times), texts, length and
    what the matrix holds (`kind`; logits' keys are those caches written before there was another kind)."""
    h = hashlib.sha256()
    path = Path(teacher)
    if path.is_dir():
        for f in sorted(path.iterdir()):
            if f.suffix in (".json", ".safetensors", ".bin"):
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(str(path.resolve() if path.exists() else teacher).encode())
    h.update(str(max_length).encode())
    if kind != "logits":
        h.update(f"kind:{kind}".encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:24]


def cached_teacher_output(teacher: str, texts: list[str], *, max_length: int, kind: str,
                          compute: Callable[[], np.ndarray], cache_dir: Path | None = None) -> np.ndarray:
    """`compute()`, the teacher's `kind` matrix for `texts` (one row per text), computed once and cached as .npy
    (written atomically) under the teacher, texts and length's fingerprint.

    Launched as several processes (torchrun), the main one computes and writes the cache and the others then read
    it; a failure on the main process is sent to all, so every process stops with the same line.
    """
    cache_dir = Path(cache_dir or default_cache())
    suffix = "" if kind == "logits" else f"-{kind}"
    path = cache_dir / f"{_fingerprint(teacher, texts, max_length, kind)}{suffix}.npy"

    def compute_and_save() -> np.ndarray:
        matrix = compute()
        with atomic_path(path) as tmp:
            np.save(tmp, matrix)
        return matrix

    state = process_state()
    if state.num_processes == 1:
        return np.load(path) if path.exists() else compute_and_save()
    failure = [None]
    if state.is_main_process:
        try:
            if not path.exists():
                compute_and_save()
        except Exception as exc:
            failure = [
                str(exc) if isinstance(exc, MahaError) else
                f"{teacher}: computing teacher {kind} failed on the main process ({type(exc).__name__})"
            ]
    broadcast_object_list(failure)
    if failure[0] is not None:
        raise MahaError(failure[0])
    return np.load(path)


def teacher_logits(teacher: str, texts: list[str], *, max_length: int, labels: list[str] | None = None,
                   cache_dir: Path | None = None, batch_size: int = 64, trust_remote_code: bool = False) -> np.ndarray:
    """Teacher logits for `texts`, computed once and cached as .npy (`cached_teacher_output`).

    With `labels`, a teacher whose label list differs (by name and order) is refused. `trust_remote_code`
    lets the teacher run the Python code its folder or hub repository ships.
    """
    return cached_teacher_output(
        teacher, texts, max_length=max_length, kind="logits", cache_dir=cache_dir,
        compute=lambda: _compute_logits(teacher, texts, max_length, labels, batch_size, trust_remote_code))


def _compute_logits(teacher: str, texts: list[str], max_length: int, labels: list[str] | None, batch_size: int,
                    trust_remote_code: bool) -> np.ndarray:
    model = load_classifier(teacher, trust_remote_code=trust_remote_code)
    tokenizer = load_tokenizer(teacher, trust_remote_code=trust_remote_code)
    if labels is not None:
        _check_labels(teacher, model, labels)
    return predict_logits(model, tokenizer, texts, batch_size=batch_size, max_length=max_length)


def teacher_for_fit(teacher: str | np.ndarray, splits: Splits, cfg: TrainConfig, *,
                    trust_remote_code: bool = False) -> dict:
    """`fit`'s teacher arguments: cached train-split logits, or the live model when hidden states are distilled.

    `teacher` is a model folder / hub id (loaded with `trust_remote_code`), or logits already computed for
    `splits.train`.
    """
    if isinstance(teacher, np.ndarray):
        if cfg.intermediate:
            raise MahaError("intermediate-layer distillation needs the teacher model, not only its logits")
        return {"teacher_logits": teacher}
    if cfg.intermediate:
        model = load_classifier(teacher, trust_remote_code=trust_remote_code)
        _check_labels(teacher, model, splits.labels)
        return {"teacher_model": model}
    return {
        "teacher_logits": teacher_logits(teacher, splits.train.texts, max_length=cfg.max_length, labels=splits.labels,
                                         trust_remote_code=trust_remote_code)
    }


def with_transfer(splits: Splits, transfer: TransferSet | None) -> Splits:
    """`splits` whose training texts are followed by the transfer pieces, labelled UNLABELLED.

    With `transfer.use_labels` the pieces carry the file's own labels instead (hard labels too).
    Dev and test are untouched: the transfer set only ever adds training inputs.
    """
    if transfer is None:
        return splits
    if transfer.use_labels:
        ids = {name: i for i, name in enumerate(splits.labels)}
        unknown = sorted(set(transfer.source_labels) - set(ids))
        if unknown:
            raise MahaError(f"{transfer.counts.get('file')}: labels {unknown} are not the dataset's "
                            f"({', '.join(splits.labels)}); set use_labels off or fix the file")
        extra = [ids[label] for label in transfer.source_labels]
    else:
        extra = [UNLABELLED] * len(transfer.texts)
    train = TextSet(splits.train.texts + transfer.texts, splits.train.labels + extra)
    return replace(splits, train=train)


def distillation_inputs(teacher: str | np.ndarray, splits: Splits, cfg: TrainConfig,
                        transfer: TransferSet | None = None, *,
                        trust_remote_code: bool = False) -> tuple[Splits, dict, dict | None, dict | None]:
    """What `fit` needs to distil: the training splits (plus transfer pieces, then augmented variants), the teacher
    arguments, a record of the transfer set (its counts, the settings that built it, and how often the teacher's
    label agrees with the file's) and one of the augmentation (`train.augment`; None while `cfg.augment.per_text`
    is 0). `trust_remote_code`: see `teacher_for_fit`.

    The variants are unlabelled rows, like transfer pieces: only the KD term sees them. Their logits come through
    the teacher-logit cache, whose key covers every training text, so a re-run with the same settings reuses them.
    """
    if transfer is not None and isinstance(teacher, np.ndarray):
        raise MahaError("a transfer set needs the teacher model to label it, not precomputed logits")
    augmenting = cfg.augment.per_text > 0
    if augmenting and isinstance(teacher, np.ndarray):
        raise MahaError("augmentation (--augment) needs the teacher model to find word neighbours and label the "
                        "variants, not precomputed logits")
    train_splits = with_transfer(splits, transfer)
    augmented = None
    if augmenting:
        sources = splits.train.texts + (transfer.texts if transfer is not None and cfg.augment.transfer else [])
        augmented = teacher_augmented(teacher, sources, splits.dev.texts + splits.test.texts, cfg.augment,
                                      trust_remote_code=trust_remote_code)
        train = train_splits.train
        train_splits = replace(
            train_splits, train=TextSet(train.texts + augmented.texts,
                                        train.labels + [UNLABELLED] * len(augmented.texts)))
    t0 = time.perf_counter()
    if augmented is not None and not cfg.intermediate and is_main_process():
        print(f"augment: the teacher labels {len(train_splits.train)} training texts (cached logits are reused)",
              flush=True)
    teacher_args = teacher_for_fit(teacher, train_splits, cfg, trust_remote_code=trust_remote_code)
    augment_record = None
    if augmented is not None:
        augment_record = {
            **augmented.record, "labelling_seconds": time.perf_counter() - t0,
            "labelling_runtime": "torch fp32 (live, each batch)" if cfg.intermediate else "torch fp32"
        }
    if transfer is None:
        return train_splits, teacher_args, None, augment_record
    record = transfer.record()
    logits = teacher_args.get("teacher_logits")
    if transfer.source_labels is not None and logits is not None:
        ids = {name: i for i, name in enumerate(splits.labels)}
        predicted = logits[len(splits.train):len(splits.train) + len(transfer.texts)].argmax(-1)
        known = [(p, ids[label]) for p, label in zip(predicted, transfer.source_labels) if label in ids]
        record["teacher_agreement_with_file_labels"] = (sum(int(p == y)
                                                            for p, y in known) / len(known) if known else None)
        record["pieces_with_known_label"] = len(known)
    return train_splits, teacher_args, record, augment_record


def check_compatible(teacher: str, student: str, splits: Splits, *, trust_remote_code: bool = False) -> None:
    """Teacher and student must share the label set (by name and order) and the tokenizer vocabulary."""
    trust = {"trust_remote_code": trust_remote_code}
    t_model, s_model = load_classifier(teacher, **trust), load_classifier(student, **trust)
    t_labels = config_labels(t_model.config)
    s_labels = config_labels(s_model.config)
    if t_labels != s_labels:
        raise MahaError(f"{student}: labels {s_labels} differ from the teacher's {t_labels} ({teacher})")
    _check_labels(teacher, t_model, splits.labels)
    if load_tokenizer(teacher, **trust).get_vocab() != load_tokenizer(student, **trust).get_vocab():
        raise MahaError(f"{student}: its tokenizer differs from the teacher's ({teacher}); KD needs the same inputs")


def bottom_and_top(n: int, total: int) -> list[int]:
    """`n` layer indices out of `total`: the bottom ceil(n/2) and the top floor(n/2), the middle dropped
    (what layer-dropping studies of BERT-style models favour over even spacing; one layer: the bottom)."""
    return list(range((n + 1) // 2)) + list(range(total - n // 2, total))


# a `static` student's table width (`static:DIM` chooses another)
STATIC_DIM = 256
# how a `layers:N` student chooses its N teacher layers (`layers:N:ends`); the first is the default
LAYER_CHOICES = {"even": evenly_spaced, "ends": bottom_and_top}


def layer_student(teacher: PreTrainedModel, n_layers: int, choice: str = "even") -> PreTrainedModel:
    """A shallower copy of `teacher` keeping `n_layers` of its layers, chosen by `LAYER_CHOICES[choice]`.

    `even` (DistilBERT style) spaces them by linspace, first and last always kept, so the student
    starts with the teacher's embeddings, its top layer and its classification head, and a sensible
    function; `ends` keeps the bottom and the top layers and drops the middle ones.
    """
    layers = layer_list(teacher)
    total = len(layers)
    if not 1 <= n_layers <= total:
        raise MahaError(f"layers:{n_layers}: the teacher has {total} layers; choose 1..{total}")
    keep = LAYER_CHOICES[choice](n_layers, total)
    student = copy.deepcopy(teacher)
    set_layer_list(student, torch.nn.ModuleList([copy.deepcopy(layers[i]) for i in keep]))
    student.config.num_hidden_layers = len(keep)
    student.config.distilled_from_layers = keep
    for i, layer in enumerate(layer_list(student)):  # attention modules know their index in v5
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = i
    return student


def describe(student_spec: str) -> dict:
    """Parse `pruned:S`, `layers:N[:even|ends]`, `static[:DIM]` or a folder into a dict the CLI and the grid both
    understand (a folder named `static` is `./static`)."""
    kind, _, value = student_spec.partition(":")
    count, _, choice = value.partition(":")
    if kind == "layers" and count.isdigit() and choice in ("", *LAYER_CHOICES):
        return {"kind": "layers", "layers": int(count), "choice": choice or next(iter(LAYER_CHOICES))}
    if kind == "static" and (value == "" or value.isdigit()):
        return {"kind": "static", "dim": int(value) if value else STATIC_DIM}
    if kind == "pruned":
        try:
            return {"kind": "pruned", "sparsity": float(value)}
        except ValueError:
            pass
    elif Path(student_spec).is_dir():
        return {"kind": "dir", "path": student_spec}
    raise MahaError(
        f"--student {student_spec}: expected pruned:S, layers:N[:{'|'.join(LAYER_CHOICES)}], static[:DIM] or an "
        "existing model folder")


def check_student_levers(teacher: str | None, student_spec: str, cfg: TrainConfig, *,
                         trust_remote_code: bool = False) -> None:
    """`intermediate.check_intermediate` and `elastic.check_elastic` for a student named as `describe` reads it (a
    pruned student: the teacher's shape), from the folders' configs alone, so a layer map, relation-head count or
    elastic depth that cannot fit is refused before any weights load; `teacher` None: no teacher was given, which
    intermediate terms need."""
    if teacher is None and cfg.intermediate:
        raise MahaError("--hidden-weight / --attention-weight: intermediate-layer distillation needs a teacher: give "
                        "--distill-from")
    named = student_spec.partition(":")[0] in ("layers", "pruned", "static")
    spec = describe(student_spec) if named else {"kind": "dir", "path": student_spec}  # or a hub id
    trust = {"trust_remote_code": trust_remote_code}
    teacher_config = load_config(teacher, **trust) if teacher is not None else None
    if spec["kind"] in ("static", "pruned") and cfg.elastic_depths is not None:
        raise MahaError(f"--elastic-depths trains a layer student (layers:N or a folder); --student {student_spec} is "
                        "not one")
    if spec["kind"] == "static":
        return  # it has no layers: the caller refuses the terms in its own words
    if spec["kind"] == "layers":
        depth = teacher_config.num_hidden_layers
        if not 1 <= spec["layers"] <= depth:
            return  # `layer_student` names the teacher's depth
        student_config = copy.deepcopy(teacher_config)
        student_config.num_hidden_layers = spec["layers"]
        student_config.distilled_from_layers = LAYER_CHOICES[spec["choice"]](spec["layers"], depth)
    else:
        student_config = teacher_config if spec["kind"] == "pruned" else load_config(spec["path"], **trust)
    check_intermediate(student_config, teacher_config, cfg)
    check_elastic(getattr(student_config, "num_hidden_layers", None), cfg, process_count())


def distill(teacher: str, student_spec: str, splits: Splits, cfg: TrainConfig, out_dir: Path, *, resume: bool = False,
            transfer: TransferSet | None = None, data: DataConfig | None = None, trust_remote_code: bool = False,
            cut_from: str | None = None) -> dict:
    """Distil `teacher` into a `layers:N[:choice]` student or an existing student folder; save it to `out_dir`.

    `cut_from` (a `layers:N` student only): copy the N layers from this trained student of the same teacher
    instead of from the teacher (a teacher assistant: its layers already serve the task, so a shallower copy of
    it starts nearer its end point than a copy of the teacher's layers and needs a shorter schedule).

    `data` (the configuration `splits` was loaded with) goes into training.json for trim and export.
    `trust_remote_code` lets teacher and student run the Python code their folders ship.

    `pruned:S` students are pruned and distilled in one run by `pruning.prune(..., distill_from=...)`;
    the CLI routes them there.
    """
    spec = describe(student_spec)
    if spec["kind"] == "pruned":
        raise MahaError("pruned:S students are made by `mahacompress prune --distill-from TEACHER`")
    if spec["kind"] == "static":
        raise MahaError("static[:DIM] students are made by `train.static.distill_static`; the CLI routes them there")
    trust = {"trust_remote_code": trust_remote_code}
    tokenizer = load_tokenizer(teacher, **trust)
    if spec["kind"] == "layers":
        source = load_classifier(cut_from or teacher, **trust)
        _check_labels(cut_from or teacher, source, splits.labels)
        student = layer_student(source, spec["layers"], spec["choice"])
        teacher_config = load_config(teacher, **trust) if cut_from else source.config
        if cut_from:  # the teacher layers the kept ones stand for, which the intermediate terms are mapped to
            origin = getattr(source.config, "distilled_from_layers", None) or list(range(len(layer_list(source))))
            student.config.distilled_from_layers = [origin[i] for i in student.config.distilled_from_layers]
        del source
    else:
        check_compatible(teacher, spec["path"], splits, **trust)
        student = load_classifier(spec["path"], **trust)
        teacher_config = load_config(teacher, **trust)
    check_intermediate(student.config, teacher_config, cfg)  # before the teacher's logits or augmented texts
    check_elastic(getattr(student.config, "num_hidden_layers", None), cfg, process_count())
    if cfg.elastic_depths is not None:
        layer_list(student, "elastic depth")  # a family whose layers cannot be cut, refused before any work
    train_splits, teacher_args, transfer_record, augment_record = distillation_inputs(
        teacher, splits, cfg, transfer, **trust)
    with checkpoints_for(out_dir) as work:
        result = fit(student, tokenizer, train_splits, cfg, work, resume=resume, desc="distil", **teacher_args)
        info = {
            "teacher": teacher, "student": student_spec,
            **({"cut_from": str(cut_from)} if cut_from else {}), "dataset": splits.summary(),
            "data_config": data_record(data), "train_config": asdict(cfg), "transfer": transfer_record,
            "augment": augment_record, "result": asdict(result)
        }
        if is_main_process():
            save_classifier(student, tokenizer, Path(out_dir), info)
    return info


def _check_labels(teacher: str, model: PreTrainedModel, labels: list[str]) -> None:
    have = config_labels(model.config)
    if have != list(labels):
        raise MahaError(f"{teacher}: the teacher's labels {have} differ from the dataset's {list(labels)}")
