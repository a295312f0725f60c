"""`steerpad demo` (and `./scripts/demo`): bounces the shipped demo performance (presets/demo.mid)
with the default bundle and preset to out/demo.wav in the current folder, writes its feature
stream (out/demo.jsonl) and a picture of it (out/demo.png: waveform, spectrogram, knob lanes;
needs matplotlib, the `demo` extra), prints where they are, and plays the performance live (the
engine on the audio output, fed by the MIDI file in real time) when an output device exists.
Each file is refused, as render refuses its outputs, where something steerpad did not write is
there or where it is an input.

    steerpad demo [--out DIR] [--no-play] [--audio-device D] [--bundle B] [--preset P] [--midi M]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from steerpad.realtime import config, shipped
from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.events import NoteOn
from steerpad.realtime.outputs import PNG_SOFTWARE, claim_output, write_claimed

SAMPLE_RATE = 48000


def render(bundle_dir: Path, preset_path: Path, midi: Path, out: Path) -> tuple[Path, Path, dict]:
    """The bounce and its feature frames: (wav, jsonl, counters)."""
    from steerpad.realtime.bounce import bounce_to_files, read_performance
    from steerpad.realtime.bundle import load_bundle
    from steerpad.realtime.presets import load_preset

    bundle = load_bundle(bundle_dir)
    preset = load_preset(preset_path)
    wav, jsonl = claim(out, (midi, bundle_dir, preset_path, *preset.files()))
    events = read_performance(midi, SAMPLE_RATE, preset.controller.cc14)
    counters, _ = bounce_to_files(bundle, preset, events, wav, SAMPLE_RATE, features=jsonl,
                                  label="demo: rendering")
    counters["seconds"] = counters["frames"] / SAMPLE_RATE
    counters["events"] = len(events)
    counters["peak_dbfs"] = float(20 * np.log10(max(counters["peak"], 1e-9)))
    return wav, jsonl, counters


def claim(out: Path, inputs) -> tuple[Path, Path]:
    """demo.wav and demo.jsonl in `out`, after checking that the demo may write them and
    demo.png (absent, or written by steerpad; none of them an input or inside one), as render
    checks its outputs: before anything is read or rendered."""
    wav, jsonl, png = out / "demo.wav", out / "demo.jsonl", out / "demo.png"
    claim_output(wav, "wav", inputs=inputs, force=True)
    claim_output(jsonl, "features", inputs=(*inputs, wav), force=True)
    claim_output(png, "picture", inputs=(*inputs, wav, jsonl), force=True)
    return wav, jsonl


def knob_lanes(jsonl: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Frame times and each knob's position (0-1) from the feature stream."""
    times, lanes = [], {}
    with open(jsonl, encoding="utf-8") as f:
        for i, line in enumerate(f):
            frame = json.loads(line)
            times.append(frame["time"])
            for address, *args in frame["messages"]:
                if address.startswith("/steerpad/knob/"):
                    lane = lanes.setdefault(address.rsplit("/", 1)[1], [])
                    lane += [np.nan] * (i - len(lane)) + [args[0]]
    return np.array(times), {k: np.array(v + [np.nan] * (len(times) - len(v)))
                             for k, v in lanes.items()}


