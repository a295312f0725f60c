"""Ingest: reading, resampling, channels, trimming, lengths, bad files, labels, duplicate groups,
kit splits, the store round trip, the CLI and atomic writes. Audio comes from tests/drumsynth.py."""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections import defaultdict
from pathlib import Path

import drumsynth
import numpy as np
import pytest
import soundfile as sf

from steerpad.offline.cli import main
from steerpad.offline.ingest import (
    ClipRecord,
    IngestConfig,
    IngestStore,
    SkipFile,
    find_files,
    ingest,
    load_clip,
)
from steerpad.offline.labels import assign_splits, choose_label, label_from_name, read_drumkit
from steerpad.realtime.errors import SteerpadError

SR = 44100
CFG = IngestConfig(workers=1)


def _sine(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


@pytest.fixture(scope="module")
def kits(tmp_path_factory):
    """Synthetic kits (one Hydrogen, three plain) plus a scaled copy of a plain-kit hit placed
    in another kit, ingested once."""
    root = tmp_path_factory.mktemp("kits")
    truth = drumsynth.write_kits(root / "in", n_kits=4, hits_per_kit=7, seed=0)
    src = next(t for t in truth if t["kit"] == "synth_kit_1" and t["label"] == "kick")
    x, rate = sf.read(src["path"], dtype="float32")
    copy = root / "in" / "synth_kit_3" / "kick_copy.wav"
    sf.write(copy, 0.5 * x, rate, subtype="FLOAT")
    truth.append({**src, "path": str(copy), "kit": "synth_kit_3", "gain": 0.5 * src["gain"]})
    summary = ingest([root / "in"], root / "store", CFG, progress=False)
    return truth, summary, IngestStore.open(root / "store"), root


# ---------------------------------------------------------------- drumsynth itself

def test_drumsynth_is_deterministic_and_its_parameters_mean_what_they_say(tmp_path):
    a = drumsynth.render("snare", {"brightness_hz": 3000.0}, seed=3)
    assert np.array_equal(a, drumsynth.render("snare", {"brightness_hz": 3000.0}, seed=3))
    assert a.dtype == np.float32 and a.ndim == 1 and abs(np.abs(a).max() - 0.9) < 1e-6
    assert abs(a[0]) < np.abs(a[:64]).max()  # sound from the first samples (onset at 0)
    cents = [drumsynth.spectral_centroid(drumsynth.render_hat(brightness_hz=b))
             for b in (4000, 8000, 14000)]
    assert cents[0] < cents[1] < cents[2]
    kick = drumsynth.render_kick(pitch_hz=60.0, sweep=0.0, click=0.0, decay_s=0.8)
    assert abs(_peak_hz(kick, SR) - 60.0) < 3.0
    loud, soft = (drumsynth.render("clap", {}, gain=g) for g in (0.8, 0.4))
    assert abs(drumsynth.loudness_db(loud) - drumsynth.loudness_db(soft) - 6.02) < 0.01
    short, long = (drumsynth.render_tom(decay_s=d) for d in (0.2, 0.6))
    assert len(long) > len(short)
    r1 = drumsynth.write_kits(tmp_path / "a", 2, 3, seed=5)
    r2 = drumsynth.write_kits(tmp_path / "b", 2, 3, seed=5)
    assert [dict(t, path=Path(t["path"]).name) for t in r1] == \
        [dict(t, path=Path(t["path"]).name) for t in r2]
    assert all(Path(t["path"]).is_file() for t in r1)


# ---------------------------------------------------------------- one file

def test_formats_are_read_and_resampled_to_the_model_rate(tmp_path):
    fmts = [("a.wav", "PCM_16", 48000), ("b.flac", "PCM_24", 22050), ("c.ogg", "VORBIS", 32000),
            ("d.aiff", "PCM_16", 96000), ("e.mp3", "MPEG_LAYER_III", 44100)]
    for name, subtype, rate in fmts:
        path = tmp_path / name
        sf.write(path, _sine(1000.0, 0.6, rate), rate, subtype=subtype)
        audio, info = load_clip(path, CFG)
        assert audio.shape[0] == 2 and audio.dtype == np.float32, name
        assert info["source_rate"] == rate
        sound = audio[0, : int(0.4 * SR)]
        assert abs(_peak_hz(sound, SR) - 1000.0) < 5.0, name  # pitch kept => rate converted
        # 0.6 s of sound at 44.1 kHz: 26460 samples -> 13 frames (mp3 may add a little)
        assert info["frames"] in (13, 14), (name, info["frames"])


def test_mono_is_copied_and_six_channels_are_downmixed(tmp_path):
    mono = _sine(440.0, 0.3, SR)
    sf.write(tmp_path / "mono.wav", mono, SR, subtype="FLOAT")
    audio, info = load_clip(tmp_path / "mono.wav", CFG)
    assert info["source_channels"] == 1
    np.testing.assert_array_equal(audio[0], audio[1])
    np.testing.assert_allclose(audio[0, : len(mono) - 20], mono[: len(mono) - 20], atol=1e-6)

    freqs = [300.0, 500.0, 700.0, 900.0, 1100.0, 1300.0]  # FL FR FC LFE BL BR
    six = np.stack([_sine(f, 0.5, SR, 0.1) for f in freqs], axis=1)
    sf.write(tmp_path / "six.wav", six, SR, subtype="FLOAT")
    audio, info = load_clip(tmp_path / "six.wav", CFG)
    assert info["source_channels"] == 6 and audio.shape[0] == 2

    def level(ch: np.ndarray, f: float) -> float:
        t = np.arange(len(ch)) / SR
        return float(np.abs(ch @ np.exp(-2j * np.pi * f * t)) / len(ch) * 2)

    n = int(0.4 * SR)
    left, right = audio[0, :n], audio[1, :n]
    for f, (gl, gr) in zip(freqs, [(1, 0), (0, 1), (0.7071, 0.7071), (0, 0), (0.7071, 0),
                                   (0, 0.7071)], strict=True):
        scale = 0.1 / 2.4142
        assert abs(level(left, f) - gl * scale) < 0.003, f
        assert abs(level(right, f) - gr * scale) < 0.003, f


def test_leading_silence_is_trimmed_so_the_onset_lands_at_zero(tmp_path):
    hit = drumsynth.render_snare(seed=1)
    lead = np.random.default_rng(0).normal(0, 1e-5, int(0.3 * SR)).astype(np.float32)  # -100 dB
    sf.write(tmp_path / "late.wav", np.concatenate([lead, hit]), SR, subtype="FLOAT")
    audio, info = load_clip(tmp_path / "late.wav", CFG)
    onset = int(np.argmax(np.abs(audio[0]) > 0.05))
    assert onset <= round(CFG.pre_roll_s * SR) + 4
    assert abs(info["trimmed_s"] - (0.3 - CFG.pre_roll_s)) < 1e-3


def test_crop_pad_length_and_sounding_frames(tmp_path):
    cfg = IngestConfig(frames=8, hop=1024, workers=1)
    burst = _sine(220.0, 3000 / SR, SR)                          # 3000 samples of sound
    quiet = _sine(220.0, 10000 / SR, SR, amp=0.5e-4)             # -80 dB re peak: no sound
    audible = _sine(220.0, 2000 / SR, SR, amp=0.5e-2)            # -40 dB re peak: sound
    sf.write(tmp_path / "short.wav", np.concatenate([burst, quiet]), SR, subtype="FLOAT")
    sf.write(tmp_path / "tail.wav", np.concatenate([burst, audible]), SR, subtype="FLOAT")
    sf.write(tmp_path / "long.wav", _sine(220.0, 1.0, SR), SR, subtype="FLOAT")
    a, info = load_clip(tmp_path / "short.wav", cfg)
    assert info["frames"] == 3 and a.shape == (2, 3 * 1024)      # ceil(3000 / 1024)
    a, info = load_clip(tmp_path / "tail.wav", cfg)
    assert info["frames"] == 5                                   # ceil(5000 / 1024)
    a, info = load_clip(tmp_path / "long.wav", cfg)              # 44100 > 8 * 1024: cropped
    assert info["frames"] == 8 and a.shape == (2, 8192)
    assert abs(a[0, -1]) < 1e-3 and np.abs(a[0, -2000:-500]).max() > 0.4  # faded at the cut


# ---------------------------------------------------------------- bad files

def test_every_bad_file_is_skipped_with_its_reason_and_the_run_goes_on(tmp_path, capsys):
    d = tmp_path / "in" / "kit"
    d.mkdir(parents=True)
    good = drumsynth.render_kick(seed=0)
    sf.write(d / "kick_good.wav", good, SR)
    sf.write(d / "snare_good.flac", drumsynth.render_snare(seed=0), SR)
    (d / "empty.wav").write_bytes(b"")
    (d / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(200)))
    (d / "notaudio.mp3").write_text("this is not an mp3\n" * 50)
    sf.write(d / "silent.wav", np.zeros(SR, np.float32), SR)
    bad = good.copy()
    bad[100] = np.nan
    sf.write(d / "nan.wav", bad, SR, subtype="FLOAT")
    click = np.zeros(SR, np.float32)
    click[-20:] = 0.5
    sf.write(d / "click_at_end.wav", click, SR, subtype="FLOAT")
    (d / "readme.txt").write_text("not audio, not even looked at")

    summary = ingest([tmp_path / "in"], tmp_path / "store", CFG, progress=False)
    assert summary.files == 8 and summary.clips == 2
    assert summary.skipped == {"empty": 1, "unreadable": 2, "silent": 1, "nan": 1, "too_short": 1}
    err = capsys.readouterr().err
    skip_lines = [line for line in err.splitlines() if line.startswith("skip ")]
    assert len(skip_lines) == 6
    for name, why in [("empty.wav", "empty"), ("corrupt.wav", "cannot decode"),
                      ("notaudio.mp3", "cannot decode"), ("silent.wav", "silent"),
                      ("nan.wav", "NaN"), ("click_at_end.wav", "after trimming")]:
        assert sum(name in line and why in line for line in skip_lines) == 1, (name, skip_lines)
    stored = json.loads((tmp_path / "store" / "store.json").read_text())["summary"]
    assert stored["skipped"] == summary.skipped and len(stored["skipped_files"]) == 6
    with pytest.raises(SkipFile, match="silent"):
        load_clip(d / "silent.wav", CFG)


