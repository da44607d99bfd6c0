"""Vocabulary trimming: same logits for kept texts, fallback for removed pieces, both tokenizer families."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mahacompress.core.errors import MahaError
from mahacompress.infer.evaluate import predict_logits
from mahacompress.models.load import load_classifier, load_tokenizer, tiny_bert, tiny_tokenizer
from mahacompress.models.trim import read_corpus, texts_with_removed_pieces, trim

MARATHI = [
    "आज पुण्यात जोरदार पाऊस पडला आणि वाहतूक मंदावली", "मुंबईत क्रिकेट सामना रंगला, भारताने विजय मिळवला",
    "नवीन मोबाईल फोन बाजारात दाखल झाला", "राज्य सरकारने शेतकऱ्यांसाठी नवी योजना जाहीर केली",
    "नाशिकमध्ये द्राक्षांचे उत्पादन वाढले", "पुणे महानगरपालिकेची निवडणूक जाहीर झाली",
    "चित्रपटाच्या प्रदर्शनाला प्रेक्षकांचा मोठा प्रतिसाद", "शाळांना दिवाळीची सुट्टी जाहीर"
]


def unigram_tokenizer(texts: list[str], vocab_size: int = 200):
    """An XLM-R-style tokenizer: SentencePiece Unigram, Metaspace, <s> A </s>, no byte fallback."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(texts,
                            trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>",
                                   model_max_length=128)


