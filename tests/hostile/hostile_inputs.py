"""Builds a folder of hostile inputs for every steerpad verb, as a careless user or an attacker
would hand them over: symlink loops, FIFOs, absurd levels, DC, undecodable names, giant and deep
manifests, broken stores, absurd MIDI files and presets that point at traps.

`build(root)` writes the world and returns the cases: (id, argv, the output path the command may
write or None, the exit codes allowed). tests/hostile/test_hostile.py runs them all.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BUNDLE = REPO / "models" / "default"
FIXTURE_VAE = REPO / "tests" / "fixtures" / "synth_vae"
SR = 44100


@dataclass
class Case:
    id: str
    argv: list[str]
    out: Path | None = None
    """The one path the command may create or change (None: it may change nothing)."""
    codes: tuple[int, ...] = (0, 1, 2)
    """Exit codes this case may end with (always a subset of 0, 1, 2)."""


def _hit(seed: int, kind: str = "kick") -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.4 * SR)) / SR
    env = np.exp(-t / 0.08)
    if kind == "kick":
        x = np.sin(2 * np.pi * (50 + 80 * np.exp(-t / 0.03)) * t)
    else:
        x = rng.standard_normal(len(t))
    return (0.7 * env * x).astype(np.float32)


def _kits(root: Path) -> tuple[Path, Path]:
    good = root / "kits" / "good"
    for k, kit in enumerate(("kitA", "kitB")):
        (good / kit).mkdir(parents=True)
        sf.write(good / kit / "kick.wav", _hit(k), SR)
        sf.write(good / kit / "snare.wav", _hit(10 + k, "snare"), SR)

    evil = root / "kits" / "evil"
    (evil / "kit").mkdir(parents=True)
    sf.write(evil / "kit" / "kick.wav", _hit(3), SR)
    (evil / "kit" / "loop").symlink_to(".")
    (evil / "kit" / "up").symlink_to("..")
    (evil / "a.wav").symlink_to("b.wav")
    (evil / "b.wav").symlink_to("a.wav")
    (evil / "dangling.wav").symlink_to("nowhere.wav")
    os.mkfifo(evil / "pipe.wav")
    (evil / "folder.wav").mkdir()
    sf.write(evil / "loud.wav", _hit(4) * 1e30, SR, subtype="FLOAT")
    sf.write(evil / "dc.wav", np.full(SR, 0.5, np.float32), SR, subtype="FLOAT")
    sf.write(os.fsencode(evil / "kit") + b"/snare\xff.wav", _hit(5, "snare"), SR)
    (evil / "empty.wav").write_bytes(b"")
    (evil / "header_only.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    (evil / "text.wav").write_text("not audio\n" * 100)
    sf.write(evil / "nan.wav", np.full(1000, np.nan, np.float32), SR, subtype="FLOAT")
    return good, evil


def _bundle_like(root: Path, name: str, edit=None, manifest_text: str | None = None) -> Path:
    """A copy of the default bundle whose payload files are symlinks, with its manifest edited."""
    b = root / "bundles" / name
    b.mkdir(parents=True)
    for p in DEFAULT_BUNDLE.iterdir():
        if p.name != "manifest.json":
            (b / p.name).symlink_to(p)
    if manifest_text is None:
        manifest = json.loads((DEFAULT_BUNDLE / "manifest.json").read_text())
        if edit is not None:
            edit(manifest)
        manifest_text = json.dumps(manifest)
    (b / "manifest.json").write_text(manifest_text)
    return b


def _bundles(root: Path) -> list[Path]:
    out = [
        _bundle_like(root, "rate_1e12", lambda m: m["audio"].update(sample_rate=10**12)),
        _bundle_like(root, "hop_2p40", lambda m: m["audio"].update(hop=2**40)),
        _bundle_like(root, "alpha_nan", manifest_text=(DEFAULT_BUNDLE / "manifest.json").read_text()
                     .replace('"alpha_max": ', '"alpha_max": NaN, "x": ', 1)),
        _bundle_like(root, "deep", manifest_text="[" * 200_000 + "]" * 200_000),
        _bundle_like(root, "not_json", manifest_text="{ this is not json"),
        _bundle_like(root, "types", lambda m: m.update(audio=[1, 2, 3])),
    ]
    (root / "bundles" / "empty").mkdir()
    out.append(root / "bundles" / "empty")
    fifo = root / "bundles" / "fifo_manifest"
    fifo.mkdir()
    os.mkfifo(fifo / "manifest.json")
    out.append(fifo)
    return out


def _midi(root: Path) -> dict[str, Path]:
    d = root / "midi"
    d.mkdir()
    good = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    good.tracks.append(track)
    track.append(mido.Message("note_on", channel=9, note=36, velocity=100, time=0))
    track.append(mido.Message("control_change", channel=0, control=70, value=100, time=240))
    track.append(mido.Message("note_on", channel=9, note=38, velocity=100, time=240))
    good.save(d / "good.mid")
    files = {"good": d / "good.mid"}

    raw = (d / "good.mid").read_bytes()
    (d / "tpb0.mid").write_bytes(raw[:12] + b"\x00\x00" + raw[14:])  # ticks per beat 0
    (d / "truncated.mid").write_bytes(raw[: len(raw) // 2])
    (d / "garbage.mid").write_bytes(bytes(range(256)) * 4)
    (d / "empty.mid").write_bytes(b"")
    day = mido.MidiFile(ticks_per_beat=480)
    t = mido.MidiTrack()
    day.tracks.append(t)
    t.append(mido.MetaMessage("set_tempo", tempo=16_000_000, time=0))  # 16 s a beat, the slowest
    t.append(mido.Message("note_on", channel=9, note=36, velocity=100, time=480 * 5400))
    day.save(d / "day.mid")  # one hit a day later: a 24-hour bounce
    os.mkfifo(d / "pipe.mid")
    files.update({n: d / f"{n}.mid" for n in ("tpb0", "truncated", "garbage", "empty", "day", "pipe")})
    return files


def _presets(root: Path) -> dict[str, Path]:
    d = root / "presets"
    d.mkdir()
    (d / "a.wav").symlink_to("b.wav")
    (d / "b.wav").symlink_to("a.wav")
    os.mkfifo(d / "pipe.wav")
    (d / "folder.wav").mkdir()
    out = {}
    for name, sample in (("loop", "a.wav"), ("fifo", "pipe.wav"), ("folder", "folder.wav"),
                         ("missing", "nowhere.wav")):
        text = f'name = "{name}"\ncontroller = "generic"\n[[pads]]\nsample = "{sample}"\n' \
               '[[knobs]]\ndirection = "brighter"\n'
        (d / f"{name}.toml").write_text(text)
        out[name] = d / f"{name}.toml"
    (d / "not_toml.toml").write_text("[[[ nope")
    (d / "deep.toml").write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    out.update(not_toml=d / "not_toml.toml", deep=d / "deep.toml")
    return out


def _stores(root: Path) -> dict[str, Path]:
    d = root / "stores"
    out = {}
    for name, text in (("list", "[]"), ("deep", "[" * 200_000 + "]" * 200_000),
                       ("wrong", json.dumps({"format": "steerpad-ingest", "version": 1}))):
        (d / name).mkdir(parents=True)
        (d / name / "store.json").write_text(text)
        (d / name / "meta.json").write_text(text)
        out[name] = d / name
    return out


def build(root: Path) -> list[Case]:
    """Write the hostile world under `root`; return every case to run against it."""
    good, evil = _kits(root)
    bundles = _bundles(root)
    midi = _midi(root)
    presets = _presets(root)
    stores = _stores(root)
    shutil.copy(REPO / "presets" / "default.toml", root / "default.toml")
    preset = str(REPO / "presets" / "default.toml")
    bundle = str(DEFAULT_BUNDLE)
    out = root / "out"  # where outputs go (a case's own output path may change under it)
    out.mkdir()
    theirs = root / "theirs"
    theirs.mkdir()
    (theirs / "keep.txt").write_text("the user's")
    (root / "theirs.wav").write_bytes(b"RIFF the user's own file")
    (root / "theirs.toml").write_text("# the user's own notes\n")

    cases = [
        Case("ingest-evil-kit", ["ingest", str(evil), "--out", str(out / "s1"), "--no-progress"],
             out / "s1", (0,)),
        Case("ingest-into-itself", ["ingest", str(good), "--out", str(good), "--force"], None, (2,)),
        Case("ingest-force-over-theirs", ["ingest", str(good), "--out", str(theirs), "--force"], None, (2,)),
        Case("ingest-under-a-file", ["ingest", str(good), "--out", str(root / "theirs.wav" / "s")],
             None, (2,)),
        Case("ingest-bad-option", ["ingest", str(good), "--out", str(out / "s2"), "--frames", "0"],
             None, (2,)),
        Case("devices", ["devices"], None, (0,)),
        Case("learn-force-over-theirs", ["learn", "--out", str(root / "theirs.toml"), "--force"],
             None, (2,)),
        Case("export-junk", ["export", "--vae", str(theirs), "--sae", str(theirs), "--steering",
                             str(theirs), "--out", str(out / "b")], None, (2,)),
        Case("train-vae-deep-store", ["train", "vae", str(stores["deep"]), "--out", str(out / "v")],
             None, (2,)),
        Case("train-sae-deep-latents", ["train", "sae", str(stores["deep"]), "--out", str(out / "sae")],
             None, (2,)),
        Case("train-work-theirs", ["train", "--data", str(good), "--out", str(out / "tb"),
                                   "--work", str(theirs)], None, (2,)),
        Case("eval-into-input", ["eval", bundle, "--data", str(good), "--out", str(good / "ev")],
             None, (2,)),
    ]
    for name, store in stores.items():
        cases.append(Case(f"encode-store-{name}", ["encode", str(store), "--vae", str(FIXTURE_VAE),
                                                   "--out", str(out / f"l-{name}")], None, (2,)))
    cases.append(Case("encode-vae-theirs", ["encode", str(stores["wrong"]), "--vae", str(theirs),
                                            "--out", str(out / "l")], None, (2,)))
    for b in bundles:
        cases.append(Case(f"render-bundle-{b.name}", ["render", str(midi["good"]), "--bundle", str(b),
                                                      "--preset", preset, "--out", str(out / "r.wav")],
                          None, (2,)))
        cases.append(Case(f"live-bundle-{b.name}", ["live", "--bundle", str(b), "--preset", preset,
                                                    "--no-status", "--duration", "1"], None, (2,)))
        cases.append(Case(f"eval-bundle-{b.name}", ["eval", str(b), "--data", str(good), "--out",
                                                    str(out / "ev")], out / "ev", (2,)))
    for name, mid in midi.items():
        if name == "good":
            continue
        cases.append(Case(f"render-midi-{name}", ["render", str(mid), "--bundle", bundle, "--preset",
                                                  preset, "--out", str(out / f"{name}.wav")],
                          out / f"{name}.wav", (2,)))
    for name, p in presets.items():
        cases.append(Case(f"render-preset-{name}", ["render", str(midi["good"]), "--bundle", bundle,
                                                    "--preset", str(p), "--out", str(out / "p.wav")],
                          None, (2,)))
    for flag, values in (("--blocksize", ("0", "-1", "65536", "100000")), ("--sample-rate", ("0", "1"))):
        for v in values:
            cases.append(Case(f"render{flag}={v}", ["render", str(midi["good"]), "--bundle", bundle,
                                                    "--preset", preset, "--out", str(out / "x.wav"),
                                                    flag, v], None, (2,)))
            cases.append(Case(f"live{flag}={v}", ["live", "--bundle", bundle, "--preset", preset,
                                                  "--no-status", "--duration", "1", flag, v], None, (2,)))
    mine = root / "bounced.wav"  # an earlier bounce, now a pad's sample: never the next --out
    with sf.SoundFile(mine, "w", 48000, 2, "FLOAT") as f:
        f.software = "steerpad render"
        f.write(_hit(9)[:, None].repeat(2, axis=1))
    (root / "resample.toml").write_text(f'name = "r"\ncontroller = "generic"\n[[pads]]\nsample = "{mine}"\n')
    cases.append(Case("render-over-its-own-pad-sample",
                      ["render", str(midi["good"]), "--bundle", bundle, "--preset",
                       str(root / "resample.toml"), "--out", str(mine)], None, (2,)))
    cases.append(Case("train-out-is-work", ["train", "--data", str(good), "--out", str(out / "tw"),
                                            "--work", str(out / "tw")], None, (2,)))
    cases.append(Case("ingest-3000-channels", ["ingest", str(good), "--out", str(out / "c"),
                                               "--channels", "3000"], None, (2,)))
    cases.append(Case("eval-into-a-training-run", ["eval", bundle, "--data", str(good), "--out",
                                                   str(out / "vaerun")], None, (2,)))
    (out / "vaerun").mkdir()
    (out / "vaerun" / "steerpad-run.json").write_text('{"format": "steerpad-run", "stage": "vae"}')
    cases.append(Case("render-over-theirs", ["render", str(midi["good"]), "--bundle", bundle, "--preset",
                                             preset, "--out", str(root / "theirs.wav")], None, (2,)))
    cases.append(Case("render-features-over-theirs",
                      ["render", str(midi["good"]), "--bundle", bundle, "--preset", preset, "--out",
                       str(out / "f.wav"), "--features", str(theirs / "keep.txt")], None, (2,)))
    return cases