def test_exact_duplicate_files_are_dropped(tmp_path, capsys):
    d = tmp_path / "in" / "k"
    d.mkdir(parents=True)
    x = (drumsynth.render_tom(seed=2) * 32767).astype(np.int16)
    sf.write(d / "tom_a.wav", x, SR)
    shutil.copy(d / "tom_a.wav", d / "tom_b.wav")
    sf.write(d / "tom_c.flac", x, SR)  # same samples, other container
    summary = ingest([tmp_path / "in"], tmp_path / "store", CFG, progress=False)
    assert summary.clips == 1 and summary.skipped == {"duplicate": 2}
    assert "duplicate of" in capsys.readouterr().err


# ---------------------------------------------------------------- labels, groups, splits

def test_labels_from_drumkit_xml_and_from_names(kits):
    truth, summary, store, _ = kits
    by_path = {str(Path(t["path"]).resolve()): t for t in truth}
    assert len(store) == len(truth) and summary.skipped == {}
    for r in store.records:
        t = by_path[r.path]
        assert r.label == t["label"], (r.path, r.label, t["label"])
        assert r.kit == t["kit"]
        assert r.instrument == (t["instrument"] or "")
    hydrogen = [r for r in store.records if r.kit == "SynthHydrogenKit"]
    assert hydrogen and all(Path(r.path).name.startswith("inst") for r in hydrogen)  # XML only


