"""scripts/gather_drums.py, the training-data gatherer of scripts/train_default: a soundfont's
drum kits rendered note by note (fluidsynth, TimGM6mb: ./scripts/test installs both) land one
hit per file, onset at the start, named so ingest labels them; synthetic kits widen the
synthesiser's ranges."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
SF2 = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")


def _run(*args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gather_drums.py"), *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_soundfonts_drum_kits_render_one_labelled_hit_per_file(tmp_path):
    from steerpad.offline.labels import label_from_name

    out = _run("soundfont", str(SF2), "--out", str(tmp_path))
    kits = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert len(kits) == 8 and "TimGM6mb_000_Standard: 45 one-shots" in out  # bank 128's presets
    files = sorted((kits[0]).glob("*.flac"))
    labels = {label_from_name(f.stem)[0] for f in files}
    assert {"kick", "snare", "hat", "tom", "cymbal", "clap", "rim", "percussion"} <= labels
    for f in files:
        x, rate = sf.read(f, always_2d=True)
        level = np.abs(x).max(axis=1)
        assert rate == 44100 and x.shape[1] == 2
        assert np.argmax(level > 0.1 * level.max()) < 0.02 * rate, f.name  # the hit starts it
        assert level[-1] > 0  # cut at its last sounding sample, nothing of the next note


def test_synthetic_kits_draw_wider_than_the_test_synthesiser(tmp_path):
    out = _run("synth", "--out", str(tmp_path), "--kits", "2", "--hits", "20", "--spread", "3")
    assert "SynthHydrogenKit: 60 one-shots" in out and "synth_kit_1: 20 one-shots" in out
    sys.path.insert(0, str(ROOT / "tests"))
    import drumsynth

    lengths = [sf.info(str(f)).duration for f in (tmp_path / "synth_kit_1").iterdir()]
    longest_default = 1.25 * max(hi for r in drumsynth.PARAM_RANGES.values()
                                 for p, (_, hi) in r.items() if p == "decay_s")
    assert max(lengths) > longest_default  # some decays beyond the test synthesiser's range
