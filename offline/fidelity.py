"""`steerpad eval BUNDLE --data DIR... --out DIR --fidelity`: how close the bundle's VAE gets to
the one-shots it reconstructs, next to Opus at 24 and 48 kbps on the same clips.

Each clip is read as `steerpad ingest` reads it for this bundle (rate, channels, trimmed and cut
to the bundle's max_frames latent frames), encoded and decoded by the bundle's own ONNX models
(what a pad plays in resynthesis mode with the knobs centred), and round-tripped through
`opusenc --bitrate K` / `opusdec --rate R --float` (Debian's opus-tools). Per clip, against the
source (`MEASURES`):

    mel_db     mel-spectrogram L1 in dB (64 mels, n_fft 2048, hop 512, channel mean; power in
               dB re. the source's peak, floored 80 dB below it): the spectral envelope
    band_db    the same on a third-octave band envelope (50 Hz up, n_fft 4096, hop 512): level,
               decay and tilt per band, as a listener hears them
    onset_r    correlation of the onset-strength envelopes (librosa, hop 512): attacks
    mrstft     multi-resolution STFT distance (spectral convergence + log-magnitude L1 over
               2048 ... 64-sample FFTs, mid/side; the VAE's own training loss,
               offline/losses.py): fine structure, partials and noise

`fidelity.json` holds every system's medians and per-clip values, `fidelity.md` the table, and
`spectrograms.png` a grid: one row per clip (up to GRID_ROWS), source | VAE | Opus 24 kbps.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from steerpad.realtime.errors import SteerpadError

MEASURES = ("mel_db", "band_db", "onset_r", "mrstft")
LABELS = {"mel_db": "mel L1 (dB)", "band_db": "third-octave band error (dB)",
          "onset_r": "onset-envelope r", "mrstft": "MR-STFT distance"}
LOWER_IS_BETTER = {"mel_db": True, "band_db": True, "onset_r": False, "mrstft": True}
CODECS = {"opus_24": 24, "opus_48": 48}
"""Reference codecs: name -> Opus bitrate in kbps."""
GRID_ROWS = 6
FLOOR_DB = 80.0
HOP = 512


def _db(power: np.ndarray, ref: float) -> np.ndarray:
    return np.maximum(10 * np.log10(np.maximum(power, 1e-30) / ref), -FLOOR_DB)


def third_octave_matrix(n_fft: int, sample_rate: int, low: float = 50.0) -> np.ndarray:
    """[n_fft // 2 + 1, B] 0/1 bin-to-band matrix of the third-octave bands (centres
    1000 * 2 ** (k / 3)) from `low` up to Nyquist; bands with no bin of their own are left out."""
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    k = np.arange(np.ceil(3 * np.log2(low / 1000)), np.floor(3 * np.log2(sample_rate / 2 / 1000)) + 1)
    centres = 1000 * 2.0 ** (k / 3)
    lo, hi = centres * 2 ** (-1 / 6), np.minimum(centres * 2 ** (1 / 6), sample_rate / 2 + 1)
    m = ((freqs[:, None] >= lo) & (freqs[:, None] < hi)).astype(np.float64)
    return m[:, m.sum(axis=0) > 0]


def band_envelope(mono: np.ndarray, sample_rate: int) -> np.ndarray:
    """Third-octave band power per frame [bands, frames] of a mono signal."""
    import librosa

    power = np.abs(librosa.stft(mono, n_fft=4096, hop_length=HOP)) ** 2
    return third_octave_matrix(4096, sample_rate).T @ power


def measure(source: np.ndarray, output: np.ndarray, sample_rate: int) -> dict[str, float]:
    """MEASURES of output [C, T] against source [C, T] (same shape)."""
    import torch

    from steerpad.offline.evaluate import fidelity, fidelity_features
    from steerpad.offline.losses import MultiResolutionSTFTLoss

    onset_r, mel_db = fidelity(fidelity_features(source, sample_rate), output, sample_rate)
    bx, by = band_envelope(source.mean(axis=0), sample_rate), band_envelope(output.mean(axis=0), sample_rate)
    ref = max(float(bx.max()), 1e-20)
    band_db = float(np.abs(_db(bx, ref) - _db(by, ref)).mean())
    with torch.no_grad():
        mr = float(MultiResolutionSTFTLoss()(torch.from_numpy(output[None]), torch.from_numpy(source[None])))
    return {"mel_db": mel_db, "band_db": band_db, "onset_r": onset_r, "mrstft": mr}


def opus_round_trip(audio: np.ndarray, sample_rate: int, kbps: int, tmp: Path) -> np.ndarray:
    """audio [C, T] through Opus at `kbps` and back -> float32 [C, T] (opusdec drops the
    encoder's pre-skip, so the two line up sample for sample)."""
    import soundfile as sf

    src, enc, dec = tmp / "in.wav", tmp / "x.opus", tmp / "out.wav"
    sf.write(src, audio.T, sample_rate, subtype="FLOAT")
    for cmd in (["opusenc", "--quiet", "--bitrate", str(kbps), str(src), str(enc)],
                ["opusdec", "--quiet", "--rate", str(sample_rate), "--float", str(enc), str(dec)]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SteerpadError(f"{cmd[0]} failed on a clip ({done.stderr.strip()[:200]}): "
                                "check the opus-tools installation")
    y, _ = sf.read(dec, dtype="float32", always_2d=True)
    out = np.zeros_like(audio)
    n = min(audio.shape[1], y.shape[0])
    out[:, :n] = y[:n, :audio.shape[0]].T
    return out


def check_codecs() -> None:
    missing = [t for t in ("opusenc", "opusdec") if shutil.which(t) is None]
    if missing:
        raise SteerpadError(f"--fidelity compares against Opus, but {' and '.join(missing)} "
                            "is not installed: install Debian's opus-tools (apt install opus-tools; "
                            "./scripts/test installs it)")


def fidelity_report(bundle_path: Path, data: list[Path], out: Path, max_clips: int = 16,
                    log=print) -> dict:
    """Measure the bundle's VAE and the reference codecs on clips from `data`; write
    fidelity.json, fidelity.md and spectrograms.png into `out`."""
    from steerpad.offline.evaluate import read_clips
    from steerpad.realtime.bundle import load_bundle
    from steerpad.realtime.outputs import claim_output, mark_run

    t0 = time.perf_counter()
    check_codecs()
    claim_output(out, "run:eval", inputs=[bundle_path, *data], resume=True)
    mark_run(out, "eval")
    bundle = load_bundle(bundle_path)
    clips = read_clips(data, bundle, max_clips, log)
    sr = bundle.sample_rate
    systems: dict[str, list[dict]] = {"vae": [], **{name: [] for name in CODECS}}
    grid: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
    with tempfile.TemporaryDirectory(prefix="steerpad-fidelity-") as tmp:
        for name, audio in clips:
            recon = bundle.decode(bundle.encode(audio))[0][:, :audio.shape[1]]
            outputs = {"vae": recon, **{c: opus_round_trip(audio, sr, kbps, Path(tmp))
                                        for c, kbps in CODECS.items()}}
            for system, y in outputs.items():
                systems[system].append({"clip": name, **measure(audio, y, sr)})
            if len(grid) < GRID_ROWS:
                grid.append((Path(name).name, audio, recon, outputs["opus_24"]))
    report = {"bundle": str(bundle_path), "clips": [n for n, _ in clips], "sample_rate": sr,
              "systems": {s: {"median": {m: float(np.median([r[m] for r in rows])) for m in MEASURES},
                              "per_clip": rows} for s, rows in systems.items()},
              "seconds": time.perf_counter() - t0}
    (out / "fidelity.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "fidelity.md").write_text(table(report) + "\n")
    plot_grid(grid, sr, out / "spectrograms.png")
    return report


def table(report: dict) -> str:
    """The medians as a markdown table, one column per system."""
    names = {"vae": "this VAE", "opus_24": "Opus 24 kbps", "opus_48": "Opus 48 kbps"}
    systems = report["systems"]
    head = "| median over " + f"{len(report['clips'])} one-shots | " + " | ".join(
        names.get(s, s) for s in systems) + " |"
    rows = [head, "|---" * (len(systems) + 1) + "|"]
    for m in MEASURES:
        rows.append(f"| {LABELS[m]} | " + " | ".join(
            f"{systems[s]['median'][m]:.2f}" for s in systems) + " |")
    return "\n".join(rows)


def plot_grid(rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], sample_rate: int,
              path: Path) -> None:
    import librosa
    import matplotlib.pyplot as plt

    from steerpad.offline.plots import save_figure  # (Agg, set there)

    if not rows:
        return
    fig, axes = plt.subplots(len(rows), 3, figsize=(11, 2.2 * len(rows)), squeeze=False)
    for r, (name, *signals) in enumerate(rows):
        specs = [librosa.feature.melspectrogram(y=s.mean(axis=0), sr=sample_rate, n_fft=2048,
                                                hop_length=256, n_mels=96) for s in signals]
        ref = max(float(specs[0].max()), 1e-20)
        for c, (title, spec) in enumerate(zip(("source", "VAE", "Opus 24 kbps"), specs)):
            ax = axes[r, c]
            ax.imshow(_db(spec, ref), origin="lower", aspect="auto", cmap="magma",
                      vmin=-FLOOR_DB, vmax=0)
            ax.set_title(f"{name}: {title}" if c == 0 else title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    save_figure(fig, path, 90)
