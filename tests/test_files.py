"""File safety (lmsbayes.files): atomic writes, temp files, permissions, output-path checks, text
reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lmsbayes.errors import InputError, OutputPathError
from lmsbayes.files import (
    TMP_PREFIX,
    Staging,
    atomic_write,
    atomic_write_text,
    check_output_path,
    read_text,
    remove_stale_temps,
)


def _temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(TMP_PREFIX))


def _dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


# --- atomic writes -------------------------------------------------------------------


def test_atomic_write_text_writes_and_leaves_no_temp(tmp_path):
    dest = tmp_path / "sub" / "table.json"
    dest.parent.mkdir()
    assert atomic_write_text(dest, "{}\n") == dest
    assert dest.read_text() == "{}\n"
    assert _temps(dest.parent) == []


def test_a_new_file_gets_the_umask_not_0600(tmp_path, umask_027):
    dest = tmp_path / "out.csv"
    atomic_write_text(dest, "a\n")
    assert dest.stat().st_mode & 0o777 == 0o640  # 0o666 & ~0o027


def test_a_replaced_file_keeps_its_mode(tmp_path):
    dest = tmp_path / "out.csv"
    dest.write_text("old\n")
    os.chmod(dest, 0o600)
    atomic_write_text(dest, "new\n")
    assert dest.read_text() == "new\n"
    assert dest.stat().st_mode & 0o777 == 0o600


def test_a_failed_writer_leaves_the_destination_and_no_temp(tmp_path):
    dest = tmp_path / "fit.nc"
    dest.write_text("the earlier fit\n")

    def writer(tmp: Path) -> None:
        tmp.write_text("half a fi")
        raise KeyboardInterrupt  # Ctrl-C in the middle of a save

    with pytest.raises(KeyboardInterrupt):
        atomic_write(dest, writer)
    assert dest.read_text() == "the earlier fit\n"
    assert _temps(tmp_path) == []


def test_staging_moves_all_files_or_none(tmp_path):
    (tmp_path / "a.txt").write_text("old a")
    with pytest.raises(RuntimeError):
        with Staging() as stage:
            stage.path(tmp_path / "a.txt").write_text("new a")
            stage.path(tmp_path / "b.txt").write_text("new b")
            raise RuntimeError("figure failed")
    assert (tmp_path / "a.txt").read_text() == "old a" and not (tmp_path / "b.txt").exists()
    assert _temps(tmp_path) == []
    with Staging() as stage:
        stage.path(tmp_path / "a.txt").write_text("new a")
        stage.path(tmp_path / "b.txt").write_text("new b")
    assert (tmp_path / "a.txt").read_text() == "new a" and (
        tmp_path / "b.txt"
    ).read_text() == "new b"


def test_temp_names_carry_the_package_prefix_and_the_destination(tmp_path):
    seen: list[Path] = []
    atomic_write(tmp_path / "fit.nc", lambda tmp: seen.append(tmp) or tmp.write_bytes(b"x"))
    assert seen[0].name.startswith(f"{TMP_PREFIX}fit.nc-{os.getpid()}-")
    assert (
        seen[0].parent == tmp_path
    )  # beside the destination: one filesystem, so the rename is atomic
    assert not seen[0].exists()


def test_stale_temps_of_the_destination_are_removed_and_nothing_else(tmp_path):
    dead, live = _dead_pid(), os.getpid()
    stale = tmp_path / f"{TMP_PREFIX}fit.nc-{dead}-0123abcd"
    keep = {
        f"{TMP_PREFIX}fit.nc-{live}-0123abcd",  # a concurrent writer (this process) is alive
        f"{TMP_PREFIX}other.nc-{dead}-0123abcd",  # another destination's temp
        f"{TMP_PREFIX}fit.nc-notes",  # not our pattern
        "fit.nc.tmp",  # the user's file
        "notes.txt",
    }
    for name in keep | {stale.name}:
        (tmp_path / name).write_text("x")
    (tmp_path / f"{TMP_PREFIX}fit.nc-{dead}-fedcba98").mkdir()  # a directory is never removed
    atomic_write_text(tmp_path / "fit.nc", "new")
    names = {p.name for p in tmp_path.iterdir()}
    assert stale.name not in names
    assert keep | {"fit.nc", f"{TMP_PREFIX}fit.nc-{dead}-fedcba98"} == names
    assert remove_stale_temps(tmp_path / "fit.nc") == []


def test_a_kill_9_during_a_save_leaves_the_old_file_and_the_next_write_cleans_up(tmp_path):
    dest = tmp_path / "fit.nc"
    dest.write_text("the earlier fit\n")
    script = textwrap.dedent(f"""
        import time
        from lmsbayes.files import atomic_write

        def slow(tmp):
            with open(tmp, "w") as fh:
                fh.write("half")
                fh.flush()
                time.sleep(60)

        atomic_write({str(dest)!r}, slow)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 60
        while not _temps(tmp_path) and time.time() < deadline:
            time.sleep(0.05)
        assert _temps(tmp_path), "the writer made no temp file"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert dest.read_text() == "the earlier fit\n"  # never half a file
    assert len(_temps(tmp_path)) == 1  # a killed process cannot clean up ...
    atomic_write_text(dest, "the new fit\n")
    assert _temps(tmp_path) == []  # ... the next write to the destination does
    assert dest.read_text() == "the new fit\n"


