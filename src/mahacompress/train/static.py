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

The student then trains in the project's one loop (`train.fit`) with the KD loss on the labelled split
plus the transfer set, so what it learns is the teacher's function on unlabelled text. Whether the
table trains too is the training section's `freeze_embeddings`.

Serving: the `static` backend (backends/numpy_engine.py) folds the linear head into the table and runs
it with numpy alone, with the very code an exported static folder runs (`runtime.StaticTable`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
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
from ..models.trim import trimmed_tokenizer
from .checkpoints import checkpoints_for, data_record
from .distill import distillation_inputs
from .loop import fit
from .processes import is_main_process

SIF_A = 1e-3  # Arora et al.'s smoothing constant; pieces rarer than this keep about their whole weight


@torch.inference_mode()
def piece_vectors(teacher: torch.nn.Module, template: list[int], ids: Sequence[int],
                  batch_size: int = 256) -> np.ndarray:
    """Mean last hidden state of `[CLS] piece [SEP]` (the tokenizer's own `template`) for each piece id."""
    teacher.eval()
    rows = []
    for start in range(0, len(ids), batch_size):
        chunk = torch.tensor([template[:1] + [i] + template[1:] for i in ids[start:start + batch_size]])
        hidden = teacher(input_ids=chunk, attention_mask=torch.ones_like(chunk), output_hidden_states=True)
        rows.append(hidden.hidden_states[-1].float().mean(1).numpy())
    return np.concatenate(rows)


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


def distill_static(teacher: str, splits: Splits, cfg: TrainConfig, out_dir: Path, *, dim: int = 256,
                   resume: bool = False, transfer: TransferSet | None = None, data: DataConfig | None = None,
                   trust_remote_code: bool = False) -> dict:
    """Build the static student of `teacher` and train its head (and table, unless frozen) by KD; save it,
    recording `data` (the configuration `splits` was loaded with) as every trained folder does.
    `trust_remote_code` lets the teacher run the Python code its folder ships."""
    train_splits, teacher_args, transfer_record = distillation_inputs(teacher, splits, cfg, transfer,
                                                                      trust_remote_code=trust_remote_code)
    model, tokenizer, record = build_table(teacher, train_splits.train.texts, dim, trust_remote_code=trust_remote_code)
    with checkpoints_for(out_dir) as work:
        result = fit(model, tokenizer, train_splits, cfg, work, resume=resume, desc="distil static", **teacher_args)
        info = {
            "teacher": teacher, "student": STATIC_KIND, "static": record, "dataset": splits.summary(),
            "data_config": data_record(data), "train_config": asdict(cfg), "transfer": transfer_record,
            "result": asdict(result)
        }
        if is_main_process():
            save_classifier(model, tokenizer, Path(out_dir), info)
    return info
