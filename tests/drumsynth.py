"""Synthetic drum one-shots with KNOWN parameters, and kit folders written from them.

A ground truth for tests: every hit is rendered from explicit parameters (pitch, decay,
brightness, ...), so a test can check that ingest labels it right, that a VAE keeps it, or that a
"brightness" direction moves the spectral centroid the way the parameter does.

Conventions, shared by every `render_*` function:
- returns mono float32 `[T]`, onset at sample 0 (no leading silence), peak |x| == `gain`;
- `decay_s` is a T60: the amplitude envelope falls 60 dB in `decay_s` seconds; the clip is
  `length_s` long (default 1.25 * the longest decay, at least 50 ms), so its tail is ~-75 dB;
- "brightness" is a filter cutoff in Hz (Butterworth magnitude, applied zero-phase in the
  frequency domain to the noise BEFORE the envelope, so the onset stays sharp): raising it raises
  the spectral centroid monotonically;
- `seed` fixes the noise; the same arguments always give the same samples.

numpy only (plus soundfile to write files). `write_kits` writes several kit folders (one
Hydrogen kit with drumkit.xml and velocity layers, others plain named files in mixed formats,
rates and channel counts) and returns one dict per file.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

SAMPLE_RATE = 44100
LABELS = ("kick", "snare", "hat", "tom", "clap", "rim", "cymbal")

# Parameter ranges random_params draws from (uniform; "log" ones log-uniform).
PARAM_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "kick": {"pitch_hz": (40.0, 90.0), "decay_s": (0.2, 0.9), "sweep": (1.5, 5.0),
             "click": (0.0, 0.5)},
    "snare": {"tone_hz": (150.0, 280.0), "brightness_hz": (2000.0, 12000.0),
              "noise_mix": (0.4, 0.85), "decay_s": (0.12, 0.4)},
    "hat": {"brightness_hz": (4000.0, 16000.0), "decay_s": (0.04, 0.12)},
    "open_hat": {"brightness_hz": (4000.0, 16000.0), "decay_s": (0.3, 0.9)},
    "tom": {"pitch_hz": (80.0, 260.0), "decay_s": (0.25, 0.7)},
    "clap": {"brightness_hz": (1000.0, 3000.0), "decay_s": (0.1, 0.3)},
    "rim": {"pitch_hz": (1200.0, 2200.0), "decay_s": (0.02, 0.06)},
    "cymbal": {"brightness_hz": (5000.0, 16000.0), "decay_s": (0.8, 1.3)},
}
_LOG_PARAMS = {"pitch_hz", "brightness_hz", "tone_hz"}


# ---------------------------------------------------------------- building blocks

def _t(length_s: float, sample_rate: int) -> np.ndarray:
    return np.arange(max(1, round(length_s * sample_rate))) / sample_rate


def _env(t: np.ndarray, decay_s: float) -> np.ndarray:
    """Exponential envelope falling 60 dB in `decay_s` seconds (a T60)."""
    return 10.0 ** (-3.0 * t / max(decay_s, 1e-4))


def _length(length_s: float | None, *decays: float) -> float:
    return float(length_s) if length_s is not None else max(0.05, 1.25 * max(decays))


def _filtered_noise(n: int, sample_rate: int, rng: np.random.Generator,
                    lowpass_hz: float | None = None, highpass_hz: float | None = None,
                    order: int = 2) -> np.ndarray:
    """White noise through zero-phase Butterworth magnitude responses, unit RMS. `[n]`"""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sample_rate)
    gain = np.ones_like(f)
    if lowpass_hz is not None:
        gain /= np.sqrt(1.0 + (f / lowpass_hz) ** (2 * order))
    if highpass_hz is not None:
        safe = np.maximum(f, 1e-9)
        gain /= np.sqrt(1.0 + (highpass_hz / safe) ** (2 * order))
    out = np.fft.irfft(spec * gain, n)
    return out / (np.sqrt(np.mean(out**2)) + 1e-12)


def _sine_sweep(t: np.ndarray, pitch_hz: float, sweep: float, sweep_s: float) -> np.ndarray:
    """sin of a pitch falling from pitch*(1+sweep) to pitch with time constant sweep_s."""
    # f(t) = p (1 + s e^{-t/τ})  ->  phase = 2π p (t + s τ (1 - e^{-t/τ}))
    phase = 2 * np.pi * pitch_hz * (t + sweep * sweep_s * (1.0 - np.exp(-t / sweep_s)))
    return np.sin(phase)


def _finish(x: np.ndarray, gain: float, sample_rate: int) -> np.ndarray:
    """0.3 ms fade-in (click-free but onset stays at 0), peak-normalise to `gain`."""
    ramp = min(len(x), max(1, int(0.0003 * sample_rate)))
    x = x.copy()
    x[:ramp] *= np.linspace(0.0, 1.0, ramp, endpoint=False) + 1.0 / ramp
    peak = float(np.max(np.abs(x)))
    return (x * (gain / peak if peak > 0 else 0.0)).astype(np.float32)


# ---------------------------------------------------------------- single hits

def render_kick(pitch_hz: float = 55.0, decay_s: float = 0.5, sweep: float = 3.0,
                sweep_s: float = 0.03, click: float = 0.2, gain: float = 0.9,
                sample_rate: int = SAMPLE_RATE, length_s: float | None = None,
                seed: int = 0) -> np.ndarray:
    """Kick: a sine falling from pitch*(1+sweep) to `pitch_hz`, T60 `decay_s`, plus a 3 ms
    noise click of relative level `click`. `[T]`"""
    t = _t(_length(length_s, decay_s), sample_rate)
    rng = np.random.default_rng(seed)
    body = _sine_sweep(t, pitch_hz, sweep, sweep_s) * _env(t, decay_s)
    clk = _filtered_noise(len(t), sample_rate, rng, lowpass_hz=6000.0) * _env(t, 0.003)
    return _finish(body + click * clk, gain, sample_rate)


def render_tom(pitch_hz: float = 120.0, decay_s: float = 0.4, gain: float = 0.9,
               sample_rate: int = SAMPLE_RATE, length_s: float | None = None,
               seed: int = 0) -> np.ndarray:
    """Tom: a sine settling to `pitch_hz` (small sweep) with a quieter partial at 1.5x and a
    short noise skin. `[T]`"""
    t = _t(_length(length_s, decay_s), sample_rate)
    rng = np.random.default_rng(seed)
    body = _sine_sweep(t, pitch_hz, 0.4, 0.05) * _env(t, decay_s)
    body += 0.25 * _sine_sweep(t, 1.5 * pitch_hz, 0.3, 0.05) * _env(t, 0.5 * decay_s)
    skin = _filtered_noise(len(t), sample_rate, rng, lowpass_hz=4000.0) * _env(t, 0.03)
    return _finish(body + 0.15 * skin, gain, sample_rate)


def render_snare(tone_hz: float = 190.0, brightness_hz: float = 6000.0,
                 noise_mix: float = 0.6, decay_s: float = 0.25, gain: float = 0.9,
                 sample_rate: int = SAMPLE_RATE, length_s: float | None = None,
                 seed: int = 0) -> np.ndarray:
    """Snare: a two-partial tone (`tone_hz`, 1.6x) decaying in 0.4*decay_s, plus noise
    high-passed at 300 Hz and low-passed at `brightness_hz`, T60 `decay_s`; `noise_mix` in
    [0, 1] is the noise share. `[T]`"""
    t = _t(_length(length_s, decay_s), sample_rate)
    rng = np.random.default_rng(seed)
    tone = (np.sin(2 * np.pi * tone_hz * t) + 0.5 * np.sin(2 * np.pi * 1.6 * tone_hz * t))
    tone = tone / 1.5 * _env(t, 0.4 * decay_s)
    noise = _filtered_noise(len(t), sample_rate, rng, lowpass_hz=brightness_hz,
                            highpass_hz=300.0) * _env(t, decay_s)
    return _finish((1 - noise_mix) * tone + noise_mix * 0.5 * noise, gain, sample_rate)


# 808-style metallic partials (Hz) for hats and cymbals.
_METAL = (205.3, 304.4, 369.6, 522.7, 540.0, 800.0)


def _metal(t: np.ndarray, scale: float) -> np.ndarray:
    return sum(np.sign(np.sin(2 * np.pi * f * scale * t)) for f in _METAL) / len(_METAL)


def render_hat(brightness_hz: float = 8000.0, decay_s: float = 0.06, gain: float = 0.7,
               sample_rate: int = SAMPLE_RATE, length_s: float | None = None,
               seed: int = 0) -> np.ndarray:
    """Closed hi-hat: noise plus square-wave metal, band-limited to [brightness/4, brightness]
    (4th order), T60 `decay_s` (closed ~40-120 ms). `[T]`"""
    t = _t(_length(length_s, decay_s), sample_rate)
    rng = np.random.default_rng(seed)
    n = len(t)
    src = rng.standard_normal(n) + 0.7 * _metal(t, 1.0)
    spec = np.fft.rfft(src)
    f = np.maximum(np.fft.rfftfreq(n, 1.0 / sample_rate), 1e-9)
    band = 1.0 / np.sqrt(1 + (f / brightness_hz) ** 8) / np.sqrt(1 + (brightness_hz / 4 / f) ** 8)
    x = np.fft.irfft(spec * band, n)
    return _finish(x * _env(t, decay_s), gain, sample_rate)


def render_open_hat(brightness_hz: float = 8000.0, decay_s: float = 0.5, gain: float = 0.7,
                    sample_rate: int = SAMPLE_RATE, length_s: float | None = None,
                    seed: int = 0) -> np.ndarray:
    """Open hi-hat: `render_hat` with a long decay (~0.3-0.9 s). `[T]`"""
    return render_hat(brightness_hz, decay_s, gain, sample_rate, length_s, seed)


def render_cymbal(brightness_hz: float = 9000.0, decay_s: float = 1.0, gain: float = 0.7,
                  sample_rate: int = SAMPLE_RATE, length_s: float | None = None,
                  seed: int = 0) -> np.ndarray:
    """Crash/ride-like cymbal: denser metal (two scalings) and noise, band [brightness/6,
    brightness], a 5 ms bright attack, T60 `decay_s`. `[T]`"""
    t = _t(_length(length_s, decay_s), sample_rate)
    rng = np.random.default_rng(seed)
    n = len(t)
    src = rng.standard_normal(n) + 0.5 * (_metal(t, 1.0) + _metal(t, 1.37))
    spec = np.fft.rfft(src)
    f = np.maximum(np.fft.rfftfreq(n, 1.0 / sample_rate), 1e-9)
    band = 1.0 / np.sqrt(1 + (f / brightness_hz) ** 4) / np.sqrt(1 + (brightness_hz / 6 / f) ** 4)
    x = np.fft.irfft(spec * band, n)
    return _finish(x * (_env(t, decay_s) + 0.5 * _env(t, 0.005)), gain, sample_rate)


def render_clap(brightness_hz: float = 1500.0, decay_s: float = 0.2, n_bursts: int = 4,
                spacing_s: float = 0.011, gain: float = 0.8, sample_rate: int = SAMPLE_RATE,
                length_s: float | None = None, seed: int = 0) -> np.ndarray:
    """Hand clap: `n_bursts` short noise bursts `spacing_s` apart, then a tail of T60
    `decay_s`; noise band-passed around `brightness_hz` (one octave each side). `[T]`"""
    length = _length(length_s, decay_s + n_bursts * spacing_s)
    t = _t(length, sample_rate)
    rng = np.random.default_rng(seed)
    noise = _filtered_noise(len(t), sample_rate, rng, lowpass_hz=2 * brightness_hz,
                            highpass_hz=brightness_hz / 2)
    env = np.zeros_like(t)
    for b in range(n_bursts):
        tb = t - b * spacing_s
        env += np.where(tb >= 0, _env(np.maximum(tb, 0), 0.02), 0.0)
    tail_t = t - (n_bursts - 1) * spacing_s
    env += 0.6 * np.where(tail_t >= 0, _env(np.maximum(tail_t, 0), decay_s), 0.0)
    return _finish(noise * env, gain, sample_rate)


def render_rim(pitch_hz: float = 1700.0, decay_s: float = 0.04, gain: float = 0.8,
               sample_rate: int = SAMPLE_RATE, length_s: float | None = None,
               seed: int = 0) -> np.ndarray:
    """Rim shot / stick: a sine at `pitch_hz` plus one at 0.55x, T60 `decay_s`, and a 1 ms
    broadband click. `[T]`"""
    t = _t(_length(length_s, decay_s, 0.05), sample_rate)
    rng = np.random.default_rng(seed)
    tone = np.sin(2 * np.pi * pitch_hz * t) + 0.6 * np.sin(2 * np.pi * 0.55 * pitch_hz * t)
    clk = _filtered_noise(len(t), sample_rate, rng, highpass_hz=1000.0) * _env(t, 0.001)
    return _finish(tone * _env(t, decay_s) + 0.5 * clk, gain, sample_rate)


_RENDER = {
    "kick": render_kick, "snare": render_snare, "hat": render_hat, "open_hat": render_open_hat,
    "tom": render_tom, "clap": render_clap, "rim": render_rim, "cymbal": render_cymbal,
}


def render(kind: str, params: dict, sample_rate: int = SAMPLE_RATE, seed: int = 0,
           gain: float | None = None) -> np.ndarray:
    """Render one hit. `kind` is a label in LABELS or "open_hat"; `params` are keyword
    arguments of that kind's render_* function. Mono float32 `[T]`."""
    fn = _RENDER.get(kind)
    if fn is None:
        raise ValueError(f"unknown drum kind {kind!r}; choose one of {tuple(_RENDER)}")
    extra = {} if gain is None else {"gain": gain}
    return fn(**params, **extra, sample_rate=sample_rate, seed=seed)