@pytest.mark.parametrize("name,label", [
    ("drum_bass_hard", "kick"), ("drum_cymbal_closed", "hat"), ("drum_cymbal_hard", "cymbal"),
    ("kick01", "kick"), ("bassdrum_acoustic01", "kick"), ("hihat_opened01", "hat"),
    ("BassDrum", "kick"), ("Snare Rimshot", "snare"), ("sidestick01", "rim"),
    ("c3 - bass drum 1", "kick"), ("g#3 - hi-hat pedal", "hat"), ("Tom Hi", "tom"),
    ("tomhi4", "tom"), ("Hand Clap", "clap"), ("Ride Bell", "cymbal"), ("Cowbell", "percussion"),
    ("sn_dub", "snare"), ("bd_808", "kick"), ("elec_blip", "percussion"),
    ("loop_amen", "other"), ("ambi_drone", "other"),
])
def test_label_from_name(name, label):
    assert choose_label([name]) == label


def test_label_fallback_order_and_old_drumkit_xml(tmp_path):
    assert label_from_name("elec_blip") == ("percussion", False)
    assert choose_label(["Sample 3", "hit_07", "Kicks", "drums"]) == "kick"    # folder decides
    assert choose_label(["Snare 2", "kick_07"]) == "snare"                     # instrument first
    xml = tmp_path / "drumkit.xml"
    xml.write_text("<drumkit_info><name>Old</name><instrumentList>"
                   "<instrument><id>0</id><filename>a.flac</filename><name>Kick 1</name>"
                   "</instrument><instrument><id>1</id><name>Closed HH</name>"
                   "<layer><filename>/abs/where/b.flac</filename></layer></instrument>"
                   "</instrumentList></drumkit_info>")
    got = read_drumkit(xml)
    assert got == {(tmp_path / "a.flac").resolve(): (0, "Kick 1"),
                   (tmp_path / "b.flac").resolve(): (1, "Closed HH")}


