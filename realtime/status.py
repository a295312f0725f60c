"""The terminal status view of `steerpad live` (rich): pads lighting on hits (with their capture
marks), knob values per direction, the render queue and latency, callback load and xruns, the
MIDI port, the OSC feed's counters, the input's level meter, the keys' help; a "stopped" row
naming each service thread that ended on an exception (its `crash`); and, once the audio device
is gone (LiveStream.failure), why, with MIDI on a JACK server that went with it.

It only reads counters the engine, worker and stream already keep; it runs on the main thread
and never touches the audio path."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from steerpad.realtime.faithful import MODES

LIT_S = 0.15
"""How long a pad stays lit after a hit."""
CAPTURE_MARKS = {"armed": ("R", "bold red"), "recording": ("●", "bold white on red"),
                 "encoding": ("…", "bold black on yellow")}
"""A pad's capture state (capture.py): the mark after its name, its style."""


def pad_name(pad) -> str:
    """A short label: the kit entry's name, or the sample file's stem."""
    return (pad.sample if pad.kind == "kit" else Path(pad.sample).stem)[:10]


class StatusView:
    def __init__(self, engine, stream, midi, refresh_hz: float = 10.0, feed=None):
        self.engine, self.stream, self.midi = engine, stream, midi
        self.feed = feed
        """The OSC visualizer feed (oscfeed.LiveFeed), or None."""
        self.keys = None
        """A keys.LiveKeys whose help and feedback are shown, or None."""
        self.refresh_hz = refresh_hz

    def render(self) -> Group:
        e = self.engine
        now = time.perf_counter()
        lit = {h.pad: h.velocity for h in list(e.hits) if now - h.time < LIT_S}
        pads = Table.grid(padding=(0, 1))
        n = len(e.controller.pad_notes)
        cols = 4 if n <= 16 else 8
        row = []
        cap = getattr(e, "capture", None)
        for p in range(n):
            name = pad_name(e.preset.pads[p]) if p < len(e.preset.pads) else "-"
            style = f"bold black on rgb({min(255, 80 + 2 * lit[p])},200,80)" if p in lit else "dim"
            err = "!" if e.worker.errors[p] else " "
            if cap is not None:
                name = cap.names[p] or name
                err, style = CAPTURE_MARKS.get(cap.pad_state(p), ("!" if cap.errors[p] else err, style))
            row.append(Text(f"{p + 1:>2} {name:<10}{err}", style=style))
            if len(row) == cols:
                pads.add_row(*row)
                row = []
        if row:
            pads.add_row(*row)

        knobs = Table(box=None, show_header=True, header_style="bold")
        mode = e.preset.pad_mode(None, e.bundle.default_mode)  # the preset's render mode
        for col in ("knob", "direction", "position", f"alpha ({mode})"):
            knobs.add_column(col)
        alpha = e.alpha()[MODES.index(mode)]  # each mode has its own knob scales
        names = e.bundle.direction_names()
        for i, (k, pos) in enumerate(zip(e.preset.knobs, e.knobs)):
            bar = "█" * int(round(pos * 20))
            a = alpha[names.index(k.direction)]
            knobs.add_row(str(i + 1), k.direction, f"{bar:<20} {pos:.2f}", f"{a:+.2f}")

        load = e.load_stats()
        w = e.worker
        info = Table.grid(padding=(0, 2))
        errors = f" · [red]{w.stats.errors} errors: {w.stats.last_error}[/]" if w.stats.errors else ""
        info.add_row("render", f"{w.pending()} pending · last {w.stats.last_ms:.0f} ms compute, "
                     f"{w.stats.last_latency_ms:.0f} ms knob→fresh · {w.stats.renders} renders{errors}")
        failure = getattr(self.stream, "failure", None)
        audio = (f"{escape(self.stream.device_name)} · {e.sample_rate} Hz · {e.blocksize} frames · "
                 f"callback p50 {load['p50_ms']:.2f} ms, p99 {load['p99_ms']:.2f} ms "
                 f"({100 * load['p99_load']:.0f} % of a block) · xruns {self.stream.xruns} · "
                 f"voices {e.mixer.active}")
        info.add_row("audio", f"[bold red]{escape(failure)}[/]" if failure else audio)
        port = escape(self.midi.port_name or "-")
        if failure and getattr(self.stream, "jack", False) and getattr(self.midi, "api_name", None) == "jack":
            state = "[bold red]gone with the JACK server[/]"  # rtmidi's JACK client died with it
        elif self.midi.connected:
            state = "[green]connected[/]"
        else:
            state = "[yellow]waiting for the port[/]"
        info.add_row("midi", f"{port} {state} · {self.midi.received} messages · hits {e.played} · "
                     f"{e.unmapped} unmapped")
        if self.feed is not None:
            info.add_row("osc", Text(self.feed.summary()))
        if cap is not None:
            info.add_row("input", Text.assemble(cap.summary(), (f" · {cap.last_error}" if cap.last_error
                                                                 else "", "red")))
        services = ("render", w), ("midi", self.midi), ("osc", self.feed), ("input", cap), ("keys", self.keys)
        crashed = [f"{name}: {svc.crash}" for name, svc in services if getattr(svc, "crash", None)]
        if crashed:  # a service thread ended on an exception: the rest plays on without it
            info.add_row("stopped", Text("; ".join(crashed), style="bold red"))
        if self.keys is not None:
            info.add_row("keys", Text.assemble(self.keys.help, (f" · {self.keys.message}" if self.keys.message
                                                                else "", "yellow")))
        return Group(Text(f"steerpad · {e.preset.name} · Ctrl-C to stop", style="bold"), pads, knobs, info)

    def run(self, playing: Callable[[], bool]) -> None:
        """Redraw until playing() is False (it checks the deadline and the audio device); Ctrl-C
        raises KeyboardInterrupt here, at once: nothing in the loop waits on audio or MIDI."""
        with Live(self.render(), refresh_per_second=self.refresh_hz, transient=False) as live:
            try:
                while playing():
                    time.sleep(1.0 / self.refresh_hz)
                    live.update(self.render())
            finally:
                live.update(self.render())  # the last state stays on screen