def save_model(tok, out: Path) -> Path:
    torch.manual_seed(0)
    model = tiny_bert(3, vocab_size=len(tok), pad_token_id=tok.pad_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(params=["unigram", "wordpiece"])
def model_dir(request, tmp_path) -> Path:
    tok = unigram_tokenizer(MARATHI) if request.param == "unigram" else tiny_tokenizer(MARATHI, vocab_size=300)
    return save_model(tok, tmp_path / request.param)


def logits(folder: Path, texts: list[str]) -> np.ndarray:
    return predict_logits(load_classifier(str(folder)), load_tokenizer(str(folder)), texts)


def test_trim_keeps_logits_of_corpus_texts_and_falls_back_for_the_rest(model_dir, tmp_path):
    corpus = MARATHI[:4]
    record = trim(model_dir, corpus, tmp_path / "trimmed")
    out = tmp_path / "trimmed"
    assert record["pieces_kept"] < record["pieces_before"]
    assert json.loads((out / "trim.json").read_text())["pieces_kept"] == record["pieces_kept"]
    assert load_classifier(str(out)).config.vocab_size == record["pieces_kept"]
    np.testing.assert_allclose(logits(out, corpus), logits(model_dir, corpus), atol=1e-5)

    unseen = MARATHI[4:]
    old_tok, new_tok = load_tokenizer(str(model_dir)), load_tokenizer(str(out))
    assert texts_with_removed_pieces(old_tok, new_tok, unseen) > 0
    assert texts_with_removed_pieces(old_tok, new_tok, corpus) == 0
    for text in unseen:  # Devanagari was seen: every character still has a piece, nothing becomes unknown
        assert new_tok.unk_token_id not in new_tok(text)["input_ids"]
        pieces = new_tok.tokenize(text)
        assert "".join(pieces).replace("▁", "").replace("##", "") == text.replace(" ", "")
    assert logits(out, unseen).shape == (len(unseen), 3)


def test_trim_a_pruned_model_with_its_own_code(tmp_path):
    """A compacted pruned model (loaded with trust_remote_code) trims like a stock one."""
    from mahacompress.train.pruning.compact import compact, save_pruned
    from mahacompress.train.pruning.structure import structure_of

    tok = tiny_tokenizer(MARATHI, vocab_size=300)
    torch.manual_seed(0)
    model = tiny_bert(3, vocab_size=len(tok)).eval()
    with torch.no_grad():
        model.bert.encoder.layer[0].intermediate.dense.weight[:64] = 0  # something for compaction to remove
        model.bert.encoder.layer[0].output.dense.weight[:, :64] = 0
    save_pruned(compact(model, structure_of(model)), tmp_path / "pruned", tok)
    trim(tmp_path / "pruned", MARATHI[:3], tmp_path / "trimmed")
    assert (tmp_path / "trimmed" / "modeling_pruned.py").is_file()
    np.testing.assert_allclose(logits(tmp_path / "trimmed", MARATHI[:3]), logits(tmp_path / "pruned", MARATHI[:3]),
                               atol=1e-5)


def test_bad_corpus_files_name_the_file(tmp_path):
    empty, latin1 = tmp_path / "empty.txt", tmp_path / "latin1.txt"
    empty.write_text("\n \n", encoding="utf-8")
    latin1.write_bytes("café\n".encode("latin-1"))
    for path, message in ((empty, "empty"), (latin1, "not UTF-8"), (tmp_path / "missing.txt", "not found")):
        with pytest.raises(MahaError, match=message) as info:
            read_corpus([path])
        assert str(path) in str(info.value)
    with pytest.raises(MahaError, match="no corpus"):
        read_corpus([])


def test_trim_needs_a_fast_tokenizer(model_dir, tmp_path):
    (model_dir / "tokenizer.json").unlink()
    with pytest.raises(MahaError, match="fast tokenizer") as info:
        trim(model_dir, MARATHI, tmp_path / "trimmed")
    assert str(model_dir / "tokenizer.json") in str(info.value)


@pytest.mark.slow
def test_cli_trim_with_a_bad_corpus_prints_one_line_and_exits_2(tmp_path):
    import os
    import subprocess
    import sys

    model = save_model(unigram_tokenizer(MARATHI), tmp_path / "model")  # a good model, so the corpus is what fails
    latin1 = tmp_path / "corpus.txt"
    latin1.write_bytes("café\n".encode("latin-1"))
    src = str(Path(__file__).resolve().parents[1] / "src")
    done = subprocess.run([
        sys.executable, "-m", "mahacompress", "trim",
        str(model), "--out",
        str(tmp_path / "t"), "--corpus",
        str(latin1)
    ], capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": src, "COLUMNS": "400"})
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and str(latin1) in done.stderr and "UTF-8" in done.stderr
    assert not (tmp_path / "t").exists()


def test_cli_trim_writes_the_folder(model_dir, tmp_path):
    from typer.testing import CliRunner

    from mahacompress.cli.app import app

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(MARATHI[:4]), encoding="utf-8")
    result = CliRunner().invoke(app, ["trim", str(model_dir), "--out", str(tmp_path / "t"), "--corpus", str(corpus)])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "t" / "trim.json").read_text())["corpus"] == [str(corpus)]


def test_default_corpus_is_training_split_plus_transfer_set_never_test_texts(tmp_path, shc_splits):
    from mahacompress.models.trim import training_corpus

    test_text = shc_splits.test.texts[0]
    transfer = tmp_path / "transfer.txt"
    transfer.write_text(f"{test_text}\nएक दोन तीन चार पाच सहा सात आठ नऊ दहा\n", encoding="utf-8")
    folder = tmp_path / "pruned"
    folder.mkdir()
    (folder / "pruning.json").write_text(
        json.dumps({"dataset": {"dataset": "mahanews-shc"}, "transfer": {"file": str(transfer)}}), encoding="utf-8")
    corpus = training_corpus(folder)
    assert corpus[-1] == "एक दोन तीन चार पाच सहा सात आठ नऊ दहा" and test_text not in corpus
    assert set(shc_splits.train.texts) <= set(corpus)
    with pytest.raises(MahaError, match="training.json"):
        training_corpus(tmp_path)


