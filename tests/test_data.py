"""Tests of the data layer: real shared data (when present) and tiny CSVs written per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from mahacompress.core.config import DataConfig
from mahacompress.core.errors import MahaError
from mahacompress.data import sources
from mahacompress.data.csvfiles import MAX_TEXT_CHARS, normalize, read_labeled_csv, read_text_column
from mahacompress.data.sources import resolve_files
from mahacompress.data.splits import check_label_map_targets, load_splits

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "mahanews-shc").is_dir(), reason=f"shared data not present at {SHARED}")

LABELS = ["Auto", "Sports", "Tech"]
real_download = sources.download
real_roots = sources.search_roots


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may reach the network or the real user cache or a user's MAHACOMPRESS_DATA."""

    def refuse(url: str, dest: Path) -> None:
        raise AssertionError(f"network used: {url}")

    monkeypatch.setattr(sources, "download", refuse)
    monkeypatch.delenv("MAHACOMPRESS_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def write(path: Path, lines: list[str], header: str = "text,label") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def rows(n: int, prefix: str = "t") -> list[str]:
    """n distinct rows spread over LABELS."""
    return [f"{prefix} वाक्य {i},{LABELS[i % 3]}" for i in range(n)]


def folder(tmp_path: Path, train: list[str], test: list[str], header: str = "text,label") -> Path:
    d = tmp_path / "ds"
    write(d / "my_train.csv", train, header)
    write(d / "my_test.csv", test, header)
    return d


# ------------------------------------------------------------------ real data


@needs_shared
def test_shc_protocol() -> None:
    s = load_splits(DataConfig("mahanews-shc"))
    assert len(s.test) == 2761 and len(s.labels) == 12 and s.labels == sorted(s.labels)
    tr, te = s.cleaning["train_source"], s.cleaning["test"]
    assert tr["header_rows_dropped"] == 11 and te["header_rows_dropped"] == 11
    assert Path(tr["file"]).name == "SHC_Valid.csv"
    # train+dev == cleaned Valid (no duplicates, no conflicting texts) minus test overlap
    v_texts, v_labels, _ = read_labeled_csv(SHARED / "mahanews-shc" / "SHC_Valid.csv", "Text", "Label")
    t_texts, _, _ = read_labeled_csv(SHARED / "mahanews-shc" / "SHC_Test.csv", "Text", "Label")
    by: dict[str, set[str]] = {}
    for t, lab in zip(v_texts, v_labels):
        by.setdefault(normalize(t), set()).add(lab)
    expect = {k for k, labs in by.items() if len(labs) == 1} - {normalize(t) for t in t_texts}
    got = [normalize(t) for t in s.train.texts + s.dev.texts]
    assert len(got) == len(set(got)) == tr["final_rows"] and set(got) == expect
    assert not set(got) & {normalize(t) for t in s.test.texts}
    assert tr["mojibake_rows"] > 0 and te["mojibake_rows"] > 0  # counted, kept
    # Every Manoranjan text of Valid is also in Test: the class is starved, and said so.
    assert s.cleaning["labels_without_training_rows"] == ["Manoranjan"]
    assert s.summary()["splits"]["test"]["rows"] == 2761


@needs_shared
def test_shc_dedup_test_and_lpc() -> None:
    deduped = load_splits(DataConfig("mahanews-shc", dedup_test=True))
    assert len(deduped.test) < 2761 and deduped.cleaning["test"]["duplicates_dropped"] == 2761 - len(deduped.test)
    lpc = load_splits(DataConfig("mahanews-lpc"))
    assert len(lpc.labels) == 12 and len(lpc.train) > 1000 and len(lpc.test) > 2000
    assert lpc.cleaning["test"]["empty_dropped"] > 200
    assert lpc.cleaning["test"]["header_rows_dropped"] == 11


# ------------------------------------------------------------------ bad input


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MahaError, match="nope.csv"):
        read_labeled_csv(tmp_path / "nope.csv", "text", "label")


