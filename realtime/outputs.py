"""What steerpad may write over: only what it wrote itself.

Every command that writes, replaces or deletes (`ingest`, `encode`, `train vae`, `train sae`,
`train`, `export`, `calibrate` (it rewrites the bundle's manifest), `eval`,
`render --out`/`--features`, `demo --out`, `learn --out`) asks `claim_output` first (capture never replaces
anything: each take gets a new name). Each kind of output steerpad writes carries a marker it
recognises:

| kind       | written by                      | marker                                            |
| ---------- | ------------------------------- | ------------------------------------------------- |
| `store`    | ingest                          | `store.json`, `"format": "steerpad-ingest"`       |
| `latents`  | encode                          | `meta.json`, `"format": "steerpad-latents-1"`     |
| `bundle`   | export, train, calibrate        | `manifest.json`, `"schema": "steerpad-bundle"`    |
| `run:STAGE`| train vae / sae (`vae`, `sae`), | `steerpad-run.json`, `"format": "steerpad-run"`,  |
|            | train's work folder (`train`),  | `"stage": STAGE`: a folder of one stage is never  |
|            | steering, eval                  | taken for another's                               |
| `wav`      | render (bounce)                 | the WAV's `software` tag starts with `steerpad`   |
| `features` | render --features               | first line is a feature frame (`frame`, `time`,   |
|            |                                 | `messages`)                                       |
| `controller` | learn                         | first line `# steerpad controller map`            |
| `picture`  | demo (demo.png)                 | the PNG's `Software` text starts with `steerpad`  |

A path that exists without its kind's marker is refused with one line, whatever the flags say:
`--force` replaces only a marked output. An output equal to, inside or holding one of the
command's inputs is refused too (writing it could destroy what it reads). The module is part
of the contract between the halves: offline imports it with the bundle contract and errors.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from steerpad.realtime.errors import SteerpadError

RUN_MARKER = "steerpad-run.json"
RUN_FORMAT = "steerpad-run"
_MAX_MARKER_BYTES = 1 << 20  # a marker file is small; a bigger one is not ours


def _json(path: Path) -> dict | None:
    """The JSON object in `path`, or None (missing, unreadable, not an object, too big)."""
    try:
        if not path.is_file() or path.stat().st_size > _MAX_MARKER_BYTES:
            return None
        value = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _first_line(path: Path) -> dict | None:
    try:
        with open(path, "rb") as f:
            value = json.loads(f.readline(_MAX_MARKER_BYTES))
    except (OSError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _first_text_line(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.readline(4096).decode("utf-8", "replace")
    except OSError:
        return ""


def _wav_software(path: Path) -> str:
    import soundfile as sf

    try:
        with sf.SoundFile(os.fsencode(path)) as f:
            return f.software or ""
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError):
        return ""


PNG_SOFTWARE = "steerpad"
"""A PNG steerpad draws carries a `Software` text chunk starting with this (its marker)."""


def _png_software(path: Path) -> str:
    """The PNG's `Software` tEXt value (chunks before the image data), or ''."""
    try:
        with open(path, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                return ""
            for _ in range(64):  # text chunks come early; a marker is never far in
                head = f.read(8)
                if len(head) < 8:
                    return ""
                size, kind = int.from_bytes(head[:4], "big"), head[4:]
                if kind == b"IDAT" or size > _MAX_MARKER_BYTES:
                    return ""
                data = f.read(size)
                f.seek(4, os.SEEK_CUR)  # (the CRC)
                if kind == b"tEXt" and data.startswith(b"Software\0"):
                    return data[9:].decode("latin-1")
    except OSError:
        return ""
    return ""


def kind_of(path: str | Path) -> str | None:
    """The kind of steerpad output at `path` (see the module table), or None for anything else:
    a missing path, a symlink, a folder or file steerpad did not write."""
    path = Path(path)
    if path.is_symlink():
        return None
    if path.is_dir():
        store = _json(path / "store.json")
        if store and store.get("format") == "steerpad-ingest":
            return "store"
        meta = _json(path / "meta.json")
        if meta and meta.get("format") == "steerpad-latents-1":
            return "latents"
        manifest = _json(path / "manifest.json")
        if manifest and manifest.get("schema") == "steerpad-bundle":
            return "bundle"
        run = _json(path / RUN_MARKER)
        if run and run.get("format") == RUN_FORMAT and isinstance(run.get("stage"), str):
            return f"run:{run['stage']}"
        return None
    if path.is_file():
        if path.suffix.lower() in (".wav", ".wave") and _wav_software(path).startswith("steerpad"):
            return "wav"
        if path.suffix.lower() == ".png" and _png_software(path).startswith(PNG_SOFTWARE):
            return "picture"
        if path.suffix == ".toml" and _first_text_line(path).startswith("# steerpad controller map"):
            return "controller"
        line = _first_line(path)
        if line is not None and {"frame", "time", "messages"} <= set(line):
            return "features"
    return None


def _named(kind: str) -> str:
    """'store' -> 'steerpad store', 'run:vae' -> 'steerpad vae run folder'."""
    return f"steerpad {kind[4:]} run folder" if kind.startswith("run:") else f"steerpad {kind}"


def related(a: str | Path, b: str | Path) -> bool:
    """Whether two paths (links resolved) are the same or one holds the other."""
    return _related(_real(Path(a)), _real(Path(b)))


def _related(a: Path, b: Path) -> bool:
    """a and b are the same path or one holds the other."""
    return a == b or a in b.parents or b in a.parents


def _real(path: Path) -> Path:
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError):
        return Path(os.path.abspath(path))