@pytest.mark.slow
def test_a_model_fine_tuned_on_a_users_folder_trims_and_exports_on_its_training_split(tmp_path, monkeypatch):
    """training.json records the whole data configuration (folder made absolute, custom columns, cap, seed):
    trim and export --trim-vocab rebuild the split from it, from any working folder."""
    import random

    from typer.testing import CliRunner

    from mahacompress.cli.app import app
    from mahacompress.core.config import DataConfig
    from mahacompress.data.splits import load_splits
    from mahacompress.models.load import save_classifier

    rng = random.Random(1)
    words = {"Auto": "गाडी", "Sports": "क्रिकेट", "Tech": "मोबाईल"}
    filler = "आज उद्या शहर राज्य देश लोक नवीन मोठा बातमी सरकार".split()
    data = tmp_path / "work" / "my-news"
    data.mkdir(parents=True)
    for name, n in (("news_train.csv", 36), ("news_test.csv", 9)):
        rows = [
            f"{' '.join(rng.sample(filler, 4))} {words[lab]} {i},{lab}"
            for i, lab in enumerate(sorted(words) * (n // 3))
        ]
        (data / name).write_text("\n".join(["sentence,topic", *rows]) + "\n", encoding="utf-8")
    tok = tiny_tokenizer([line for line in (data / "news_train.csv").read_text(encoding="utf-8").splitlines()],
                         vocab_size=200)
    labels = sorted(words)
    save_classifier(
        tiny_bert(3, vocab_size=len(tok), id2label=dict(enumerate(labels)),
                  label2id={lab: i
                            for i, lab in enumerate(labels)}), tok, tmp_path / "base", {})
    monkeypatch.chdir(tmp_path / "work")
    runner = CliRunner()
    result = runner.invoke(app, [
        "finetune", "--model",
        str(tmp_path / "base"), "--out",
        str(tmp_path / "ft"), "--dataset", "my-news", "--text-col", "sentence", "--label-col", "topic",
        "--max-train-rows", "24", "--seed", "7", "--epochs", "1", "--batch-size", "8", "--max-length", "32"
    ])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "ft" / "training.json").read_text(encoding="utf-8"))["data_config"]
    assert record["dataset"] == str(data) and (record["text_col"], record["label_col"]) == ("sentence", "topic")
    assert (record["max_train_rows"], record["seed"]) == (24, 7)

    monkeypatch.chdir(tmp_path)  # elsewhere: the relative "my-news" no longer names the folder
    result = runner.invoke(app, ["trim", str(tmp_path / "ft"), "--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    expected = load_splits(
        DataConfig(dataset=str(data), text_col="sentence", label_col="topic", max_train_rows=24, seed=7))
    assert json.loads((tmp_path / "t" / "trim.json").read_text())["corpus_texts"] == len(expected.train.texts)
    result = runner.invoke(app, [
        "export",
        str(tmp_path / "ft"), "--out",
        str(tmp_path / "e"), "--trim-vocab", "--backend", "onnx", "--max-length", "32"
    ])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "e" / "export.json").read_text())["trim"]["corpus_texts"] == len(expected.train.texts)


