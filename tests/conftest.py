"""Shared fixtures: small slices of the real data and a tiny BERT classifier folder built from a config."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mahacompress.core.config import DataConfig
from mahacompress.data.splits import Splits, TextSet, load_splits
from mahacompress.models.load import tiny_bert, tiny_tokenizer

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
# Session fixtures that train a model: every test that uses one (directly or through another fixture) is slow.
TRAINING_FIXTURES = {"teacher_dir"}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items):
    """Mark `slow` the tests that depend on a fixture in TRAINING_FIXTURES (the rest mark themselves)."""
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Teacher-logit caches of tests (and their subprocesses) stay out of the user's ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MAHACOMPRESS_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _no_settle_pause(monkeypatch):
    """Timings in tests are never compared, so the pause that keeps one backend's spinning threads out of the
    next one's timings (measure.SETTLE_SECONDS, 200 ms a turn: 1.5 minutes of this suite) is cut to nothing;
    test_measure checks that the pause is taken."""
    import mahacompress.measure.latency as measure

    monkeypatch.setattr(measure, "SETTLE_SECONDS", 0.0)


def _slice(ts: TextSet, n: int) -> TextSet:
    return TextSet(ts.texts[:n], ts.labels[:n])


@pytest.fixture(scope="session")
def shc_splits() -> Splits:
    """mahanews-shc with a stratified 240-row training slice, 120 dev and 240 test rows."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the real-data tests need the shared MahaNews files")
    s = load_splits(DataConfig("mahanews-shc", max_train_rows=240))
    return Splits(s.name, s.labels, s.train, _slice(s.dev, 120), _slice(s.test, 240), s.cleaning)


@pytest.fixture(scope="session")
def toy_splits() -> Splits:
    """A 3-class task a tiny model learns in seconds: the label is given away by one keyword."""
    rng = random.Random(0)
    filler = "आज उद्या शहर राज्य देश लोक नवीन मोठा बातमी सरकार".split()
    keywords = {"Auto": "गाडी", "Sports": "क्रिकेट", "Tech": "मोबाईल"}
    labels = sorted(keywords)

    def make(n: int) -> TextSet:
        ys = [i % 3 for i in range(n)]
        texts = [" ".join(rng.sample(filler, 4) + [keywords[labels[y]]] + rng.sample(filler, 3)) for y in ys]
        return TextSet(texts, ys)

    return Splits("toy", labels, make(96), make(30), make(30), {})


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, shc_splits) -> Path:
    """A saved 2-layer BERT classifier with a WordPiece tokenizer trained on the slice."""
    texts = shc_splits.train.texts + shc_splits.dev.texts
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny") / "model", texts, shc_splits.labels)


def save_tiny_classifier(out: Path, texts: list[str], labels: list[str], vocab_size: int = 3000) -> Path:
    """An untrained 2-layer BERT classifier for `labels`, a WordPiece tokenizer trained on `texts`, saved in `out`."""
    tok = tiny_tokenizer(texts, vocab_size=vocab_size)
    model = tiny_bert(len(labels), vocab_size=len(tok), id2label=dict(enumerate(labels)),
                      label2id={lab: i for i, lab in enumerate(labels)})
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def teacher_dir(toy_splits, tmp_path_factory) -> Path:
    """A 4-layer tiny teacher trained on the toy task (the teacher of the distillation tests)."""
    from mahacompress.core.config import TrainConfig
    from mahacompress.models.load import save_classifier
    from mahacompress.train.loop import fit

    root = tmp_path_factory.mktemp("kd")
    tok = tiny_tokenizer(toy_splits.train.texts, vocab_size=200)
    labels = toy_splits.labels
    model = tiny_bert(3, vocab_size=len(tok), num_hidden_layers=4, id2label=dict(enumerate(labels)),
                      label2id={lab: i
                                for i, lab in enumerate(labels)})
    cfg = TrainConfig(epochs=10, batch_size=16, lr=1e-3, max_length=32, freeze_embeddings=False,
                      early_stopping_patience=0, evals_per_epoch=1, checkpoint_every=50)
    fit(model, tok, toy_splits, cfg, root / "work")
    save_classifier(model, tok, root / "teacher", {})
    return root / "teacher"