def random_params(kind: str, rng: np.random.Generator) -> dict:
    """Draw parameters for `kind` from PARAM_RANGES (log-uniform for frequencies)."""
    out = {}
    for name, (lo, hi) in PARAM_RANGES[kind].items():
        if name in _LOG_PARAMS:
            out[name] = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        else:
            out[name] = float(rng.uniform(lo, hi))
    return out


def loudness_db(x: np.ndarray) -> float:
    """RMS level in dBFS of a mono or `[C, T]` signal over its whole length."""
    x = np.asarray(x, dtype=np.float64)
    return float(10 * np.log10(max(np.mean(x**2), 1e-20)))


def spectral_centroid(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Power-weighted mean frequency (Hz) of a mono or `[C, T]` signal: a brightness check."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0)
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1.0 / sample_rate)
    return float((f * p).sum() / max(p.sum(), 1e-20))


# ---------------------------------------------------------------- kit folders

# (format, soundfile subtype, suffix) cycled through the plain kits.
_FORMATS = (("WAV", "PCM_16", ".wav"), ("FLAC", "PCM_16", ".flac"), ("OGG", "VORBIS", ".ogg"),
            ("AIFF", "PCM_16", ".aiff"), ("WAV", "FLOAT", ".wav"), ("FLAC", "PCM_24", ".flac"))
