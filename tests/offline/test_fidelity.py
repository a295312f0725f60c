"""`steerpad eval --fidelity` (offline/fidelity.py): the measures rank a clip against itself, a
gentle change and a destroyed copy as a listener would; the report on the shipped bundle has the
VAE and both Opus rates, with Opus 48 kbps closer than 24; a missing opus-tools is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from steerpad.offline.fidelity import CODECS, MEASURES, measure, opus_round_trip, third_octave_matrix

SR = 44100
BUNDLE = Path(__file__).resolve().parents[2] / "models" / "default"


def _hit(seed: int, n: int = SR // 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    body = 0.5 * np.sin(2 * np.pi * 180 * t * (1 + 0.5 * np.exp(-t / 0.02))) * np.exp(-t / 0.15)
    noise = 0.3 * rng.standard_normal(n) * np.exp(-t / 0.03)
    return np.tile(body + noise, (2, 1)).astype(np.float32)


def _lowpass(x: np.ndarray, cutoff: float) -> np.ndarray:
    spec = np.fft.rfft(x, axis=-1)
    spec[:, np.fft.rfftfreq(x.shape[1], 1 / SR) > cutoff] = 0
    return np.fft.irfft(spec, n=x.shape[1], axis=-1).astype(np.float32)


def test_third_octave_bands_cover_50_hz_to_nyquist_once():
    m = third_octave_matrix(4096, SR)
    freqs = np.fft.rfftfreq(4096, 1 / SR)
    assert m.sum(axis=1).max() == 1  # no bin in two bands
    assert (m.sum(axis=1)[freqs >= 60] == 1).all()  # every bin from ~50 Hz up is in one
    assert m.shape[1] > 25


def test_the_measures_rank_identity_a_gentle_change_and_a_destroyed_copy():
    x = _hit(0)
    same, gentle, ruined = (measure(x, y, SR) for y in (x.copy(), _lowpass(x, 12000), _lowpass(x, 400)))
    assert same["mel_db"] == 0 and same["band_db"] == 0 and same["onset_r"] == pytest.approx(1.0)
    assert same["mrstft"] < 1e-3
    for m in MEASURES:
        worse = (lambda a, b: a < b) if m != "onset_r" else (lambda a, b: a > b)
        assert worse(same[m], gentle[m]) or same[m] == gentle[m], m
        assert worse(gentle[m], ruined[m]), (m, gentle[m], ruined[m])


def test_opus_round_trip_lines_up_with_the_source(tmp_path):
    x = _hit(1)
    y = opus_round_trip(x, SR, 48, tmp_path)
    assert y.shape == x.shape
    c = np.corrcoef(x[0, :SR // 4], y[0, :SR // 4])[0, 1]
    assert c > 0.9  # aligned sample for sample (pre-skip removed): no lag to find


def test_the_report_on_the_shipped_bundle_has_the_vae_and_both_opus_rates(tmp_path):
    from steerpad.offline.cli import main

    data = tmp_path / "clips"
    data.mkdir()
    for i in range(3):
        sf.write(data / f"hit{i}.wav", _hit(10 + i).T, SR)
    out = tmp_path / "fid"
    assert main(["eval", str(BUNDLE), "--fidelity", "--clips", "3", "--data", str(data),
                 "--out", str(out)]) == 0
    report = json.loads((out / "fidelity.json").read_text())
    assert set(report["systems"]) == {"vae", *CODECS}
    for system in report["systems"].values():
        assert set(system["median"]) == set(MEASURES) and len(system["per_clip"]) == 3
    med = {s: v["median"] for s, v in report["systems"].items()}
    assert med["opus_48"]["mel_db"] < med["opus_24"]["mel_db"]
    assert med["opus_48"]["mrstft"] < med["opus_24"]["mrstft"]
    assert "| mel L1 (dB) |" in (out / "fidelity.md").read_text()
    assert (out / "spectrograms.png").stat().st_size > 10_000


def test_without_opus_tools_it_says_what_to_install(tmp_path, monkeypatch, capsys):
    from steerpad.offline.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))  # no opusenc / opusdec to be found
    rc = main(["eval", str(BUNDLE), "--fidelity", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "opus-tools" in err[0], err


@pytest.mark.parametrize("extra, words", [
    (["--fidelity", "--mode", "resynth"], "--mode: --fidelity measures the VAE's reconstruction"),
    (["--fidelity", "--directions", "nope", "--points", "3"], "--points and --directions: --fidelity"),
    (["--points", "100000000"], "--points 1 to 64 (got --clips 16, --points 100000000)"),
    (["--points", "0"], "--points 1 to 64"),
])
def test_eval_refuses_options_it_would_ignore_or_that_have_no_end(tmp_path, capsys, extra, words):
    """--fidelity measured the VAE and silently dropped the knob options (an unknown direction
    passed); --points had no upper bound (10^8 grew past 3 GB). Refused before anything is read."""
    from steerpad.offline.cli import main

    rc = main(["eval", str(tmp_path / "no-bundle"), "--data", str(tmp_path), "--out", str(tmp_path / "o"),
               *extra])
    err = capsys.readouterr().err
    assert rc == 2 and words in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_eval_refuses_an_unknown_direction_before_it_marks_its_output(tmp_path, capsys):
    from steerpad.offline.cli import main

    bundle = Path(__file__).resolve().parents[2] / "models" / "default"
    data = tmp_path / "data"
    data.mkdir()
    assert main(["eval", str(bundle), "--data", str(data), "--out", str(tmp_path / "o"),
                 "--directions", "nope"]) == 2
    assert "--directions nope: not in" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_picture_the_disk_has_no_room_for_names_its_file(mount_tmpfs):
    """matplotlib's OSError on a full disk names no file: `steerpad eval --fidelity` said only
    "No space left on device" (a hostile pass). save_figure, which every report's PNG goes
    through, names it, and closes the figure either way."""
    import matplotlib.pyplot as plt

    from steerpad.offline.plots import save_figure

    disk = mount_tmpfs("size=16k")
    fig, ax = plt.subplots(figsize=(12, 12))
    ax.imshow(np.random.default_rng(0).random((400, 400)))  # noise: no PNG compresses it into 16 kB
    with pytest.raises(OSError) as e:
        save_figure(fig, disk / "spectrograms.png", 100)
    assert e.value.filename == str(disk / "spectrograms.png") and "No space" in e.value.strerror
    assert not plt.fignum_exists(fig.number)