def test_missing_columns_lists_them(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", ["x,y"], header="sentence,category")
    with pytest.raises(MahaError, match=r"a\.csv.*'text'.*sentence, category"):
        read_labeled_csv(p, "text", "label")


def test_non_utf8_names_row(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_bytes('text,label\nचांगले,Auto\n"two\nlines",Tech\n'.encode() + b"caf\xe9,Auto\n")
    with pytest.raises(MahaError, match=r"bad\.csv, row 4: .*UTF-8"):
        read_labeled_csv(p, "text", "label")


def test_unknown_test_label_names_file_row_label(tmp_path: Path) -> None:
    d = folder(tmp_path, rows(30), ["new text,Auto", "other text,Cooking"])
    with pytest.raises(MahaError, match=r"my_test\.csv, row 3: label 'Cooking'"):
        load_splits(DataConfig(str(d)))


def test_empty_after_cleaning(tmp_path: Path) -> None:
    d = folder(tmp_path, ["  ,Auto", "text,label", ",Tech"], ["x,Auto"])
    with pytest.raises(MahaError, match=r"my_train\.csv: no usable rows"):
        load_splits(DataConfig(str(d)))
    d2 = tmp_path / "d2"
    write(d2 / "train.csv", rows(10))
    write(d2 / "test.csv", [" ,Auto"])
    with pytest.raises(MahaError, match=r"test\.csv: no usable rows"):
        load_splits(DataConfig(str(d2)))


def test_huge_text_rejected_with_row(tmp_path: Path) -> None:
    p = write(tmp_path / "big.csv", ["ok,Auto", "x" * (MAX_TEXT_CHARS + 1) + ",Auto"])
    with pytest.raises(MahaError, match=r"big\.csv, row 3: text of 1000001"):
        read_labeled_csv(p, "text", "label")


def test_short_row_and_empty_file(tmp_path: Path) -> None:
    p = write(tmp_path / "short.csv", ["ok,Auto", "lonely"])
    with pytest.raises(MahaError, match=r"short\.csv, row 3"):
        read_labeled_csv(p, "text", "label")
    e = tmp_path / "empty.csv"
    e.write_text("")
    with pytest.raises(MahaError, match=r"empty\.csv"):
        read_labeled_csv(e, "text", "label")


def test_folder_without_test_file(tmp_path: Path) -> None:
    write(tmp_path / "ds" / "train.csv", rows(5))
    with pytest.raises(MahaError, match="test CSV"):
        resolve_files(str(tmp_path / "ds"))
    with pytest.raises(MahaError, match="unknown dataset 'nosuch'"):
        resolve_files("nosuch")


# ------------------------------------------------------------------ cleaning and splitting


def test_cleaning_counts(tmp_path: Path) -> None:
    moj = "मराठी बातमी".encode().decode("cp866")
    train = rows(30) + [
        "text,label",  # repeated header
        "   ,Auto",  # empty text
        "t  वाक्य 0,Auto",  # duplicate of row 0 after whitespace normalisation
        "both,Auto",
        "both,Tech",  # conflicting: both copies dropped
        "in test too,Sports",  # overlaps with test
        f"{moj},Tech",  # mojibake: counted, kept
        "Не вірте фейкам,Tech",  # genuine Cyrillic: not mojibake
    ]
    test = ["in test too,Sports", "in test too,Sports", "fresh,Auto"]
    d = folder(tmp_path, train, test)
    s = load_splits(DataConfig(str(d), dev_fraction=0.2))
    c = s.cleaning["train_source"]
    assert (c["header_rows_dropped"], c["empty_dropped"], c["duplicates_dropped"], c["conflicting_dropped"],
            c["overlap_with_test_dropped"], c["mojibake_rows"],
            ) == (1, 1, 1, 2, 1, 1)
    assert c["final_rows"] == 32 == len(s.train) + len(s.dev)
    assert moj in s.train.texts + s.dev.texts
    assert len(s.test) == 3 and s.cleaning["test"]["duplicate_rows_in_file"] == 1
    assert len(load_splits(DataConfig(str(d), dedup_test=True)).test) == 2
    assert s.labels == ["Auto", "Sports", "Tech"]
    summ = s.summary()
    assert set(summ) == {"dataset", "labels", "splits", "cleaning"} and summ["dataset"] == "ds"
    assert sum(summ["splits"]["dev"]["labels"].values()) == len(s.dev)


def test_dev_split_stratified_seeded_rare_class_kept(tmp_path: Path) -> None:
    d = folder(tmp_path, rows(60) + ["only one,Zeta"], ["x,Auto"])
    a = load_splits(DataConfig(str(d), dev_fraction=0.2, seed=1))
    b = load_splits(DataConfig(str(d), dev_fraction=0.2, seed=1))
    assert a.dev.texts == b.dev.texts and len(a.dev) == 12
    assert sorted(a.dev.labels).count(0) == 4  # 20 Auto rows -> 4 in dev
    assert "only one" in a.train.texts
    small = load_splits(DataConfig(str(d), max_train_rows=9))
    assert len(small.train) == 9 and set(small.train.labels) >= {0, 1, 2}
    assert small.dev.texts == load_splits(DataConfig(str(d))).dev.texts
    with pytest.raises(MahaError, match="dev_fraction"):
        load_splits(DataConfig(str(d), dev_fraction=1.0))
    with pytest.raises(
            MahaError, match=r"max_train_rows 500 is more than the 55 training rows left after cleaning "
            r"and the dev split"):
        load_splits(DataConfig(str(d), max_train_rows=500))


def test_mahasent_is_named_and_uses_its_validation_file_as_dev() -> None:
    s = load_splits(DataConfig("mahasent-mr", max_train_rows=300))
    assert s.labels == ["-1", "0", "1"] and len(s.train) == 300 and len(s.dev) == 1500 and len(s.test) == 1500
    assert "MahaSent_MR_Val.csv" in s.cleaning["dev_source"]


def test_folder_custom_columns_bom_case(tmp_path: Path) -> None:
    d = tmp_path / "custom"
    write(d / "Dev.csv", [f"x,{r}" for r in rows(12)], header="id,Sentence,Category")
    (d / "Eval_TEST.csv").write_bytes("\ufeffid,Sentence,Category\n1,नवीन,Auto\n".encode())
    s = load_splits(DataConfig(str(d), text_col="sentence", label_col="CATEGORY", dev_fraction=0.0))
    assert len(s.train) == 12 and s.test.texts == ["नवीन"] and s.name == "custom"
    # a name not in the table, found under --data-dir
    s2 = load_splits(DataConfig("custom", data_dir=str(tmp_path), text_col="Sentence", label_col="Category"))
    assert len(s2.test) == 1


# ------------------------------------------------------------------ lookup order and download


def named_files(root: Path, marker: str) -> Path:
    write(root / "mahanews-shc" / "SHC_Valid.csv", rows(12, marker), header="Text,Label")
    write(root / "mahanews-shc" / "SHC_Test.csv", ["new,Auto"], header="Text,Label")
    return root


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = named_files(tmp_path / "env", "env")
    explicit = named_files(tmp_path / "explicit", "explicit")
    monkeypatch.setenv("MAHACOMPRESS_DATA", str(env))
    assert resolve_files("mahanews-shc")["train"].parent.parent == env
    got = resolve_files("mahanews-shc", str(explicit))  # a folder holding subfolders
    assert got["train"].parent.parent == explicit
    got = resolve_files("mahanews-shc", str(explicit / "mahanews-shc"))  # the dataset folder
    assert got["test"].name == "SHC_Test.csv"
    # Train preferred over Valid when present
    write(explicit / "mahanews-shc" / "SHC_Train.csv", rows(12), header="Text,Label")
    assert resolve_files("mahanews-shc", str(explicit))["train"].name == "SHC_Train.csv"
    # An explicit folder without the files fails; it does not fall through or download.
    with pytest.raises(MahaError, match="SHC_Test.csv"):
        resolve_files("mahanews-shc", str(tmp_path / "empty"))


def test_download_only_when_nothing_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "search_roots", lambda: [tmp_path / "nothing"])
    fetched: list[str] = []

    def fake(url: str, dest: Path) -> None:
        fetched.append(url)
        if "SHC_Train" in url:
            raise OSError("404")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text("Text,Label\n" + "\n".join(rows(12)) + "\n", encoding="utf-8")

    monkeypatch.setattr(sources, "download", fake)
    got = resolve_files("mahanews-shc")
    assert got["train"].name == "SHC_Valid.csv" and (tmp_path / "home" / ".cache") in got["train"].parents
    assert [u.rsplit("/", 1)[1] for u in fetched] == ["SHC_Test.csv", "SHC_Train.csv", "SHC_Valid.csv"]
    assert all(u.startswith("https://raw.githubusercontent.com/l3cube-pune/MarathiNLP/") for u in fetched)
    fetched.clear()
    resolve_files("mahanews-shc")  # cached now: no second download
    assert fetched == []
    # with local files present (env var, real search order), no download at all
    monkeypatch.setattr(sources, "search_roots", real_roots)
    monkeypatch.setenv("HOME", str(tmp_path / "fresh_home"))
    monkeypatch.setenv("MAHACOMPRESS_DATA", str(named_files(tmp_path / "local", "l")))
    assert resolve_files("mahanews-shc")["train"].parents[1] == tmp_path / "local"
    assert fetched == []


def test_real_downloader_is_atomic(tmp_path: Path) -> None:
    src = write(tmp_path / "src.csv", rows(2))
    dest = tmp_path / "cache" / "out.csv"
    real_download(src.as_uri(), dest)  # file:// URL: exercises urllib without the network
    assert dest.read_text(encoding="utf-8") == src.read_text(encoding="utf-8")
    with pytest.raises(OSError):
        real_download((tmp_path / "missing.csv").as_uri(), tmp_path / "cache" / "x.csv")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["out.csv"]  # no half file


def test_download_failure_names_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "search_roots", lambda: [])

    def down(url: str, dest: Path) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(sources, "download", down)
    with pytest.raises(MahaError, match=r"Marathi_LPC_Test\.csv.*--data-dir"):
        resolve_files("mahanews-lpc")
    with pytest.raises(MahaError, match="--data-dir"):
        resolve_files("mahanews-ldc")