_RATES = (44100, 48000, 22050, 32000)

# Names the plain kits use per label (as real sample packs do: sonic-pi, lmms, ...).
_PLAIN_NAMES = {
    "kick": ("kick", "bassdrum", "drum_bass_hard", "bd", "kick_soft"),
    "snare": ("snare", "drum_snare_hard", "sd", "snare_rock"),
    "hat": ("hihat_closed", "drum_cymbal_closed", "hh_closed", "hat_open", "hihat_opened"),
    "tom": ("tom_hi", "drum_tom_lo_hard", "tom_low", "floor_tom"),
    "clap": ("clap", "handclap", "hand_clap"),
    "rim": ("rim", "rimshot", "sidestick"),
    "cymbal": ("crash", "ride", "drum_splash_hard", "cymbal"),
}
# Hydrogen instrument names per label; the files are named neutrally (label only in the XML).
_HYDROGEN_NAMES = {
    "kick": "Kick", "snare": "Snare Rock", "hat": "Closed HH", "tom": "Tom Mid",
    "clap": "Hand Clap", "rim": "Stick", "cymbal": "Crash Jazz",
}
HYDROGEN_LAYER_GAINS = (0.35, 0.65, 0.95)


def _write(path: Path, mono: np.ndarray, sample_rate: int, channels: int, fmt: tuple) -> None:
    import soundfile as sf

    if channels == 1:
        data = mono
    else:
        # Slightly different gain per channel: a real (not bit-identical) multichannel file.
        data = np.stack([mono * (1.0 - 0.1 * c / channels) for c in range(channels)], axis=1)
    sf.write(str(path), data, sample_rate, format=fmt[0], subtype=fmt[1])


