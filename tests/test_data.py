"""Tests of the data layer: real shared data (when present) and tiny CSVs written per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from mahacompress import data
from mahacompress.config import DataConfig
from mahacompress.data import load_splits, normalize, read_labeled_csv, resolve_files
from mahacompress.errors import MahaError

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "mahanews-shc").is_dir(),
                                  reason=f"shared data not present at {SHARED}")

LABELS = ["Auto", "Sports", "Tech"]
real_download = data._download
real_roots = data.search_roots


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may reach the network or the real user cache or a user's MAHACOMPRESS_DATA."""
    def refuse(url: str, dest: Path) -> None:
        raise AssertionError(f"network used: {url}")

    monkeypatch.setattr(data, "_download", refuse)
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
    p.write_bytes("text,label\nचांगले,Auto\n\"two\nlines\",Tech\n".encode() + b"caf\xe9,Auto\n")
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
    p = write(tmp_path / "big.csv", ["ok,Auto", "x" * (data.MAX_TEXT_CHARS + 1) + ",Auto"])
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
        "text,label",                      # repeated header
        "   ,Auto",                        # empty text
        "t  वाक्य 0,Auto",                 # duplicate of row 0 after whitespace normalisation
        "both,Auto", "both,Tech",          # conflicting: both copies dropped
        "in test too,Sports",              # overlaps with test
        f"{moj},Tech",                     # mojibake: counted, kept
        "Не вірте фейкам,Tech",            # genuine Cyrillic: not mojibake
    ]
    test = ["in test too,Sports", "in test too,Sports", "fresh,Auto"]
    d = folder(tmp_path, train, test)
    s = load_splits(DataConfig(str(d), dev_fraction=0.2))
    c = s.cleaning["train_source"]
    assert (c["header_rows_dropped"], c["empty_dropped"], c["duplicates_dropped"],
            c["conflicting_dropped"], c["overlap_with_test_dropped"], c["mojibake_rows"]) == (1, 1, 1, 2, 1, 1)
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
    with pytest.raises(MahaError, match=r"max_train_rows 500 is more than the 55 training rows left after cleaning "
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
    monkeypatch.setattr(data, "search_roots", lambda: [tmp_path / "nothing"])
    fetched: list[str] = []

    def fake(url: str, dest: Path) -> None:
        fetched.append(url)
        if "SHC_Train" in url:
            raise OSError("404")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text("Text,Label\n" + "\n".join(rows(12)) + "\n", encoding="utf-8")

    monkeypatch.setattr(data, "_download", fake)
    got = resolve_files("mahanews-shc")
    assert got["train"].name == "SHC_Valid.csv" and (tmp_path / "home" / ".cache") in got["train"].parents
    assert [u.rsplit("/", 1)[1] for u in fetched] == ["SHC_Test.csv", "SHC_Train.csv", "SHC_Valid.csv"]
    assert all(u.startswith("https://raw.githubusercontent.com/l3cube-pune/MarathiNLP/") for u in fetched)
    fetched.clear()
    resolve_files("mahanews-shc")  # cached now: no second download
    assert fetched == []
    # with local files present (env var, real search order), no download at all
    monkeypatch.setattr(data, "search_roots", real_roots)
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
    monkeypatch.setattr(data, "search_roots", lambda: [])

    def down(url: str, dest: Path) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(data, "_download", down)
    with pytest.raises(MahaError, match=r"Marathi_LPC_Test\.csv.*--data-dir"):
        resolve_files("mahanews-lpc")
    with pytest.raises(MahaError, match="--data-dir"):
        resolve_files("mahanews-ldc")


# Properly quoted fields holding line breaks and quotes (written "" by the csv module): a valid public file.
QUOTED_MULTILINE = [
    ("पुण्यात पाऊस.\nवाहतूक \"ठप्प\" झाली, लोक अडकले", "Weather"),
    ("सामना रंगला", "Sports"),
    ("कर्णधार म्हणाला, \"आम्ही जिंकू\"\nदुसरी ओळ\nतिसरी ओळ, शेवटची", "Sports"),
    ("नवीन \"स्मार्ट\" फोन", "Tech"),
    ("पाऊस थांबला\n\"हवामान\" खात्याचा अंदाज", "Weather"),
    ("नवे अ‍ॅप बाजारात", "Tech"),
]


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
        data.read_text_column(open_at_end, "text")


def test_a_quote_that_swallows_the_file_is_named_as_a_merge_not_as_a_long_text_or_a_short_record(tmp_path):
    rows = [f"बातमी क्रमांक {i} {'शब्द ' * 40},{('Auto', 'Tech')[i % 2]}" for i in range(5000)]
    path = tmp_path / "long.csv"
    path.write_text("text,label\n\"" + "\n".join(rows[:-1] + ['शेवटची "बातमी,Auto']) + "\n", encoding="utf-8")
    assert len(path.read_text(encoding="utf-8")) > data.MAX_TEXT_CHARS  # one record over the limit: merged, not long
    with pytest.raises(MahaError, match=r"long.csv, row 2: a text spans several lines"):
        read_labeled_csv(path, "text", "label")
    path.write_text("text,label\n\"" + "\n".join(rows[:50]) + "\n", encoding="utf-8")  # never closed: 1 field
    with pytest.raises(MahaError, match=r"long.csv, row 2: a text spans several lines"):
        read_labeled_csv(path, "text", "label")