# Properly quoted fields holding line breaks and quotes (written "" by the csv module): a valid public file.
QUOTED_MULTILINE = [('पुण्यात पाऊस.\nवाहतूक "ठप्प" झाली, लोक अडकले', "Weather"), ("सामना रंगला", "Sports"),
                    ('कर्णधार म्हणाला, "आम्ही जिंकू"\nदुसरी ओळ\nतिसरी ओळ, शेवटची', "Sports"),
                    ('नवीन "स्मार्ट" फोन', "Tech"), ('पाऊस थांबला\n"हवामान" खात्याचा अंदाज', "Weather"),
                    ("नवे अ‍ॅप बाजारात", "Tech"), ]


def test_quoted_fields_with_line_breaks_and_quotes_are_read_as_the_csv_module_reads_them(tmp_path):
    import csv

    path = tmp_path / "news_train.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(QUOTED_MULTILINE)
    assert '""' in path.read_text(encoding="utf-8")
    texts, labels, stats = read_labeled_csv(path, "text", "label")
    assert list(zip(texts, labels)) == QUOTED_MULTILINE and stats["rows_read"] == len(QUOTED_MULTILINE)


def test_records_merged_by_a_quote_are_still_refused(tmp_path):
    lines = ["text,label", '"आज पाऊस,Weather', "सामना रंगला,Sports", 'नवीन "फोन" बाजारात,Tech', "उद्या ऊन,Weather"]
    path = tmp_path / "merged.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(MahaError, match=r"merged.csv, row 2: a text spans several lines"):
        read_labeled_csv(path, "text", "label")
    open_at_end = tmp_path / "open.csv"  # an unlabelled file: the last quote is never closed
    open_at_end.write_text('text\nपहिली बातमी\n"दुसरी बातमी\nतिसरी बातमी\n', encoding="utf-8")
    with pytest.raises(MahaError, match=r"open.csv, row 3: a text spans several lines"):
        read_text_column(open_at_end, "text")