def _hydrogen_xml(name: str, instruments: list[tuple[str, list[tuple[str, float, float]]]]) -> str:
    inst = []
    for i, (iname, layers) in enumerate(instruments):
        lay = "".join(
            f"\n     <layer>\n      <filename>{escape(fn)}</filename>"
            f"\n      <min>{lo:g}</min>\n      <max>{hi:g}</max>\n      <gain>1</gain>"
            "\n      <pitch>0</pitch>\n     </layer>"
            for fn, lo, hi in layers)
        inst.append(
            f"\n  <instrument>\n   <id>{i}</id>\n   <name>{escape(iname)}</name>"
            "\n   <volume>1</volume>"
            f"\n   <instrumentComponent>\n    <component_id>0</component_id>\n    <gain>1</gain>"
            f"{lay}\n   </instrumentComponent>\n  </instrument>")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<drumkit_info '
            'xmlns="http://www.hydrogen-music.org/drumkit">\n'
            f" <name>{escape(name)}</name>\n <author>drumsynth</author>\n <license>CC0</license>\n"
            " <componentList>\n  <drumkitComponent>\n   <id>0</id>\n   <name>Main</name>\n"
            "  </drumkitComponent>\n </componentList>\n <instrumentList>"
            + "".join(inst) + "\n </instrumentList>\n</drumkit_info>\n")


