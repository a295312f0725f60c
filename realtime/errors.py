"""The exceptions a user sees, each printed by the CLI as one line (`steerpad: error: ...`), and
`user_path`, which turns a path a user typed into one or into such an error."""

from __future__ import annotations

from pathlib import Path


class SteerpadError(Exception):
    """Bad input (a file, a bundle, a MIDI message, an option). The message names the thing
    and says what to do; the CLI prints it as `steerpad: error: <message>` and exits 2."""


class RuntimeFailure(SteerpadError):
    """A runtime failure, not the user's input: renders that failed, an audio server that went
    away, a full disk. The CLI prints it as one line and exits 1."""


EMPTY = ("is empty (0 bytes; a file of the kernel's, under /proc or /sys, says so too, and reading "
         "one may never end)")
"""Why a regular file that says it holds 0 bytes is refused before it is opened: no one-shot,
MIDI file, preset or config holds nothing, and /proc/kmsg (0 bytes, a regular file) blocks a read
for good, inside libsndfile, where neither Ctrl-C nor SIGTERM reaches it (a hostile pass)."""


def one_line(text: str) -> str:
    """`text` as one printable line for a terminal: line breaks as spaces, any other control
    character (an ESC that would recolour the terminal, a BEL) and any undecodable byte of a file
    name escaped (\\x1b, \\udcff)."""
    line = " ".join(str(text).splitlines())
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in line).encode("utf-8", "backslashreplace").decode("utf-8")


def user_path(value: str | Path, what: str) -> Path:
    """A path a performer typed (a preset or config value, an option, $STEERPAD_CONFIG) as a
    Path, with a leading ~ or ~user expanded; SteerpadError naming `what` for one no system call
    can take (a NUL byte) or whose home folder is unknown."""
    text = str(value)
    if "\0" in text:
        raise SteerpadError(f"{what}: {text.replace(chr(0), '<NUL>')!r} holds a NUL byte, which no path "
                            "may; write the path without it")
    try:
        return Path(text).expanduser()
    except RuntimeError:  # "Could not determine home directory": ~nosuchuser, or no $HOME
        user = text.split("/", 1)[0]
        raise SteerpadError(f"{what}: {text!r} starts with {user}, whose home folder is unknown; "
                            "write the full path") from None