def test_a_quote_that_swallows_the_file_is_named_as_a_merge_not_as_a_long_text_or_a_short_record(tmp_path):
    rows = [f"बातमी क्रमांक {i} {'शब्द ' * 40},{('Auto', 'Tech')[i % 2]}" for i in range(5000)]
    path = tmp_path / "long.csv"
    path.write_text('text,label\n"' + "\n".join(rows[:-1] + ['शेवटची "बातमी,Auto']) + "\n", encoding="utf-8")
    assert len(path.read_text(encoding="utf-8")) > MAX_TEXT_CHARS  # one record over the limit: merged, not long
    with pytest.raises(MahaError, match=r"long.csv, row 2: a text spans several lines"):
        read_labeled_csv(path, "text", "label")
    path.write_text('text,label\n"' + "\n".join(rows[:50]) + "\n", encoding="utf-8")  # never closed: 1 field
    with pytest.raises(MahaError, match=r"long.csv, row 2: a text spans several lines"):
        read_labeled_csv(path, "text", "label")


# ------------------------------------------------------------------ near-miss labels

EMOTIONS = ["Sadness"] * 6 + ["Joy"] * 6 + ["Anger"] * 6 + ["SADNESS"] * 2  # the training file's own spellings


def emotion_folder(tmp_path: Path, dev_labels: tuple[str, ...] = ("Joy", "sadness", "Anger")) -> Path:
    """Training, validation and test files of an emotion set whose validation file spells a label differently
    (a public emotion dataset has `sadness` in validation, `Sadness` in training)."""
    d = tmp_path / "emotion"
    write(d / "emo_train.csv", [f"वाक्य {i},{lab}" for i, lab in enumerate(EMOTIONS)])
    write(d / "emo_valid.csv", [f"नवीन {i},{lab}" for i, lab in enumerate(dev_labels)])
    write(d / "emo_test.csv", ["चाचणी 1,Sadness", "चाचणी 2,Joy"])
    return d