def write_kits(root: Path | str, n_kits: int = 3, hits_per_kit: int = 7, seed: int = 0,
               sample_rate: int = SAMPLE_RATE, labels: tuple[str, ...] = LABELS) -> list[dict]:
    """Write `n_kits` kit folders under `root` and return one dict per written file.

    Kit 0 (`root/SynthHydrogenKit`) is a Hydrogen kit: `drumkit.xml` names `hits_per_kit`
    instruments; each has len(HYDROGEN_LAYER_GAINS) velocity layers that are scaled copies of one
    hit; files are neutral names (`inst03_v2.flac`), so only the XML tells the label. Kits
    1.. (`root/synth_kit_<k>`) are plain folders of named files (`kick_01.wav`,
    `drum_cymbal_closed_03.ogg`, ...) in cycling formats (wav 16/float, flac 16/24, ogg, aiff),
    rates from (44100, 48000, 22050, 32000) and 1 or 2 channels; every third one starts with
    10-60 ms of silence. Labels cycle through `labels` (default LABELS) in a seeded order.

    Each dict: path (str), kit, label (the canonical ingest label), kind (render kind: a label or
    "open_hat"), params (render_* keyword arguments), gain (peak, linear), seed (noise seed),
    sample_rate, channels, format (suffix), lead_s (leading silence written), source (int: the
    hit it was rendered from; velocity layers share it), hydrogen (bool), instrument (Hydrogen
    instrument name or None), layer (layer index or None).
    `sample_rate` is the rate of the Hydrogen kit; the plain kits use their own mix of rates.
    """
    if n_kits < 1 or hits_per_kit < 1:
        raise ValueError("write_kits needs n_kits >= 1 and hits_per_kit >= 1")
    root = Path(root)
    rng = np.random.default_rng(seed)
    out: list[dict] = []
    source = 0
    for k in range(n_kits):
        hydrogen = k == 0
        kit = "SynthHydrogenKit" if hydrogen else f"synth_kit_{k}"
        kit_dir = root / kit
        kit_dir.mkdir(parents=True, exist_ok=True)
        order = list(rng.permutation(len(labels)))
        instruments = []
        for h in range(hits_per_kit):
            label = labels[order[h % len(labels)]]
            kind = "open_hat" if label == "hat" and rng.random() < 0.4 else label
            params = random_params(kind, rng)
            noise_seed = int(rng.integers(0, 2**31 - 1))
            common = {"kit": kit, "label": label, "kind": kind, "params": params,
                      "seed": noise_seed, "source": source}
            if hydrogen:
                iname = _HYDROGEN_NAMES[label] + ("" if h < len(labels) else f" {h}")
                layers = []
                n_layers = len(HYDROGEN_LAYER_GAINS)
                for v, g in enumerate(HYDROGEN_LAYER_GAINS):
                    fname = f"inst{h:02d}_v{v + 1}.flac"
                    x = render(kind, params, sample_rate, noise_seed, gain=g)
                    _write(kit_dir / fname, x, sample_rate, 2, ("FLAC", "PCM_16", ".flac"))
                    layers.append((fname, v / n_layers, (v + 1) / n_layers))
                    out.append({**common, "path": str(kit_dir / fname), "gain": g,
                                "sample_rate": sample_rate, "channels": 2, "format": ".flac",
                                "lead_s": 0.0, "hydrogen": True, "instrument": iname, "layer": v})
                instruments.append((iname, layers))
            else:
                names = _PLAIN_NAMES[label]
                if kind == "open_hat":
                    base = "hihat_opened" if h % 2 else "hat_open"
                else:
                    base = names[int(rng.integers(len(names)))]
                    if label == "hat" and "open" in base:
                        base = "hihat_closed"
                fmt = _FORMATS[(k + h) % len(_FORMATS)]
                rate = _RATES[(k * 3 + h) % len(_RATES)]
                channels = 1 + (h // 2 + k) % 2
                lead_s = float(rng.uniform(0.01, 0.06)) if h % 3 == 2 else 0.0
                g = float(rng.uniform(0.4, 0.95))
                x = render(kind, params, rate, noise_seed, gain=g)
                x = np.concatenate([np.zeros(round(lead_s * rate), np.float32), x])
                path = kit_dir / f"{base}_{h + 1:02d}{fmt[2]}"
                _write(path, x, rate, channels, fmt)
                out.append({**common, "path": str(path), "gain": g, "sample_rate": rate,
                            "channels": channels, "format": fmt[2], "lead_s": lead_s,
                            "hydrogen": False, "instrument": None, "layer": None})
            source += 1
        if hydrogen:
            (kit_dir / "drumkit.xml").write_text(_hydrogen_xml(kit, instruments), encoding="utf-8")
    return out
