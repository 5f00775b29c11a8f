"""The HTML report (lmsbayes.report): its files, and a directory that is written into, never
replaced."""

from __future__ import annotations

import hashlib
import json
import os

import pandas as pd
import pytest

from lmsbayes.errors import OutputPathError
from lmsbayes.files import TMP_PREFIX
from lmsbayes.report import MANIFEST, write_report

#: What a report of the default fit (landmarks 3 and 6 months) holds
REPORT_FILES = {
    "thresholds.csv",
    "diagnostics.csv",
    "exclusions.csv",
    "index.html",
    "forest_3m.png",
    "forest_6m.png",
    "predictive_3m.png",
    "predictive_6m.png",
    "effects.png",
    "ppc.png",
    "prior_2L_6m.png",
    "oc_2L_6m.png",
    "design_2L_6m_boundaries.csv",
}


@pytest.fixture(scope="module")
def report_dir(default_fit, tmp_path_factory):
    """A directory that already holds the user's files, with the report written into it."""
    out = tmp_path_factory.mktemp("report")
    (out / "notes.txt").write_text("the user's notes")
    (out / "data").mkdir()
    (out / "data" / "x.csv").write_text("a,b\n1,2\n")
    (out / "index.html").write_text("an older page")  # an earlier report's file: replaced
    digest = hashlib.sha256(b"an older page").hexdigest()
    (out / MANIFEST).write_text(json.dumps({"files": {"index.html": digest}}))
    write_report(default_fit, out)
    return out


def test_report_writes_files_and_self_contained_html(report_dir, default_fit):
    names = {p.name for p in report_dir.iterdir()}
    assert REPORT_FILES <= names
    text = (report_dir / "index.html").read_text()
    pngs = [n for n in names if n.endswith(".png")]
    assert text.count("<img") == len(pngs)
    assert text.count("src='data:image/png;base64,") == len(pngs)
    assert "<table" in text and "thresholds" in text.lower()
    table = pd.read_csv(report_dir / "thresholds.csv")
    assert {"setting", "landmark", "p0", "p1", "eortc_p0"} <= set(table.columns)
    assert len(pd.read_csv(report_dir / "exclusions.csv")) == len(default_fit.data.excluded)


def test_an_existing_directory_keeps_everything_else(report_dir):
    assert (report_dir / "notes.txt").read_text() == "the user's notes"
    assert (report_dir / "data" / "x.csv").read_text() == "a,b\n1,2\n"
    names = {p.name for p in report_dir.iterdir()}
    assert names == REPORT_FILES | {"notes.txt", "data", MANIFEST}
    assert not [n for n in names if n.startswith(TMP_PREFIX)]


def test_the_manifest_lists_what_the_report_wrote(report_dir):
    manifest = json.loads((report_dir / MANIFEST).read_text())
    assert set(manifest["files"]) == REPORT_FILES
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((report_dir / name).read_bytes()).hexdigest() == digest


def test_report_files_get_normal_permissions(report_dir):
    umask = os.umask(0)
    os.umask(umask)
    assert (report_dir / "index.html").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.slow
def test_a_second_report_retires_only_unchanged_files_of_the_first(default_fit, tmp_path):
    out = tmp_path / "report"
    write_report(default_fit, out)
    # an earlier report (of a fit with a 12-month landmark) wrote two files this one does not
    old_fig, edited = out / "forest_12m.png", out / "predictive_12m.png"
    old_fig.write_bytes(b"png of the earlier report")
    edited.write_bytes(b"png of the earlier report")
    manifest = json.loads((out / MANIFEST).read_text())
    for path in (old_fig, edited):
        manifest["files"][path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest["files"]["../outside.txt"] = "0" * 64  # a tampered manifest cannot reach outside
    (tmp_path / "outside.txt").write_text("keep")
    (out / MANIFEST).write_text(json.dumps(manifest))
    edited.write_bytes(b"the user edited this one")
    write_report(default_fit, out)
    assert not old_fig.exists()  # lmsbayes wrote it and it is unchanged: retired
    assert edited.read_bytes() == b"the user edited this one"  # changed since: kept
    assert (tmp_path / "outside.txt").read_text() == "keep"


@pytest.mark.slow
def test_an_interrupted_report_leaves_the_directory_as_it_was(default_fit, tmp_path, monkeypatch):
    import lmsbayes.report as report

    out = tmp_path / "report"
    out.mkdir()
    (out / "index.html").write_text("the earlier page")

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "plot_ppc", broken)
    with pytest.raises(KeyboardInterrupt):
        write_report(default_fit, out, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["index.html"]
    assert (out / "index.html").read_text() == "the earlier page"


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_an_unwritable_report_directory_fails_before_any_work(where, tmp_path, monkeypatch):
    import lmsbayes.report as report

    (tmp_path / "f").write_text("the user's file")
    out = tmp_path / "f" if where == "file" else tmp_path / "f" / "report"
    monkeypatch.setattr(report, "plot_forest", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(OutputPathError, match="cannot write report directory") as info:
        write_report(None, out)  # the check comes before the fit is looked at
    assert str(out) in str(info.value)
    assert (tmp_path / "f").read_text() == "the user's file"
