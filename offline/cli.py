"""The `steerpad` command. Each subcommand lives in its own module with `add_arguments(parser)`
and `run(args) -> int`; only the chosen one is imported, so realtime commands never load torch.

Exit codes: 0 done, 1 a runtime failure (RuntimeFailure, the system refusing a file, a bug),
2 bad input or usage (SteerpadError, argparse), 130 Ctrl-C, 128 + N for SIGTERM / SIGHUP (raised
as Stopped, a KeyboardInterrupt, so every command cleans up as for Ctrl-C). Every failure is one
line on stderr."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable

from steerpad.realtime.errors import RuntimeFailure, SteerpadError, one_line

# name -> (module, one-line help). Two-word names are subcommands of a group ("train sae").
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("steerpad.offline.ingest", "read folders of one-shots into a training store"),
    "encode": ("steerpad.offline.latents", "encode an ingested store into a latent store"),
    "train vae": ("steerpad.offline.vae_train", "train the small Oobleck VAE on an ingested store"),
    "train sae": ("steerpad.offline.sae_train", "train the TopK sparse autoencoder on a latent store"),
    "export": ("steerpad.offline.export", "export a VAE, SAE and steering directions as a playable bundle"),
    "train": ("steerpad.offline.train_all", "one-shots to a bundle: every stage, resumable"),
    "calibrate": ("steerpad.offline.knobs", "calibrate a bundle's knobs per render mode, as pads play"),
    "eval": ("steerpad.offline.evaluate", "measure a bundle's steering on held-out one-shots"),
    "live": ("steerpad.realtime.live", "play a bundle from a MIDI controller, live"),
    "render": ("steerpad.realtime.bounce", "render a MIDI performance to a WAV file (a bounce)"),
    "config": ("steerpad.realtime.config", "show the config file's path and each resolved default"),
    "demo": ("steerpad.realtime.demo", "bounce (and play) the shipped demo performance into ./out"),
    "devices": ("steerpad.realtime.devices", "list audio devices and MIDI ports"),
    "learn": ("steerpad.realtime.learn", "MIDI learn: touch pads and knobs, write a controller map"),
    "viz": ("steerpad.realtime.viz", "serve a live visualizer page (level, bands, hits, knobs) on 127.0.0.1"),
}


EXIT_CODES = ("exit codes: 0 done, 1 a runtime failure (the audio server stopped, a full disk, a bug), "
              "2 bad input or usage, 130 Ctrl-C (143 SIGTERM, 129 SIGHUP; `steerpad live` ends play on "
              "them, as a performer stops it, and exits 0)")


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: steerpad COMMAND [options]   (steerpad COMMAND --help for its options)",
             "       steerpad --version", ""]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "live, render and demo play the shipped default bundle and preset unless given "
              "--bundle / --preset.", EXIT_CODES]
    return "\n".join(lines)


def version() -> str:
    """steerpad's installed version (its distribution's metadata)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("steerpad")
    except PackageNotFoundError:
        return "unknown (not installed: pip install steerpad)"


def _pick(argv: list[str]) -> tuple[str, list[str]] | None:
    for words in (2, 1):
        name = " ".join(argv[:words])
        if len(argv) >= words and name in COMMANDS:
            return name, argv[words:]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):  # file names need not be UTF-8: print them escaped
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"steerpad {version()}")
        return 0
    picked = _pick(argv)
    if picked is None:
        print(f"steerpad: error: unknown command {' '.join(argv[:2])!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    name, rest = picked
    module_name, help_ = COMMANDS[name]
    return guarded(f"steerpad {name}", lambda: _run(name, module_name, help_, rest))


def guarded(label: str, run: Callable[[], int]) -> int:
    """`run()` as every steerpad command runs (and the scripts in scripts/ that change a bundle):
    SIGTERM and SIGHUP raise Stopped, so cleanups run as for Ctrl-C; bad input, a stop, a
    system refusal or a bug each end in one line on stderr and the exit code of EXIT_CODES.
    `label` names the command in the line of a bug."""
    before = _stop_on_signals()
    try:
        return run()
    except RuntimeFailure as e:
        return _fail(str(e), 1)
    except SteerpadError as e:
        return _fail(str(e), 2)
    except KeyboardInterrupt as e:  # Ctrl-C, or Stopped (SIGTERM, SIGHUP)
        return _stopped(e)
    except OSError as e:  # the system said no: a full disk, a read-only or vanished path
        where = f"{e.filename}: " if e.filename else ""
        if e.errno == errno.ENAMETOOLONG:  # the user's path, not the system's state
            return _fail(f"{where}a name in this path is too long for the file system; choose a "
                         "shorter one", 2)
        return _fail(f"{where}{e.strerror or e}; free space or choose another path", 1)
    except MemoryError:
        return _fail(f"`{label}` ran out of memory; use smaller inputs", 1)
    except Exception as e:  # noqa: BLE001 - a bug: one line for the user, the traceback on request
        stop = _stop_within(e)
        if stop is not None:  # a stop that landed inside a library, which raised its own error
            return _stopped(stop)
        if os.environ.get("STEERPAD_DEBUG"):
            raise
        return _fail(f"internal error in `{label}`: {type(e).__name__}: {e} (please report "
                     "it; STEERPAD_DEBUG=1 shows the traceback)", 1)
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def _run(name: str, module_name: str, help_: str, rest: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"steerpad {name}", description=help_, epilog=EXIT_CODES)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise SteerpadError(f"`steerpad {name}` needs the training extra ({e.name} is missing): "
                            "pip install 'steerpad[train]'") from None
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return int(module.run(args) or 0)


def _stopped(e: KeyboardInterrupt) -> int:
    """One line and the exit code of a stop: 130 for Ctrl-C, 128 + the signal for Stopped."""
    if isinstance(e, Stopped):
        print(f"steerpad: stopped by {signal.Signals(e.signum).name}", file=sys.stderr)
        return 128 + e.signum
    print("steerpad: interrupted", file=sys.stderr)
    return 130


def _stop_within(e: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or Stopped an error was raised while handling, if any: a stop that lands inside
    numba's or onnxruntime's C code comes back as their SystemError or ImportError, with the
    stop as its context (measured: pyin's Viterbi, onnxruntime's import)."""
    seen = 0
    while e is not None and seen < 32:
        if isinstance(e, KeyboardInterrupt):
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a `timeout`, a job manager, a closed terminal), raised like Ctrl-C so
    every command cleans up as it does for Ctrl-C: no `.tmp` or `.partial` left behind."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop_on_signals() -> dict:
    """Raise Stopped on SIGTERM and SIGHUP (main thread only); returns the handlers replaced."""
    def stop(signum, frame):
        raise Stopped(signum)

    before = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signum = getattr(signal, name)
                before[signum] = signal.signal(signum, stop)
    return before


def _fail(message: str, code: int) -> int:
    """Print one line for the user, whatever the message holds (newlines, control characters,
    undecodable names: errors.one_line)."""
    print(f"steerpad: error: {one_line(message)}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