def test_velocity_copies_share_a_group_and_a_split(kits):
    truth, summary, store, _ = kits
    by_path = {str(Path(t["path"]).resolve()): t for t in truth}
    groups: dict[int, set] = defaultdict(set)
    sources: dict[int, set] = defaultdict(set)
    for r in store.records:
        groups[r.group].add(r.split)
        sources[by_path[r.path]["source"]].add(r.group)
    assert all(len(splits) == 1 for splits in groups.values())  # a group is never split
    assert all(len(g) == 1 for g in sources.values())           # copies of one hit: one group
    layers = [r for r in store.records if r.kit == "SynthHydrogenKit"]
    assert len({r.group for r in layers}) == 7 and len(layers) == 21
    copy = next(r for r in store.records if r.path.endswith("kick_copy.wav"))
    orig = [r for r in store.records if r.group == copy.group and r.id != copy.id]
    assert [r.kit for r in orig] == ["synth_kit_1"]               # scaled copy across kits found
    assert ["synth_kit_1", "synth_kit_3"] in summary.linked_kits
    assert store.summary["near_duplicates"] >= 7 * 3 + 1


def test_splits_are_by_kit_deterministic_and_respect_val_kits(kits, tmp_path):
    _truth, _summary, store, root = kits
    kit_split = defaultdict(set)
    for r in store.records:
        kit_split[r.kit].add(r.split)
    assert all(len(s) == 1 for s in kit_split.values())
    assert 1 <= sum(s == {"val"} for s in kit_split.values()) < len(kit_split)
    assert kit_split["synth_kit_1"] == kit_split["synth_kit_3"]  # linked by a near duplicate

    cfg = IngestConfig(val_kits=["synth_kit_1"], workers=1)
    s2 = ingest([root / "in"], tmp_path / "named", cfg, progress=False)
    val = sorted(k for k, v in s2.kits.items() if v["split"] == "val")
    assert val == ["synth_kit_1", "synth_kit_3"]                # the linked kit comes along

    kits_ = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
    s_a = assign_splits(kits_, [], None, 0.3, seed=1)
    assert s_a == assign_splits(kits_[::-1], [], None, 0.3, seed=1)  # order-free, seeded
    assert sum(v == "val" for v in s_a.values()) == 3
    assert sum(v == "val" for v in assign_splits(["a", "b"], [], None, 0.01, 0).values()) == 1
    assert set(assign_splits(["a"], [], None, 0.5, 0).values()) == {"train"}
    with pytest.raises(SteerpadError, match="no kit named 'zz'.*kits found: a, b"):
        assign_splits(["a", "b"], [], ["zz"], 0.2, 0)


# ---------------------------------------------------------------- store, CLI, atomic writes

def test_store_round_trip(kits):
    truth, summary, _store, root = kits
    again = IngestStore.open(root / "store")
    assert again.config == CFG and len(again) == summary.clips == len(truth)
    assert isinstance(again.records[0], ClipRecord)
    assert [r.id for r in again.records] == list(range(len(again)))
    assert sorted(again.ids("train") + again.ids("val")) == again.ids(None) == list(range(len(again)))
    with pytest.raises(ValueError):
        again.ids("test")
    for i in (0, 5, len(again) - 1):
        rec = again.records[i]
        audio = again.audio(i)
        assert audio.shape == (2, CFG.frames * CFG.hop) and audio.dtype == np.float32
        direct, info = load_clip(rec.path, CFG)
        np.testing.assert_array_equal(audio[:, : direct.shape[1]], direct)
        assert not audio[:, rec.frames * CFG.hop:].any() and info["frames"] == rec.frames
    with pytest.raises(SteerpadError, match="nowhere"):
        IngestStore.open(root / "nowhere")
    broken = root / "broken"
    broken.mkdir()
    (broken / "store.json").write_text("{not json")
    with pytest.raises(SteerpadError, match="not a valid ingest store"):
        IngestStore.open(broken)


