"""Transfer sets: windows, the dev/test overlap filter, bad files, and distillation on unlabelled text."""

from __future__ import annotations

import pytest
import torch
from conftest import SHARED
from typer.testing import CliRunner

from mahacompress.cli.app import app
from mahacompress.core.config import TrainConfig, TransferConfig
from mahacompress.core.errors import MahaError
from mahacompress.data.transfer import OverlapFilter, build_transfer, windows, words
from mahacompress.train import distill as kd
from mahacompress.train.losses import UNLABELLED, kd_loss

CFG = TrainConfig(epochs=4, batch_size=16, lr=1e-3, max_length=32, freeze_embeddings=False, early_stopping_patience=0,
                  checkpoint_every=50)
LPC = SHARED / "indicnews-marathi-lpc" / "Marathi_LPC_Valid.csv"


def test_windows_are_headline_sized_and_a_short_tail_joins_the_last():
    text = " ".join(f"w{i}" for i in range(27))
    pieces = windows(text, 12)
    assert [len(p.split()) for p in pieces] == [12, 15]
    assert windows("एक  दोन", 12) == ["एक दोन"] and windows("   ", 12) == []


def test_overlap_filter_drops_long_shared_runs_and_whole_short_texts():
    test_texts = ["मुंबईत आज जोरदार पाऊस पडला आणि लोकल सेवा विस्कळीत झाली", "भारताचा ऑस्ट्रेलियावर मोठा विजय"]
    f = OverlapFilter(test_texts, 8)
    assert f.hits("काल मुंबईत आज जोरदार पाऊस पडला आणि लोकल सेवा बंद")  # 8 words shared
    assert f.hits("कसोटीत भारताचा ऑस्ट्रेलियावर मोठा विजय, मालिका खिशात")  # a whole 4-word text, punctuation aside
    assert not f.hits("मुंबईत आज जोरदार पाऊस पडला आणि शाळा बंद")  # only 6 words shared
    assert words("“पाऊस,” आज।") == ["पाऊस", "आज"]


def test_lpc_transfer_set_never_overlaps_dev_or_test(shc_splits):
    protected = shc_splits.dev.texts + shc_splits.test.texts
    cfg = TransferConfig(path=str(LPC), text_col="text", label_col="labels", max_pieces=300)
    transfer = build_transfer(cfg, protected)
    c = transfer.counts
    assert c["kept"] == len(transfer.texts) == 300 and c["texts_read"] > 2000
    assert c["pieces"] == c["kept"] + c["dropped_overlap"] + c["dropped_duplicate"] + c["dropped_by_cap"]
    check = OverlapFilter(protected, 8)
    assert not any(check.hits(t) for t in transfer.texts)
    assert len(transfer.source_labels) == 300 and set(transfer.source_labels) <= set(shc_splits.labels)
    assert build_transfer(cfg, protected).texts == transfer.texts  # the capped sample is seeded


def test_a_transfer_piece_that_copies_a_test_text_is_dropped_and_counted(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("अ ब क ड इ फ ग ह\nएक दोन तीन चार पाच सहा सात आठ\n", encoding="utf-8")
    transfer = build_transfer(TransferConfig(path=str(f), window_words=12), ["एक दोन तीन चार पाच सहा सात आठ नऊ"])
    assert transfer.texts == ["अ ब क ड इ फ ग ह"] and transfer.counts["dropped_overlap"] == 1


@pytest.mark.parametrize("content, col, message", [(None, None, "file not found"), (b"", None, "no texts"),
                                                   (b"\xff\xfe bad\n", None, "line 1: bytes that are not UTF-8"),
                                                   (b"text\n\xe0\xa4\n", "text", "not UTF-8"),
                                                   (b"body\nabc\n", "text", "no column 'text'"), ])
def test_bad_transfer_files_stop_with_one_line_naming_the_file(tmp_path, content, col, message):
    f = tmp_path / ("t.csv" if col else "t.txt")
    if content is not None:
        f.write_bytes(content)
    with pytest.raises(MahaError, match=message) as err:
        build_transfer(TransferConfig(path=str(f), text_col=col), [])
    assert str(f) in str(err.value) and "\n" not in str(err.value)


def test_transfer_settings_out_of_range_are_refused(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("एक दोन\n", encoding="utf-8")
    for bad in ({"window_words": 0}, {"ngram": 0}, {"max_pieces": 0}):
        with pytest.raises(MahaError, match=f"{next(iter(bad))} must be at least 1"):
            build_transfer(TransferConfig(path=str(f), **bad), [])


def test_kd_loss_uses_unlabelled_rows_for_the_soft_term_only():
    student, teacher = torch.randn(4, 3), torch.randn(4, 3)
    labels = torch.tensor([0, 2, UNLABELLED, UNLABELLED])
    mixed = kd_loss(student, teacher, labels, 0.5, 2.0)
    soft = kd_loss(student, teacher, torch.full((4, ), UNLABELLED), 1.0, 2.0)
    ce = torch.nn.functional.cross_entropy(student[:2], labels[:2])
    assert torch.allclose(mixed, 0.5 * soft + 0.5 * ce)
    assert torch.isfinite(kd_loss(student, teacher, torch.full((4, ), UNLABELLED), 0.5, 2.0))


def test_distillation_trains_on_the_transfer_set_and_reports_agreement(teacher_dir, toy_splits, tmp_path):
    # Unlabelled toy texts that carry the keyword of their class: the teacher should label them right.
    lines = [text for text in toy_splits.train.texts[:30]]
    f = tmp_path / "transfer.csv"
    f.write_text(
        "text,topic\n" + "".join(f"{t} नवीन,{toy_splits.labels[y]}\n"
                                 for t, y in zip(lines, toy_splits.train.labels[:30])), encoding="utf-8")
    transfer = build_transfer(TransferConfig(path=str(f), text_col="text", label_col="topic"), toy_splits.test.texts)
    info = kd.distill(str(teacher_dir), "layers:1", toy_splits, CFG, tmp_path / "student", transfer=transfer)
    record = info["transfer"]
    assert record["kept"] == len(transfer.texts) > 0
    assert record["teacher_agreement_with_file_labels"] > 0.9
    steps_plain = -(-len(toy_splits.train) // CFG.batch_size) * CFG.epochs
    assert info["result"]["steps"] > steps_plain  # the transfer pieces were trained on


def test_use_labels_refuses_labels_the_dataset_does_not_have(toy_splits, tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("text,topic\nएक दोन तीन,Weather\n", encoding="utf-8")
    transfer = build_transfer(TransferConfig(path=str(f), text_col="text", label_col="topic", use_labels=True), [])
    with pytest.raises(MahaError, match="Weather"):
        kd.with_transfer(toy_splits, transfer)


def test_cli_transfer_set_missing_is_one_error_before_training(tiny_model_dir, tmp_path):
    result = CliRunner().invoke(app, [
        "distill", "--teacher",
        str(tiny_model_dir), "--student", "layers:1", "--out",
        str(tmp_path / "s"), "--max-train-rows", "60", "--transfer-set",
        str(tmp_path / "nope.csv")
    ])
    assert result.exit_code == 2, result.output
    assert "nope.csv" in result.output and result.output.strip().count("\n") == 0
    assert not (tmp_path / "s").exists() and not (tmp_path / "s.work").exists()
