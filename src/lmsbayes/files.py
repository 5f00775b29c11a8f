"""File safety: every file lmsbayes writes or reads as text goes through here.

Guarantees (see the README, "Errors and guarantees"):

- **Atomic.** A file is written to a temporary file beside its destination
  and moved into place with :func:`os.replace`, so a reader, a crash or a
  ``kill -9`` never sees half a file: the destination holds the old content
  or the new one.
- **Recognisable temp files.** A temp file is named
  ``.lmsbayes-tmp-<destination name>-<pid>-<random>``. It is removed on every
  exit path the process survives (exceptions, Ctrl-C, ``SIGTERM`` under the
  command line). A temp left by a killed run is removed by the next write to
  the same destination, once the process that made it is gone; nothing else is
  ever removed.
- **Normal permissions.** A new file gets the user's umask (``0o666 &
  ~umask``), not the ``0o600`` of :func:`tempfile.mkstemp`; a replaced file
  keeps its mode.
- **No write through a link.** A destination is examined with
  :func:`os.lstat` and never resolved. A destination that is a symbolic link
  (dangling or not) is refused at the door with an
  :class:`~lmsbayes.errors.OutputPathError`: lmsbayes never writes through a
  link, so a link planted where an output goes cannot redirect the write to
  another file (``/etc/passwd`` when run as root). The only links accepted
  are the operating system's own names of a stream: ``/dev/stdout``,
  ``/dev/stderr`` and ``/dev/fd/N``, whose targets are written directly. A
  temp is created with ``O_EXCL | O_NOFOLLOW`` beside the destination and
  moved onto it with :func:`os.replace`, which replaces a name, never the
  file a link points to.
- **No directory created unasked.** A missing parent directory is an error
  (naming it) unless the caller asks for it with ``mkdir=True`` (the command
  line's ``--mkdir``); only then are the missing directories created, at the
  check, before the work.
- **Checked before work.** :func:`check_output_path` tells, before a fit
  runs, whether a path can be written (a link, a missing parent, a path
  under a regular file, a directory where a file is expected, no write
  permission) and raises :class:`~lmsbayes.errors.OutputPathError` naming it.
- **Temps registered before they exist.** A temp's name is recorded for
  removal before the file is created, so a signal arriving between the two
  cannot orphan it.
- **Bounded, named reads.** :func:`read_text` refuses a file larger than its
  bound and names the file in a UTF-8 decoding error.

Example
-------
>>> from lmsbayes.files import atomic_write_text, check_output_path, read_text
>>> check_output_path("out/table.json")          # before the work
>>> atomic_write_text("out/table.json", "{}\\n")   # after it
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from lmsbayes.errors import InputError, OutputPathError

__all__ = [
    "TMP_PREFIX",
    "MAX_TEXT_BYTES",
    "Staging",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_path",
    "read_text",
    "remove_stale_temps",
    "temp_name",
]

#: Prefix of every temporary file lmsbayes creates (beside the destination).
TMP_PREFIX = ".lmsbayes-tmp-"
#: Default bound of :func:`read_text` (specs, priors, tables are kilobytes).
MAX_TEXT_BYTES = 16 * 2**20
# a temp name must stay under NAME_MAX (255 bytes) whatever the destination's name
_NAME_KEEP = 120
_SPECIAL = (stat.S_ISCHR, stat.S_ISFIFO, stat.S_ISSOCK)


def _stem(dest: Path) -> str:
    return dest.name[:_NAME_KEEP]


def temp_name(dest: str | os.PathLike[str]) -> str:
    """A fresh temp-file name for ``dest``: ``.lmsbayes-tmp-<name>-<pid>-<random>``."""
    return f"{TMP_PREFIX}{_stem(Path(dest))}-{os.getpid()}-{secrets.token_hex(4)}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a live process of another user
    except (OverflowError, ValueError):
        return False  # a pid no kernel gives
    return True


def remove_stale_temps(dest: str | os.PathLike[str]) -> list[Path]:
    """Remove temp files of ``dest`` left by runs that were killed; return what was removed.

    Only regular files named ``.lmsbayes-tmp-<dest name>-<pid>-<8 hex digits>``
    in ``dest``'s directory, whose process ``pid`` no longer runs, are
    removed: a concurrent writer's temp and every other file are kept.
    """
    dest = Path(dest)
    pattern = re.compile(re.escape(TMP_PREFIX + _stem(dest)) + r"-(\d{1,10})-[0-9a-f]{8}")
    removed = []
    try:
        entries = list(os.scandir(dest.parent))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass  # someone else removed it, or we may not: it stays, nothing is lost
    return removed


def _fail(path: Path, what: str, reason: str) -> OutputPathError:
    return OutputPathError(f"cannot write {what} {str(path)!r}: {reason}")


#: Links the system itself provides for a process's streams: written straight through.
_STREAM_LINK = re.compile(r"/dev/(?:stdout|stderr|fd/[0-9]{1,6})|/proc/self/fd/[0-9]{1,6}")


def _is_stream_link(path: Path) -> bool:
    return bool(_STREAM_LINK.fullmatch(os.path.normpath(os.fspath(path.absolute()))))


def _lstat(path: Path) -> os.stat_result | None:
    """``os.lstat`` of the path itself (a link is not followed); None if it does not exist."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise  # handled by the caller: a component of the path is a file
    except OSError as exc:  # ENAMETOOLONG, ELOOP, EACCES on a parent ...
        raise OutputPathError(f"{path}: {exc.strerror}") from None