def test_a_special_file_is_written_directly(tmp_path):
    atomic_write_text(os.devnull, "discarded\n")  # no temp file in /dev
    assert not [n for n in os.listdir(os.path.dirname(os.devnull)) if n.startswith(TMP_PREFIX)]


@pytest.mark.parametrize("dangling", [False, True], ids=["link", "dangling-link"])
def test_a_symlink_destination_is_refused_and_never_written_through(tmp_path, dangling):
    target = tmp_path / "elsewhere" / "real.json" if dangling else tmp_path / "real.json"
    if not dangling:
        target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    with pytest.raises(OutputPathError, match="symbolic link") as info:
        check_output_path(link)
    assert str(link) in str(info.value)
    with pytest.raises(OutputPathError, match="symbolic link"):
        atomic_write_text(link, "new")
    assert link.is_symlink()
    assert _temps(tmp_path) == []
    if dangling:
        assert not (tmp_path / "elsewhere").exists()  # no directory created where it points
    else:
        assert target.read_text() == "old"


def test_a_link_swapped_in_after_the_check_is_replaced_not_written_through(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    dest = tmp_path / "out.json"
    with Staging() as stage:
        stage.path(dest).write_text("new")
        dest.symlink_to(target)  # an attacker's link, after the check
    assert not dest.is_symlink() and dest.read_text() == "new"
    assert target.read_text() == "old"


def test_the_stream_links_of_the_system_are_written(tmp_path):
    assert check_output_path("/dev/stdout") == Path("/dev/stdout")


def test_a_symlinked_directory_named_by_the_user_is_written_into(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "via").symlink_to(real)
    atomic_write_text(tmp_path / "via" / "x.json", "{}")  # a link on the way, not the destination
    assert (real / "x.json").read_text() == "{}"
    assert check_output_path(tmp_path / "via", kind="directory") == tmp_path / "via"


# --- output paths, checked before any work --------------------------------------------


def test_a_missing_parent_is_an_error_unless_asked_for(tmp_path):
    path = tmp_path / "a" / "b" / "fit.nc"
    with pytest.raises(OutputPathError, match="does not exist .*--mkdir") as info:
        check_output_path(path)
    assert str(path.parent) in str(info.value)
    assert not (tmp_path / "a").exists()
    with pytest.raises(FileNotFoundError):  # the writer does not create it either
        atomic_write_text(path, "x")
    assert not (tmp_path / "a").exists()
    assert check_output_path(path, mkdir=True) == path
    assert (tmp_path / "a" / "b").is_dir() and not path.exists()


def test_a_report_directory_needs_its_parent(tmp_path):
    assert check_output_path(tmp_path / "report", kind="directory") == tmp_path / "report"
    with pytest.raises(OutputPathError, match="does not exist"):
        check_output_path(tmp_path / "a" / "report", kind="directory")


@pytest.mark.parametrize(
    "make, kind, needle",
    [
        (lambda d: d / "file.txt" / "fit.nc", "file", "is a file, not a directory"),
        (lambda d: d / "file.txt" / "deeper" / "fit.nc", "file", "is a file, not a directory"),
        (lambda d: d, "file", "it is a directory"),
        (lambda d: d / "file.txt", "directory", "exists and is not a directory"),
        (lambda d: d / "file.txt" / "report", "directory", "is a file, not a directory"),
    ],
    ids=[
        "under-a-file",
        "deep-under-a-file",
        "dir-for-a-file",
        "file-for-a-dir",
        "dir-under-a-file",
    ],
)
def test_unwritable_output_paths(tmp_path, make, kind, needle):
    (tmp_path / "file.txt").write_text("the user's file")
    path = make(tmp_path)
    with pytest.raises(OutputPathError, match=needle) as info:
        check_output_path(path, kind=kind, what="fit file")
    assert str(path) in str(info.value)
    assert (tmp_path / "file.txt").read_text() == "the user's file"


@pytest.mark.parametrize("path, needle", [("", "empty"), ("a\0b.nc", "NUL")])
def test_malformed_output_paths(path, needle):
    with pytest.raises(OutputPathError, match=needle):
        check_output_path(path)


def test_a_read_only_directory_or_file(tmp_path, monkeypatch):
    # root may write anywhere, so the permission answer is simulated
    (tmp_path / "fit.nc").write_text("x")
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(OutputPathError, match="is not writable"):
        check_output_path(tmp_path / "new.nc")
    with pytest.raises(OutputPathError, match="read-only"):
        check_output_path(tmp_path / "fit.nc")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only directory")
def test_a_read_only_directory_for_real(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputPathError, match="not writable"):
            check_output_path(ro / "fit.nc")
    finally:
        ro.chmod(0o700)


# --- reading text -------------------------------------------------------------------


def test_read_text_names_the_file_on_a_utf8_error(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_bytes(b'name = "ok"\nseed = "\xff"\n')
    with pytest.raises(InputError) as info:
        read_text(path, what="spec")
    msg = str(info.value)
    assert str(path) in msg and "not valid UTF-8" in msg and "line 2" in msg


def test_read_text_bounds_the_size(tmp_path):
    path = tmp_path / "big.toml"
    path.write_text("x" * 2000)
    with pytest.raises(InputError, match="2,000 bytes, more than the 1,000"):
        read_text(path, max_bytes=1000)


def test_read_text_refuses_nul_bytes_and_directories(tmp_path):
    path = tmp_path / "bin.toml"
    path.write_bytes(b"a = 1\n\0\0")
    with pytest.raises(InputError, match="NUL byte"):
        read_text(path)
    with pytest.raises(InputError, match="is a directory"):
        read_text(tmp_path)


def test_read_text_missing_file_and_bom(tmp_path):
    with pytest.raises(FileNotFoundError, match="no spec file"):
        read_text(tmp_path / "nope.toml", what="spec")
    path = tmp_path / "bom.toml"
    path.write_bytes("\ufeffa = 1\n".encode())
    assert read_text(path) == "a = 1\n"


def test_read_text_uses_the_callers_error_class(tmp_path):
    from lmsbayes.errors import PriorFileError

    path = tmp_path / "prior.json"
    path.write_bytes(b"\xfe{}")
    with pytest.raises(PriorFileError, match=f"^{path}: the prior is not valid UTF-8"):
        read_text(path, what="prior", error=lambda p, reason: PriorFileError(f"{p}: {reason}"))