@pytest.mark.slow
def test_a_student_distilled_on_a_csv_transfer_set_trims_and_exports_on_exactly_that_corpus(tmp_path, monkeypatch):
    """distill records every setting that shapes the transfer pieces (file made absolute, column, window, cap,
    seed, n-gram), so trim and export --trim-vocab rebuild the very pieces the student saw, from any working
    folder. Found by a user: with the sentiment preset's column both stopped at "no column 'text'", the set
    having been recorded by file name alone. Export also runs at the length the student was trained with."""
    import random

    from typer.testing import CliRunner

    from mahacompress.cli.app import app
    from mahacompress.models.load import save_classifier
    from mahacompress.study.preset import load_preset

    column = load_preset("sentiment-quick")[0].transfer.text_col  # marathi_sentence
    rng = random.Random(3)
    words = {"Auto": "गाडी", "Sports": "क्रिकेट", "Tech": "मोबाईल"}
    filler = "आज उद्या शहर राज्य देश लोक नवीन मोठा बातमी सरकार".split()
    work = tmp_path / "work"
    (work / "reviews").mkdir(parents=True)
    for name, n in (("reviews_train.csv", 36), ("reviews_test.csv", 9)):
        rows = [
            f"{' '.join(rng.sample(filler, 4))} {words[lab]} {i},{lab}"
            for i, lab in enumerate(sorted(words) * (n // 3))
        ]
        (work / "reviews" / name).write_text("\n".join([f"{column},label", *rows]) + "\n", encoding="utf-8")
    unseen = ["सिनेमा", "गाणे", "नाटक", "कविता", "कादंबरी", "चित्रकला"]  # one word of its own per transfer text
    transfer = [f"{w} {w} {' '.join(rng.sample(filler, 3))}" for w in unseen]
    (work / "t.csv").write_text("\n".join([f"id,{column}", *(f"{i},{t}" for i, t in enumerate(transfer))]) + "\n",
                                encoding="utf-8")
    tok = tiny_tokenizer((work / "reviews" / "reviews_train.csv").read_text(encoding="utf-8").splitlines() + transfer)
    labels = sorted(words)
    save_classifier(
        tiny_bert(3, vocab_size=len(tok), id2label=dict(enumerate(labels)),
                  label2id={lab: i
                            for i, lab in enumerate(labels)}), tok, tmp_path / "teacher", {})
    monkeypatch.chdir(work)
    runner = CliRunner()
    result = runner.invoke(app, [
        "distill", "--teacher",
        str(tmp_path / "teacher"), "--student", "layers:1", "--out",
        str(tmp_path / "student"), "--dataset", "reviews", "--text-col", column, "--label-col", "label",
        "--transfer-set", "t.csv", "--transfer-text-col", column, "--transfer-window", "200", "--transfer-max", "4",
        "--epochs", "1", "--batch-size", "8", "--max-length", "32"
    ])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "student" / "training.json").read_text(encoding="utf-8"))["transfer"]
    assert record["kept"] == 4 and record["config"] == {
        "path": str(work / "t.csv"), "text_col": column, "label_col": None, "window_words": 200, "ngram": 8,
        "max_pieces": 4, "use_labels": False, "seed": 42
    }

    monkeypatch.chdir(tmp_path)  # elsewhere: the relative t.csv and reviews no longer name anything
    result = runner.invoke(app, ["trim", str(tmp_path / "student"), "--out", str(tmp_path / "trimmed")])
    assert result.exit_code == 0, result.output
    train_rows = json.loads((tmp_path / "student" / "training.json").read_text())["dataset"]["splits"]["train"]["rows"]
    assert json.loads((tmp_path / "trimmed" / "trim.json").read_text())["corpus_texts"] == train_rows + 4
    original, trimmed = load_tokenizer(str(tmp_path / "student")), load_tokenizer(str(tmp_path / "trimmed"))
    # the four pieces distilled on keep every one of their pieces; the two the cap left out lose their own word
    assert texts_with_removed_pieces(original, trimmed, transfer) == 2
    result = runner.invoke(
        app,
        ["export",
         str(tmp_path / "student"), "--out",
         str(tmp_path / "exported"), "--trim-vocab", "--backend", "onnx"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "exported" / "export.json").read_text())
    assert manifest["trim"]["corpus_texts"] == train_rows + 4 and manifest["max_length"] == 32

    # a record of an older version names the file alone: rebuilt with the default settings it cannot be read,
    # and one line says so, with the option trim and export do take
    info = json.loads((tmp_path / "student" / "training.json").read_text())
    info["transfer"] = {k: v for k, v in info["transfer"].items() if k != "config"}
    info["transfer"]["file"] = str(work / "t.csv")
    (tmp_path / "student" / "training.json").write_text(json.dumps(info), encoding="utf-8")
    result = runner.invoke(app, ["trim", str(tmp_path / "student"), "--out", str(tmp_path / "trimmed")])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output
    assert "recorded by its file name only" in result.stderr and "no column 'text'" in result.stderr
    assert "--corpus FILE" in result.stderr and "--text-col" not in result.stderr