def _stat(path: Path) -> os.stat_result | None:
    """``os.stat`` of a directory on the way.

    Links followed: a user's path may pass through one.
    """
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise OutputPathError(f"{path}: {exc.strerror}") from None


def _link_refused(p: Path, what: str) -> OutputPathError:
    try:
        target = os.readlink(p)
    except OSError:
        target = "?"
    return _fail(
        p,
        what,
        f"it is a symbolic link (to {target!r}); lmsbayes does not write through links: "
        "name the file itself, or remove the link",
    )


def check_output_path(
    path: str | os.PathLike[str],
    *,
    kind: str = "file",
    what: str = "output file",
    mkdir: bool = False,
) -> Path:
    """Check, before any work, that ``path`` can be written; return it as a Path.

    Parameters
    ----------
    path : str or path-like
    kind : {"file", "directory"}
        What will be written there.
    what : str
        How the message names it (``"fit file"``, ``"report directory"`` ...).
    mkdir : bool
        Create the missing parent directories (now, before the work). Without
        it a missing parent is an error: lmsbayes creates no directory the
        user did not ask for. A report directory itself (``kind="directory"``)
        is what the user named and is created when the report is written; its
        parent must exist unless ``mkdir``.

    Raises
    ------
    OutputPathError
        The path is empty or holds a NUL byte; a file is expected where a
        directory exists (or the reverse); the file is a symbolic link (a
        directory may be one: the files are created inside it); a component of
        the path is a regular file; the parent directory is missing (unless
        ``mkdir``); the nearest existing directory is not writable; an
        existing file is read-only.
    """
    if kind not in ("file", "directory"):
        raise ValueError(f"kind must be 'file' or 'directory', got {kind!r}")
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text.strip():
        raise OutputPathError(f"the {what} path is empty")
    if "\0" in text:
        raise OutputPathError(f"the {what} path {text!r} contains a NUL byte")
    p = Path(text)
    try:
        st = _lstat(p)
    except NotADirectoryError:
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode):
        if kind == "file" and _is_stream_link(p):
            return p  # /dev/stdout: the process's own stream, nothing to replace
        if kind == "file":
            raise _link_refused(p, what)
        target = _stat(
            p
        )  # a directory given as a link: the files go inside it, never through a link
        if target is None or not stat.S_ISDIR(target.st_mode):
            raise _link_refused(p, what)
        st = target
    if st is not None:
        if kind == "file" and stat.S_ISDIR(st.st_mode):
            raise _fail(p, what, "it is a directory (give a file name)")
        if kind == "directory" and not stat.S_ISDIR(st.st_mode):
            raise _fail(p, what, "it exists and is not a directory")
        if kind == "file" and any(f(st.st_mode) for f in _SPECIAL):
            if not os.access(p, os.W_OK):
                raise _fail(p, what, "permission denied")
            return p  # /dev/null, a FIFO: written directly, nothing to replace
        if kind == "file" and not stat.S_ISREG(st.st_mode):
            raise _fail(p, what, "it exists and is not a regular file")
        if kind == "file" and not os.access(p, os.W_OK):
            raise _fail(p, what, "the file exists and is read-only")
        if kind == "directory" and not os.access(p, os.W_OK | os.X_OK):
            raise _fail(p, what, "the directory is not writable")
        return p
    # the nearest existing ancestor must be a writable directory
    missing: list[Path] = []
    parent = p.absolute().parent
    while True:
        pst = _stat(parent)
        if pst is not None:
            if not stat.S_ISDIR(pst.st_mode):
                raise _fail(p, what, f"{str(parent)!r} is a file, not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise _fail(p, what, f"the directory {str(parent)!r} is not writable")
            break
        if _lstat_quiet(parent) is not None:  # a dangling link on the way
            raise _fail(p, what, f"{str(parent)!r} is a link to nothing")
        missing.append(parent)
        if parent.parent == parent:
            break
        parent = parent.parent
    if missing and not mkdir:
        raise _fail(
            p,
            what,
            f"the directory {str(p.parent)!r} does not exist (create it first, or ask for it "
            "with --mkdir)",
        )
    for d in reversed(missing):
        try:
            os.mkdir(d)
        except FileExistsError:
            pass  # made meanwhile by someone else: checked by the write
        except OSError as exc:
            raise _fail(
                p, what, f"cannot create the directory {str(d)!r}: {exc.strerror}"
            ) from None
    return p


def _lstat_quiet(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


_TEMP_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOFOLLOW", 0)
)


def _create_exclusive(directory: Path, dest: Path, pending: list[tuple[Path, Path]]) -> Path:
    """Create an empty temp file for ``dest`` in ``directory`` (mode 0o666 & ~umask).

    The name is appended to ``pending`` (the list of temps to remove) *before*
    the file is created, so a signal between the two leaves nothing behind:
    removing a name that was never created is a no-op. A name that turns out to
    be taken is taken off the list again at once.
    """
    for _ in range(100):
        tmp = directory / temp_name(dest)
        entry = (tmp, dest)
        pending.append(entry)
        try:
            fd = os.open(tmp, _TEMP_FLAGS, 0o666)
        except FileExistsError:
            pending.remove(entry)  # someone else's file: never ours to remove
            continue
        # on any other error (or a signal) the name stays listed: removing it is then
        # a no-op, or removes the file the open made before the signal arrived
        os.close(fd)
        return tmp
    raise FileExistsError(
        errno.EEXIST, "no free temp-file name", str(directory)
    )  # pragma: no cover


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _is_special(path: Path) -> bool:
    """A FIFO, socket or character device (``/dev/null``), or the process's stream link."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if stat.S_ISLNK(st.st_mode):
        if not _is_stream_link(path):
            return False
        try:
            st = os.stat(path)
        except OSError:
            return False
    return any(f(st.st_mode) for f in _SPECIAL)


class Staging:
    """Files written to temps now and moved into place together at :meth:`commit`.

    Used as a context manager: the temps are committed when the block ends
    normally and removed when it raises (``KeyboardInterrupt`` and
    ``SystemExit`` included), so an interrupted writer leaves the destinations
    as they were.

    Examples
    --------
    >>> with Staging() as stage:
    ...     stage.path("report/index.html").write_text(html)
    ...     fig.savefig(stage.path("report/forest.png"))
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []  # (temp, destination)

    def path(self, dest: str | os.PathLike[str]) -> Path:
        """The temp path to write ``dest``'s content to (created empty, normal permissions).

        Raises
        ------
        OutputPathError
            ``dest`` is a symbolic link (never written through) or an existing
            directory or other non-regular file.
        FileNotFoundError
            ``dest``'s directory does not exist (it is not created here: see
            :func:`check_output_path`'s ``mkdir``).
        """
        dest = Path(dest)
        if _is_special(dest):  # /dev/null, /dev/stdout, a FIFO: nothing to replace
            self._pending.append((dest, dest))
            return dest
        try:
            st = os.lstat(dest)
        except FileNotFoundError:
            st = None
        except OSError:
            st = None  # the temp's creation below reports it, naming dest
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise _link_refused(dest, "output file")
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise _fail(dest, "output file", "it exists and is not a regular file")
        remove_stale_temps(dest)
        try:
            tmp = _create_exclusive(dest.parent, dest, self._pending)
        except OSError as exc:  # name the destination, not the temp file we could not create
            raise type(exc)(exc.errno, exc.strerror or str(exc), str(dest)) from None
        if st is not None:  # a replaced file keeps its mode
            with contextlib.suppress(OSError):
                os.chmod(tmp, stat.S_IMODE(st.st_mode))
        return tmp

    def write_bytes(self, dest: str | os.PathLike[str], data: bytes) -> Path:
        """Stage ``data`` for ``dest``.

        A failed write (disk full) names ``dest``, never the temp.
        """
        tmp = self.path(dest)
        try:
            tmp.write_bytes(data)
        except OSError as exc:
            raise type(exc)(exc.errno, exc.strerror or str(exc), str(dest)) from None
        return tmp

    def commit(self) -> list[Path]:
        """Move every temp into place; return the destinations."""
        out = []
        for tmp, dest in self._pending:
            if tmp != dest:
                _fsync(tmp)
        for tmp, dest in self._pending:
            if tmp != dest:
                try:
                    os.replace(tmp, dest)
                except OSError as exc:
                    raise type(exc)(exc.errno, exc.strerror or str(exc), str(dest)) from None
            out.append(dest)
        self._pending.clear()
        return out

    def discard(self) -> None:
        """Remove every temp not yet moved into place."""
        for tmp, dest in self._pending:
            if tmp != dest:
                # a registered name may not exist yet (a signal before its creation):
                # nothing to remove then; its name holds our pid, so it is no one else's
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        self._pending.clear()

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.commit()
            finally:
                self.discard()
        else:
            self.discard()


def atomic_write(dest: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Write ``dest`` atomically.

    ``write(temp_path)`` fills a temp file, then it is moved into place.

    ``write`` receives the path of an empty file beside ``dest`` and may
    overwrite it in any way (``to_netcdf``, ``savefig`` ...). If it raises,
    the temp is removed and ``dest`` is untouched.
    """
    dest = Path(dest)
    with Staging() as stage:
        tmp = stage.path(dest)
        try:
            write(tmp)
        except OSError as exc:
            if exc.filename not in (None, str(tmp), os.fspath(tmp)):
                raise
            # name the user's destination, never the temp file (disk full, file too large ...)
            raise type(exc)(exc.errno, exc.strerror or str(exc), str(dest)) from None
    return dest


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``dest`` atomically (see :func:`atomic_write`)."""
    return atomic_write(dest, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``dest`` atomically.

    See :func:`atomic_write`.
    """
    return atomic_write_bytes(dest, text.encode("utf-8"))


def _input_error(path: str, reason: str) -> InputError:
    return InputError(f"{path}: {reason}")


def read_text(
    path: str | os.PathLike[str],
    *,
    what: str = "file",
    max_bytes: int = MAX_TEXT_BYTES,
    error: Callable[[str, str], BaseException] = _input_error,
) -> str:
    """Read a UTF-8 text file; every error names the file.

    Parameters
    ----------
    path : str or path-like
    what : str
        How messages name the file (``"spec"``, ``"prior"`` ...).
    max_bytes : int
        Larger files are refused before they are read.
    error : callable
        ``error(path, reason)`` builds the exception raised for a bad file;
        the default gives ``InputError(f"{path}: {reason}")``. Readers pass
        their own class, e.g. ``lambda path, reason: PriorFileError(f"{path}: {reason}")``.

    Returns
    -------
    str
        The text, without a leading byte-order mark.

    Raises
    ------
    FileNotFoundError
        No such file (the message names it).
    InputError (or what ``error`` builds)
        Not a regular file, larger than ``max_bytes``, not valid UTF-8 (with
        the line and byte offset), a NUL byte in the text, or unreadable.
    """
    p = Path(path)
    name = str(p)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"no {what} file {name!r}") from None
    except (OSError, ValueError) as exc:
        raise error(
            name, f"cannot read the {what}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    if stat.S_ISDIR(st.st_mode):
        raise error(name, f"the {what} is a directory, not a file")
    if stat.S_ISREG(st.st_mode) and st.st_size > max_bytes:
        raise error(
            name,
            f"the {what} is {st.st_size:,} bytes, more than the {max_bytes:,} this reader accepts",
        )
    try:
        with open(p, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise error(name, f"cannot read the {what}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise error(name, f"the {what} is more than the {max_bytes:,} bytes this reader accepts")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(
            name,
            f"the {what} is not valid UTF-8 (line {line}, byte {exc.start}: "
            f"{data[exc.start : exc.start + 1]!r})",
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]  # the byte-order mark some editors write
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise error(name, f"the {what} contains a NUL byte (line {line}); is it a text file?")
    return text
