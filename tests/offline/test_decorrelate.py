"""Knob directions projected off the others' (offline/directions.py `decorrelate`), in the
steering stage and, for a bundle made before it, by scripts/decorrelate_knobs.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from steerpad.offline.directions import SteeringConfig, decorrelate
from steerpad.realtime.bundle import load_bundle
from steerpad.realtime.errors import SteerpadError

ROOT = Path(__file__).resolve().parents[2]


def test_a_decorrelated_direction_is_orthogonal_to_the_others_and_keeps_its_sign():
    g = np.random.default_rng(0)
    base = g.standard_normal((4, 256))
    rows = base + 2.0 * base[0]  # every row leans on the first one
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    names = ["brighter", "noisier", "airier", "louder"]
    out = decorrelate(rows, names, ["noisier"])
    others = np.delete(out, 1, axis=0)
    assert np.abs(others @ out[1]).max() < 1e-5
    assert abs(np.linalg.norm(out[1]) - 1) < 1e-5 and out[1] @ rows[1] > 0
    assert np.array_equal(others, np.delete(rows, 1, axis=0).astype(np.float32))
    assert np.allclose(decorrelate(out, names, ["noisier"]), out, atol=1e-6)  # again: no change
    both = decorrelate(rows, names, ["noisier", "airier"])
    assert abs(both[1] @ both[2]) < 1e-5 and np.abs(np.delete(both, 2, axis=0) @ both[2]).max() < 1e-5
    with pytest.raises(SteerpadError, match="decorrelate: nope is not a knob direction"):
        decorrelate(rows, names, ["nope"])
    with pytest.raises(SteerpadError, match="the only direction"):
        decorrelate(rows[:1], names[:1], ["brighter"])
    with pytest.raises(SteerpadError, match="lies in the span of the others"):
        decorrelate(np.stack([rows[0], rows[1], rows[0] + rows[1]]), names[:3], ["airier"])
    with pytest.raises(ValueError, match="unknown descriptors to decorrelate"):
        SteeringConfig(decorrelate=("nope",))


def test_decorrelate_knobs_projects_a_bundle_direction_and_calibrates_it_again(chain, tmp_path, capsys,
                                                                             monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import decorrelate_knobs

    bundle = Path(shutil.copytree(chain / "bundle", tmp_path / "bundle"))
    kits = chain / "kits" / "synth_kit_1"
    before = load_bundle(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    names = [d["name"] for d in manifest["directions"]]
    assert decorrelate_knobs.main([str(bundle), "--directions", "brighter", "--data", str(kits),
                                   "--clips", "2"]) == 0
    assert "projected off the other directions" in capsys.readouterr().out
    after = load_bundle(bundle)  # hashes and all
    new = json.loads((bundle / "manifest.json").read_text())
    i = names.index("brighter")
    assert new["directions"][i]["decorrelated"] is True
    assert new["directions"][i]["modes"] != manifest["directions"][i]["modes"]  # calibrated again
    rows = next(numpy_helper.to_array(t) for t in onnx.load(str(bundle / "steer.onnx")).graph.initializer
                if t.name == "directions")
    assert np.abs(np.delete(rows, i, axis=0) @ rows[i]).max() < 1e-5
    z = before.kit[0].latents if before.kit else np.ones((before.latent_dim, 4), np.float32)
    for j, name in enumerate(names):
        alpha = np.zeros(len(names), np.float32)
        alpha[j] = 1.0
        same = np.array_equal(before.steer(z, alpha), after.steer(z, alpha))
        assert same == (name != "brighter"), name
        if name != "brighter":
            assert new["directions"][j] == manifest["directions"][j]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # nothing left beside it
    files = {p: p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    assert decorrelate_knobs.main([str(bundle), "--directions", "brighter", "--data", str(kits)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert files == {p: p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    assert decorrelate_knobs.main([str(bundle), "--directions", "nope", "--data", str(kits)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("steerpad: error: --directions nope: not in") and err.count("\n") == 1, err
    nowhere = str(tmp_path / "nowhere")
    assert decorrelate_knobs.main([nowhere, "--directions", "brighter", "--data", str(kits)]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and err.count("\n") == 1 and "Traceback" not in err, err
