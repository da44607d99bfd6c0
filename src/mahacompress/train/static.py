"""The static-embedding student: a table of piece vectors made from the fine-tuned teacher, then a linear
head trained on the teacher's soft labels. It runs as one table lookup and a mean: no attention, no layers.

How the table is made (Model2Vec's recipe, Tulkens & van Dongen 2024, applied to a *fine-tuned* teacher):
1. the pieces: the teacher's tokenizer cut to the pieces the training corpus (labelled split plus the
   transfer set) uses, with `trim.trimmed_tokenizer` (so the table is ~10k rows, not XLM-R's 250k);
2. each piece's vector: the teacher's last hidden states over `[CLS] piece [SEP]`, mean-pooled;
3. PCA down to `dim` dimensions (sklearn);
4. SIF weighting by corpus frequency, a / (a + p(piece)) with a = 1e-3 (Arora et al. 2017), folded into
   the rows, so frequent function pieces count less in a text's mean.
The `model2vec` package does steps 2-4 for a whole vocabulary; it was not used because it embeds every
one of the tokenizer's 250k pieces (17x the work of the corpus pieces on 2 cores) and builds its own
tokenizer, not the trimmed one whose ids the table is indexed by.

5. optionally (`pretrain_epochs` > 0; the grid's `static+pre`), the table pre-trained against the teacher's
   features of the training texts and the head started from the teacher's own final Linear through the learned
   projection (`static_pretrain.py`: Tokenlearn's idea, Model2Vec's POTION models).

The student then trains in the project's one loop (`train.fit`) with the KD loss on the labelled split
plus the transfer set, so what it learns is the teacher's function on unlabelled text. Whether the
table trains too is the training section's `freeze_embeddings` (pre-training trains it either way: that is
its purpose).

Serving: the `static` backend (backends/numpy_engine.py) folds the linear head into the table and runs
it with numpy alone, with the very code an exported static folder runs (`runtime.StaticTable`).
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from ..core.config import DataConfig, TrainConfig
from ..core.errors import MahaError
from ..data.splits import Splits
from ..data.transfer import TransferSet
from ..infer.runtime import STATIC_KIND
from ..models.load import config_labels, load_classifier, save_classifier
from ..models.modeling_static import StaticConfig, StaticForSequenceClassification
from ..models.trim import corpus_texts, trimmed_tokenizer
from .augment import mean_last_hidden
from .checkpoints import checkpoints_for, data_record
from .distill import STATIC_DIM, distillation_inputs
from .intermediate import refuse_layerless
from .loop import FitResult, fit
from .processes import is_main_process
from .static_pretrain import pretrain

SIF_A = 1e-3  # Arora et al.'s smoothing constant; pieces rarer than this keep about their whole weight


@torch.inference_mode()
def piece_vectors(teacher: torch.nn.Module, template: list[int], ids: Sequence[int],
                  batch_size: int = 256) -> np.ndarray:
    """Mean last hidden state of `[CLS] piece [SEP]` (the tokenizer's own `template`) for each piece id
    (`augment.mean_last_hidden`, which embeds augmentation's words the same way)."""
    return mean_last_hidden(teacher, [template[:1] + [i] + template[1:] for i in ids], batch_size)


def build_table(teacher_dir: str, corpus: Sequence[str], dim: int, *,
                trust_remote_code: bool = False) -> tuple[StaticForSequenceClassification, object, dict]:
    """An untrained static student (table from the teacher, fresh head) with its trimmed tokenizer
    (`trust_remote_code`: the teacher may run the Python code its folder ships)."""
    from sklearn.decomposition import PCA

    teacher = load_classifier(teacher_dir, trust_remote_code=trust_remote_code)
    hidden = teacher.config.hidden_size
    if not 1 <= dim <= hidden:
        raise MahaError(f"static_dim {dim}: choose 1..{hidden} (the teacher's hidden size)")
    tokenizer, keep, _ = trimmed_tokenizer(Path(teacher_dir), corpus, trust_remote_code=trust_remote_code)
    special = sorted({tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens})
    template = tokenizer("")["input_ids"]  # [CLS] [SEP] in the trimmed ids; the teacher needs its own
    old_template = [keep[i] for i in template]
    vectors = piece_vectors(teacher, old_template, keep)
    n_components = min(dim, len(keep) - 1)
    table = PCA(n_components=n_components, svd_solver="full", random_state=0).fit_transform(vectors)
    counts = Counter(i for enc in tokenizer.backend_tokenizer.encode_batch(list(corpus), add_special_tokens=False)
                     for i in enc.ids)
    total = max(1, sum(counts.values()))
    freq = np.array([counts.get(i, 0) / total for i in range(len(keep))])
    table *= (SIF_A / (SIF_A + freq))[:, None]
    table[special] = 0.0
    labels = config_labels(teacher.config)
    config = StaticConfig(vocab_size=len(keep), hidden_size=n_components, special_ids=special, num_labels=len(labels),
                          id2label=dict(enumerate(labels)), label2id={lab: i
                                                                      for i, lab in enumerate(labels)},
                          pad_token_id=tokenizer.pad_token_id)
    model = StaticForSequenceClassification(config)
    with torch.no_grad():
        model.embeddings.weight.copy_(torch.from_numpy(table).float())
    record = {
        "pieces_before": int(teacher.config.vocab_size), "pieces_kept": len(keep), "dim": n_components,
        "teacher_hidden": hidden, "corpus_texts": len(corpus), "sif_a": SIF_A
    }
    return model, tokenizer, record


def distill_static(teacher: str, splits: Splits, cfg: TrainConfig, out_dir: Path, *, dim: int = STATIC_DIM,
                   resume: bool = False, transfer: TransferSet | None = None, data: DataConfig | None = None,
                   trust_remote_code: bool = False) -> dict:
    """Build the static student of `teacher` and train its head (and table, unless frozen) by KD; save it,
    recording `data` (the configuration `splits` was loaded with) as every trained folder does.
    `trust_remote_code` lets the teacher run the Python code its folder ships."""
    refuse_layerless(cfg)  # before the teacher loads: a table has no hidden states or attention to match
    train_splits, teacher_args, transfer_record, augment_record = distillation_inputs(
        teacher, splits, cfg, transfer, trust_remote_code=trust_remote_code)
    # the table's pieces and frequencies come from the model's corpus as trim and export rebuild it (augmented
    # variants left out: they are made of the corpus's own words)
    model, tokenizer, record = build_table(teacher, corpus_texts(splits, transfer), dim,
                                           trust_remote_code=trust_remote_code)
    # redone on a resumed run (cheap, and deterministic for the seed); fit's checkpoint then restores the trained state
    pretrained = None
    if cfg.pretrain_epochs > 0:
        pretrained = pretrain(model, tokenizer, teacher, train_splits.train.texts, cfg,
                              trust_remote_code=trust_remote_code)
    with checkpoints_for(out_dir) as work:
        if pretrained is not None and not cfg.freeze_embeddings:
            model, result = _head_then_table(model, tokenizer, train_splits, cfg, work, resume, teacher_args,
                                             pretrained)
        else:
            result = fit(model, tokenizer, train_splits, cfg, work, resume=resume, desc="distil static",
                         **teacher_args)
            if pretrained is not None:  # the row's training time includes its pre-training
                result = replace(result, seconds=result.seconds + pretrained["seconds"])
                pretrained["in_train_seconds"] = True
        info = {
            "teacher": teacher, "student": STATIC_KIND, "static": record, "dataset": splits.summary(),
            "data_config": data_record(data), "train_config": asdict(cfg), "transfer": transfer_record,
            "augment": augment_record, "result": asdict(result)
        }
        if pretrained is not None:
            info["pretrain"] = pretrained
        if is_main_process():
            save_classifier(model, tokenizer, Path(out_dir), info)
    return info


def _head_then_table(model: StaticForSequenceClassification, tokenizer, splits: Splits, cfg: TrainConfig, work: Path,
                     resume: bool, teacher_args: dict,
                     pretrained: dict) -> tuple[StaticForSequenceClassification, FitResult]:
    """After pre-training, "the head, and the table if dev says so": KD from the pre-trained start twice, once with
    the table frozen and once training it too, and the one with the better dev macro-F1 kept (a table pre-trained on
    a few thousand texts may already hold what KD would only overfit). Both figures go into `pretrained`."""
    frozen = copy.deepcopy(model)
    head_only = fit(frozen, tokenizer, splits, replace(cfg, freeze_embeddings=True), work / "head-only", resume=resume,
                    desc="distil static (head only)", **teacher_args)
    both = fit(model, tokenizer, splits, cfg, work / "head-and-table", resume=resume, desc="distil static (table too)",
               **teacher_args)
    pretrained["dev_macro_f1"] = {"head_only": head_only.best_dev_macro_f1, "head_and_table": both.best_dev_macro_f1}
    keep_frozen = head_only.best_dev_macro_f1 > both.best_dev_macro_f1
    pretrained["kept"] = "head only" if keep_frozen else "head and table"
    pretrained["in_train_seconds"] = True
    kept = head_only if keep_frozen else both
    # the row's training time is what it cost: the pre-training and both fits, not only the one kept
    return (frozen if keep_frozen else model), replace(kept, seconds=pretrained["seconds"] + head_only.seconds +
                                                        both.seconds)