def plot(wav: Path, jsonl: Path, png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf

    audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    mono = audio.mean(1)
    t = np.arange(len(mono)) / sr
    fig, ax = plt.subplots(3, 1, figsize=(14, 9), sharex=True,
                           gridspec_kw={"height_ratios": [1, 2, 1.4]})
    ax[0].plot(t[::8], audio[::8, 0], lw=0.3, color="tab:blue", label="L")
    ax[0].plot(t[::8], audio[::8, 1], lw=0.3, color="tab:orange", alpha=0.6, label="R")
    ax[0].set_ylim(-1, 1)
    ax[0].set_ylabel("waveform")
    ax[0].legend(loc="upper right", fontsize=7)
    n_fft, hop = 2048, 512
    frames = np.lib.stride_tricks.sliding_window_view(mono, n_fft)[::hop] * np.hanning(n_fft)
    spec = 20 * np.log10(np.abs(np.fft.rfft(frames, axis=1)).T + 1e-7)
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    ax[1].pcolormesh((np.arange(spec.shape[1]) * hop + n_fft / 2) / sr, freqs[1:], spec[1:],
                     shading="auto", vmin=spec.max() - 90, vmax=spec.max(), cmap="magma",
                     rasterized=True)
    ax[1].set_yscale("log")
    ax[1].set_ylim(30, sr / 2)
    ax[1].set_ylabel("Hz")
    times, lanes = knob_lanes(jsonl)
    for name, lane in lanes.items():
        ax[2].plot(times, lane, lw=1.2, label=name)
    ax[2].set_ylim(-0.05, 1.05)
    ax[2].set_ylabel("knob position")
    ax[2].set_xlabel("seconds")
    if lanes:  # (a preset may have no knobs)
        ax[2].legend(loc="upper left", ncol=len(lanes), fontsize=8)
    fig.suptitle(f"steerpad demo: {wav.name}")
    fig.tight_layout()
    try:  # drawn beside it and moved over it only if it is still absent or steerpad's
        write_claimed(png, "picture", lambda tmp: fig.savefig(
            tmp, dpi=80, format="png", metadata={"Software": f"{PNG_SOFTWARE} demo"}))
    finally:
        plt.close(fig)
    return png


class PerformancePlayer:
    """A performance (read_performance's (sample, event) list) as the engine's MIDI input
    (Engine.attach_midi): drained at the start of each block, every event due before the
    block's end, note-ons at their exact sample. Knob moves then re-render in the worker while
    the pads play on, as when a hand turns them."""

    def __init__(self, events: list, blocksize: int):
        self.events, self.blocksize = events, blocksize
        self.i, self.now = 0, 0

    def drain(self, handle) -> None:  # in the audio callback
        end = self.now + self.blocksize
        while self.i < len(self.events) and self.events[self.i][0] < end:
            when, event = self.events[self.i]
            if isinstance(event, NoteOn):
                handle(event, max(0, when - self.now))
            else:
                handle(event)
            self.i += 1
        self.now = end

    @property
    def done(self) -> bool:
        return self.i >= len(self.events)


def play_live(bundle_dir: Path, preset_path: Path, midi: Path, device=None,
              tail_s: float = 2.0) -> dict:
    """Plays the performance live: the engine on the audio output (sounddevice), fed by the
    MIDI file in real time. Returns what happened: {"played": bool, "why" or "device",
    "hits", "xruns", "callback_errors"}."""
    import time

    try:
        import sounddevice as sd
    except OSError as e:  # PortAudio missing
        return {"played": False, "why": f"no audio library ({e})"}
    try:
        info = sd.query_devices(device, kind="output")
    except (sd.PortAudioError, ValueError):
        return {"played": False, "why": "no audio output device"}
    from steerpad.realtime.bounce import read_performance
    from steerpad.realtime.bundle import load_bundle
    from steerpad.realtime.engine import Engine
    from steerpad.realtime.live import LiveStream
    from steerpad.realtime.presets import load_preset

    bundle, preset = load_bundle(bundle_dir), load_preset(preset_path)
    rate = int(info["default_samplerate"])
    with Engine(bundle, preset, rate, 256) as engine:
        if not engine.start(wait=120):
            raise SteerpadError("demo: the first renders did not finish in time")
        player = PerformancePlayer(read_performance(midi, rate, preset.controller.cc14), 256)
        engine.attach_midi(player)
        stream = LiveStream(engine, device)
        stream.start()
        try:
            while not player.done:
                time.sleep(0.05)
            time.sleep(tail_s)
        finally:
            stream.close()
        return {"played": True, "device": stream.device_name, "hits": engine.played,
                "xruns": stream.xruns, "callback_errors": stream.callback_errors}


def add_arguments(ap: argparse.ArgumentParser) -> None:
    config.add_sound_arguments(ap)
    ap.add_argument("--midi", type=Path, default=None,
                    help="the performance (default: the shipped demo performance)")
    ap.add_argument("--out", type=Path, default=Path("out"),
                    help="the folder to write demo.wav, demo.jsonl and demo.png to (default: ./out)")
    ap.add_argument("--no-play", action="store_true", help="do not play the performance live")
    ap.add_argument("--audio-device", default=None, help="output device (default: the system's)")


def run(args: argparse.Namespace) -> int:
    """Bounce, draw and (unless --no-play) play; SteerpadError for bad input (`steerpad` prints it)."""
    bundle, preset = config.sound_paths(args)
    midi = args.midi if args.midi is not None else shipped.demo_performance()
    if not midi.is_file():
        raise SteerpadError(f"{midi}: no such MIDI file; give a standard MIDI file with --midi")
    wav, jsonl, counters = render(bundle, preset, midi, args.out)
    try:
        png = plot(wav, jsonl, args.out / "demo.png")
    except ImportError:  # a performer's install without the `demo` extra
        png = None
    print(f"steerpad demo: {counters['seconds']:.1f} s, {counters['events']} MIDI events, "
          f"{counters['renders']} renders, peak {counters['peak_dbfs']:.1f} dBFS")
    print(f"  audio     {wav}")
    print(f"  picture   {png or 'not drawn: it needs matplotlib (pip install steerpad[demo])'}")
    print(f"  features  {jsonl}  (steerpad-osc-monitor --replay {jsonl} sends them over OSC)")
    if not args.no_play:
        print("  playing it live (Ctrl-C stops) ...")
        live = play_live(bundle, preset, midi, args.audio_device)
        if live["played"]:
            print(f"  played live on {live['device']}: {live['hits']} hits, {live['xruns']} xruns")
        else:
            print(f"  not played live: {live['why']}")
    return 0