def test_worker_processes_give_the_same_store(kits, tmp_path):
    _truth, summary, store, root = kits
    s2 = ingest([root / "in"], tmp_path / "pool", IngestConfig(workers=2), progress=False)
    other = IngestStore.open(tmp_path / "pool")
    assert s2.labels == summary.labels
    assert [r.__dict__ for r in other.records] == [r.__dict__ for r in store.records]
    np.testing.assert_array_equal(other.audio(3), store.audio(3))


def test_cli(kits, tmp_path, capsys):
    _, _, _, root = kits
    out = tmp_path / "cli_store"
    args = ["ingest", str(root / "in"), "--out", str(out), "--frames", "8", "--no-progress",
            "--workers", "1", "--val-kits", "synth_kit_2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "label kick" in printed and "synth_kit_2" in printed
    store = IngestStore.open(out)
    assert store.config.frames == 8 and store.audio(0).shape == (2, 8 * 2048)
    assert {r.kit for r in store.records if r.split == "val"} == {"synth_kit_2"}

    assert main(args) == 2                                      # exists, no --force
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    missing = tmp_path / "no_such_folder"
    assert main(["ingest", str(missing), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("steerpad: error:") and str(missing) in err and "does not exist" in err
    assert main(["ingest", str(root / "in"), "--out", str(tmp_path / "y"),
                 "--val-fraction", "1.5"]) == 2
    assert "val_fraction" in capsys.readouterr().err


def test_failed_run_leaves_no_store_and_keeps_an_old_one(kits, tmp_path):
    _, _, _, root = kits
    out = tmp_path / "atomic"
    bad = IngestConfig(val_kits=["no_such_kit"], workers=1)    # fails after audio was written
    with pytest.raises(SteerpadError, match="no_such_kit"):
        ingest([root / "in"], out, bad, progress=False)
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no half store, no temp folder

    ingest([root / "in"], out, CFG, progress=False)
    before = (out / "index.jsonl").read_text()
    with pytest.raises(SteerpadError):
        ingest([root / "in"], out, bad, force=True, progress=False)
    assert (out / "index.jsonl").read_text() == before and len(IngestStore.open(out)) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic"]

    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(SteerpadError, match="no usable audio"):
        ingest([empty], tmp_path / "none", CFG, progress=False)
    assert not (tmp_path / "none").exists()


def test_find_files_walks_sorted_and_once(tmp_path):
    for rel in ["b/2.wav", "b/1.FLAC", "a/x.ogg", "a/.hidden.wav", "a/notes.txt", "c.mp3"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    files = find_files([tmp_path, tmp_path / "b"])
    assert [p.relative_to(tmp_path).as_posix() for p, _ in files] == \
        ["c.mp3", "a/x.ogg", "b/1.FLAC", "b/2.wav"]


@pytest.mark.skipif(importlib.util.find_spec("pyo") is None, reason="pyo not installed")
def test_real_sounds_from_the_pyo_wheel(tmp_path):
    snds = Path(importlib.util.find_spec("pyo").origin).parent / "examples" / "snds"
    if not snds.is_dir():
        pytest.skip("this pyo wheel has no examples/snds")
    src = tmp_path / "pyo_snds"
    src.mkdir()
    for p in sorted(snds.glob("snd_*.aif")) + sorted(snds.glob("alum*.wav")):
        shutil.copy(p, src / p.name)
    summary = ingest([src], tmp_path / "store", IngestConfig(frames=8, workers=1),
                     progress=False)
    store = IngestStore.open(tmp_path / "store")
    assert summary.clips == len(store) > 0 and summary.files == len(list(src.iterdir()))
    assert all(1 <= r.frames <= 8 for r in store.records)