def test_a_label_differing_only_in_case_names_the_training_spelling_and_both_fixes(tmp_path: Path) -> None:
    d = emotion_folder(tmp_path)
    with pytest.raises(MahaError) as info:
        load_splits(DataConfig(str(d)))
    message = str(info.value)
    assert message.startswith(f"{d / 'emo_valid.csv'}, row 3: label 'sadness' is not a training label")
    # of the two training spellings, the one most rows use (the one --fold-label-case keeps)
    assert "did you mean 'Sadness'? pass --fold-label-case, or --label-map FILE with the row sadness,Sadness" in message
    assert "\n" not in message


def test_a_misspelt_label_names_its_close_match_and_a_foreign_one_none(tmp_path: Path) -> None:
    with pytest.raises(
            MahaError, match=r"row 2: label 'Sadnes' .*did you mean 'Sadness'\? pass --label-map FILE "
            r"with the row Sadnes,Sadness$"):
        load_splits(DataConfig(str(emotion_folder(tmp_path / "a", ("Sadnes", ))), fold_label_case=True))
    with pytest.raises(MahaError) as info:
        load_splits(DataConfig(str(emotion_folder(tmp_path / "b", ("Cooking", )))))
    assert "label 'Cooking'" in str(info.value) and "did you mean" not in str(info.value)
    assert "--label-map FILE" in str(info.value)


def test_fold_label_case_makes_variants_one_label_spelled_as_most_training_rows_spell_it(tmp_path: Path) -> None:
    s = load_splits(DataConfig(str(emotion_folder(tmp_path)), fold_label_case=True))
    assert s.labels == ["Anger", "Joy", "Sadness"]
    assert [s.labels[y] for y in s.dev.labels] == ["Joy", "Sadness", "Anger"]
    assert s.summary()["splits"]["train"]["labels"]["Sadness"] == 8  # the two SADNESS rows joined it
    assert s.cleaning["labels_renamed"] == [{"from": "SADNESS", "to": "Sadness", "rows": 2},
                                            {"from": "sadness", "to": "Sadness", "rows": 1}, ]