def claim_output(out: str | Path, kind: str, *, option: str = "--out", inputs: Iterable[str | Path] = (),
                 force: bool = False, resume: bool = False) -> bool:
    """Check that a command may write its output `out` (of `kind`), before it reads anything.

    - `out` may not be, lie inside or hold any of `inputs`.
    - A missing `out` (or, with `resume`, an empty folder) is fine.
    - An existing `out` must carry `kind`'s marker. With `resume` (a stage that continues into
      its folder) that is enough; otherwise replacing it also needs `force`.
    - The folder that will hold `out` must exist or be creatable.

    Returns whether `out` exists. Raises SteerpadError naming `option` and the path."""
    out = Path(out)
    real = _real(out)
    for given in inputs:
        src = _real(Path(given))
        if _related(real, src):
            where = ("is" if real == src else "lies inside" if src in real.parents else "holds")
            raise SteerpadError(f"{option} {out}: {where} the input {given}; writing there could "
                                "destroy what it reads: choose an output outside the inputs")
    exists = out.exists() or out.is_symlink()
    if exists:
        if resume and out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
            return True
        found = kind_of(out)
        if out.is_symlink():
            raise SteerpadError(f"{option} {out}: is a symlink, which steerpad does not write "
                                "through; give the real path")
        if found is None:
            raise SteerpadError(f"{option} {out}: exists and steerpad did not write it (no "
                                f"{_named(kind)} marker); steerpad only replaces its own "
                                "outputs: choose another path or remove it yourself")
        if found != kind:
            raise SteerpadError(f"{option} {out}: is a {_named(found)}, not a {_named(kind)}; "
                                "choose another path")
        if not resume and not force:
            raise SteerpadError(f"{option} {out}: already exists; pass --force to replace it")
    make_parent(out, option)
    return exists


def replace_claimed(tmp: str | Path, out: str | Path, kind: str, option: str = "--out") -> None:
    """Move the finished temporary `tmp` over `out`, first checking again that `out` is absent or
    still a steerpad `kind` (something may have appeared there while the command ran). On any
    refusal or failure `tmp` is removed and the error raised."""
    try:
        claim_output(out, kind, option=option, force=True)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_claimed(out: str | Path, kind: str, write: Callable[[Path], None], option: str = "--out") -> None:
    """Write `out` (already claimed) through `write(tmp)` on a new temporary file beside it,
    then move it over `out` with replace_claimed. A failure or a stop removes the temporary
    file, which this call made (mkstemp: never an existing file)."""
    out = Path(out)
    tmp = None
    try:
        with stops_held():  # a stop lands once `tmp` holds the file, inside the try
            fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
            os.close(fd)
            tmp = Path(name)
        write(tmp)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    replace_claimed(tmp, out, kind, option)


def make_parent(out: Path, option: str = "--out") -> None:
    """Create the folder that will hold `out`; SteerpadError (one line) if the file system says no
    (read-only, a regular file in the way, no permission, no space)."""
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SteerpadError(f"{option} {out}: {parent} is a file, not a folder; choose a path in "
                            "a folder") from None
    except OSError as e:
        raise SteerpadError(f"{option} {out}: cannot create {parent} ({os_reason(e)}); choose a "
                            "writable place") from None
    if not parent.is_dir():
        raise SteerpadError(f"{option} {out}: {parent} is not a folder; choose a path in a folder")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace `path` with `text` atomically: written to a new temporary file beside it (never an
    existing file), then renamed over it, so a reader sees the old file or the new one. On any
    failure the temporary file, ours and just made, is removed. The new file keeps the old one's
    permissions (mkstemp's are owner-only), or gets rw-r--r--."""
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


STOPS = ("SIGINT", "SIGTERM", "SIGHUP")
"""The signals that stop a command (Ctrl-C, a `timeout` or job manager, a closed terminal)."""


@contextlib.contextmanager
def stops_held() -> Iterator[None]:
    """Hold back a stop (STOPS) that arrives inside the block and deliver it, through the handler
    that was in place, as the block ends. For making a temporary file and handing it to the code
    that removes it on a stop as one step: a stop that landed in between (after the file was
    made, before the caller's variable held it) left the file behind (a `render --out` stopped
    by SIGTERM right after it began writing). Python runs signal handlers in the main thread
    only, so elsewhere this holds nothing back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    before = {}
    for name in STOPS:
        if hasattr(signal, name):
            signum = getattr(signal, name)
            before[signum] = signal.signal(signum, lambda n, frame: caught.append(n))
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        if caught:
            handler = before[caught[0]]
            if callable(handler):
                handler(caught[0], None)  # raises (KeyboardInterrupt, the CLI's Stopped)
            elif handler != signal.SIG_IGN:  # the default action, as if it had just arrived
                signal.raise_signal(caught[0])


def mark_run(folder: str | Path, stage: str) -> None:
    """Create `folder` (if needed) and write its run marker for `stage` (kind "run:<stage>"), so
    steerpad may later resume into it. Call only after `claim_output(folder, "run:<stage>", ...)`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / RUN_MARKER
    if _json(marker) is None:
        tmp = folder / (RUN_MARKER + ".tmp")
        tmp.write_text(json.dumps({"format": RUN_FORMAT, "stage": stage}) + "\n")
        os.replace(tmp, marker)


def os_reason(e: OSError) -> str:
    """An OSError as a short reason: 'No space left on device', 'Read-only file system', ..."""
    return e.strerror or str(e) or type(e).__name__
