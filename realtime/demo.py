"""`./scripts/demo`: bounces presets/demo.mid with models/default and presets/default.toml to
out/demo.wav, writes its feature stream (out/demo.jsonl) and a picture of it (out/demo.png:
waveform, spectrogram, knob lanes), prints where they are, and plays the bounce when an audio
output device exists.

    python -m steerpad.realtime.demo [--out DIR] [--no-play] [--bundle B] [--preset P] [--midi M]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from steerpad.realtime.errors import SteerpadError

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_RATE = 48000


def render(bundle_dir: Path, preset_path: Path, midi: Path, out: Path) -> tuple[Path, Path, dict]:
    """The bounce and its feature frames: (wav, jsonl, counters)."""
    import soundfile as sf

    from steerpad.realtime import oscfeed
    from steerpad.realtime.bounce import bounce, read_performance
    from steerpad.realtime.bundle import load_bundle
    from steerpad.realtime.presets import load_preset

    bundle = load_bundle(bundle_dir)
    preset = load_preset(preset_path)
    events = read_performance(midi, SAMPLE_RATE, preset.controller.cc14)
    out.mkdir(parents=True, exist_ok=True)
    wav, jsonl = out / "demo.wav", out / "demo.jsonl"
    file = oscfeed.FeatureFile(jsonl)
    feed = oscfeed.BounceFeed(oscfeed.DEFAULT_RATE, file, None)
    from rich.progress import Progress

    try:
        with Progress(transient=True) as bar:
            task = bar.add_task("demo: rendering", total=None)
            audio, counters = bounce(bundle, preset, events, SAMPLE_RATE, 256, on_block=feed,
                                     progress=lambda d, n: bar.update(task, completed=d, total=n))
    except BaseException:
        file.abort()
        raise
    file.close()
    tmp = wav.with_name(wav.name + ".tmp")
    sf.write(str(tmp), audio, SAMPLE_RATE, subtype="FLOAT", format="WAV")
    tmp.replace(wav)
    counters["seconds"] = audio.shape[0] / SAMPLE_RATE
    counters["events"] = len(events)
    counters["peak_dbfs"] = float(20 * np.log10(max(float(np.abs(audio).max()), 1e-9)))
    return wav, jsonl, counters


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
    ax[2].legend(loc="upper left", ncol=len(lanes), fontsize=8)
    fig.suptitle(f"steerpad demo: {wav.name}")
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return png


def play(wav: Path) -> str:
    """Plays the bounce on the default output device; returns what happened, in words."""
    try:
        import sounddevice as sd
        import soundfile as sf
    except OSError as e:  # PortAudio missing
        return f"not played (no audio library: {e})"
    try:
        device = sd.query_devices(kind="output")
    except (sd.PortAudioError, ValueError):
        return "not played: no audio output device"
    audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    try:
        sd.play(audio, sr)
        sd.wait()
    except sd.PortAudioError as e:
        return f"not played on {device['name']}: {e}"
    return f"played on {device['name']}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=ROOT / "models" / "default")
    ap.add_argument("--preset", type=Path, default=ROOT / "presets" / "default.toml")
    ap.add_argument("--midi", type=Path, default=ROOT / "presets" / "demo.mid")
    ap.add_argument("--out", type=Path, default=ROOT / "out")
    ap.add_argument("--no-play", action="store_true", help="do not play the bounce")
    args = ap.parse_args(argv)
    try:
        if not args.midi.is_file():
            raise SteerpadError(f"{args.midi}: no such MIDI file")
        wav, jsonl, counters = render(args.bundle, args.preset, args.midi, args.out)
        png = plot(wav, jsonl, args.out / "demo.png")
    except SteerpadError as e:
        print(f"steerpad demo: error: {e}", file=sys.stderr)
        return 2
    print(f"steerpad demo: {counters['seconds']:.1f} s, {counters['events']} MIDI events, "
          f"{counters['renders']} renders, peak {counters['peak_dbfs']:.1f} dBFS")
    print(f"  audio     {wav}")
    print(f"  picture   {png}")
    print(f"  features  {jsonl}  (scripts/osc_monitor --replay {jsonl} sends them over OSC)")
    if not args.no_play:
        print(f"  {play(wav)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
