"""MkDocs hook: publish the committed reports in the documentation site.

Every `reports/**/*.md` and `reports/**/*.png` of the repository (not the ONNX/OpenVINO `cache/` folders)
becomes a file of the site under `reports/`, read from where it is committed, never copied into docs/.
Pages link to them (`../reports/cpu-quick/report.md`), the reports' own relative image links resolve,
and `mkdocs build --strict` fails on a link to a report that is not there. A report not listed in
mkdocs.yml's nav is still published (a new report does not fail the build); add it to the nav to show it.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files, InclusionLevel

KINDS = {".md", ".png"}


def on_files(files: Files, config) -> Files:
    reports = Path(config["config_file_path"]).resolve().parent / "reports"
    for path in sorted(reports.rglob("*")):
        rel = path.relative_to(reports)
        if path.is_file() and path.suffix.lower() in KINDS and "cache" not in rel.parts[:-1]:
            files.append(
                File.generated(config, f"reports/{rel.as_posix()}", abs_src_path=str(path),
                               inclusion=InclusionLevel.NOT_IN_NAV))
    return files