@pytest.mark.parametrize("header", ["from,to\n", ""])
def test_a_label_map_renames_every_split_with_or_without_its_header(tmp_path: Path, header: str) -> None:
    mapping = tmp_path / "labels.csv"
    mapping.write_text(f"{header}sadness,Sadness\n\nSADNESS , Sadness\n", encoding="utf-8")
    s = load_splits(DataConfig(str(emotion_folder(tmp_path)), label_map=str(mapping)))
    assert s.labels == ["Anger", "Joy", "Sadness"]
    assert [s.labels[y] for y in s.dev.labels] == ["Joy", "Sadness", "Anger"]
    assert s.cleaning["label_map"] == str(mapping)
    # renames are applied once, never chained: Joy -> Sadness -> Anger would merge three classes into one
    mapping.write_text("Joy,Sadness\nSadness,Anger\nsadness,Anger\nSADNESS,Anger\n", encoding="utf-8")
    s = load_splits(DataConfig(str(emotion_folder(tmp_path)), label_map=str(mapping)))
    assert s.labels == ["Anger", "Sadness"]


@pytest.mark.parametrize("content, expect", [
    (None, "label map not found"),
    ("from,to\nsadness,Sadness,extra\n", "row 2: 3 column(s); a label map has two per row: from,to"),
    ("sadness\n", "row 1: 1 column(s)"),
    ("from,to\nsadness,Sadness\nsadness,Joy\n", "row 3: label 'sadness' is mapped again (first at row 2)"),
    ("from,to\nsadness,\n", "row 2: an empty label"), ("from,to\n", "no mappings")
])
def test_a_bad_label_map_is_one_line_naming_the_file_and_row(tmp_path: Path, content: str | None, expect: str) -> None:
    mapping = tmp_path / "labels.csv"
    if content is not None:
        mapping.write_text(content, encoding="utf-8")
    with pytest.raises(MahaError) as info:
        load_splits(DataConfig(str(emotion_folder(tmp_path)), label_map=str(mapping)))
    assert str(info.value).startswith(str(mapping)) and expect in str(info.value) and "\n" not in str(info.value)


def test_a_label_map_may_only_rename_to_labels_the_model_has(tmp_path: Path) -> None:
    mapping = tmp_path / "labels.csv"
    mapping.write_text("sadness,Sadness\nrage,Fury\n", encoding="utf-8")
    with pytest.raises(
            MahaError, match=r"labels\.csv: maps to 'Fury', which the model m does not have "
            r"\(its labels: Anger, Joy, Sadness\)"):
        check_label_map_targets(mapping, ["Anger", "Joy", "Sadness"], "m")
    check_label_map_targets(mapping, ["Anger", "Fury", "Joy", "Sadness"], "m")


def test_label_settings_are_recorded_and_reapplied_when_a_model_record_rebuilds_the_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """training.json keeps the label map (made absolute) and the folding, so trim and export rebuild the very
    training split: without them the same data stops at the near-miss label."""
    import json

    from mahacompress.models.trim import training_corpus
    from mahacompress.train.checkpoints import data_record

    d = emotion_folder(tmp_path)
    (tmp_path / "labels.csv").write_text("sadness,Sadness\nSADNESS,Sadness\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for name, cfg in (("mapped", DataConfig(str(d), label_map="labels.csv")),
                      ("folded", DataConfig(str(d), fold_label_case=True)), ("neither", DataConfig(str(d))),
                      ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "training.json").write_text(json.dumps({"data_config": data_record(cfg)}), encoding="utf-8")
    record = json.loads((tmp_path / "mapped" / "training.json").read_text(encoding="utf-8"))["data_config"]
    assert record["label_map"] == str(tmp_path / "labels.csv") and record["fold_label_case"] is False
    monkeypatch.chdir(tmp_path / "mapped")  # elsewhere: the relative labels.csv no longer names the file
    expected = load_splits(DataConfig(str(d), fold_label_case=True)).train.texts
    assert training_corpus(tmp_path / "mapped") == expected and training_corpus(tmp_path / "folded") == expected
    with pytest.raises(MahaError, match="did you mean 'Sadness'"):
        training_corpus(tmp_path / "neither")
