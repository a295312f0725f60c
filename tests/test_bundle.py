"""The bundle: export (offline/export.py) -> load (realtime/bundle.py) -> the same numbers as torch.

One `tiny` VAE bundle is exported per module (the slow part, ~30 s on 2 cores); tamper tests edit
copies of it. Atomicity and the CLI use a much smaller VAE (mono, 16 kHz, hop 8), which also
checks that nothing assumes Stable Audio Open's format.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from steerpad.offline import export
from steerpad.offline.cli import main as cli_main
from steerpad.offline.sae import SAEConfig, TopKSAE, save_sae
from steerpad.offline.steering import SteerModule
from steerpad.offline.vae import OobleckConfig, OobleckVAE, get_config, save_vae
from steerpad.realtime.bundle import Bundle, Direction, load_bundle
from steerpad.realtime.errors import SteerpadError

ROOT = Path(__file__).resolve().parents[1]

MICRO = OobleckConfig(name="micro", sample_rate=16000, audio_channels=1, channels=4, c_mults=[1, 2],
                      strides=[2, 4], latent_dim=8)
NAMES = [("brighter", "centroid", "Hz", 1), ("longer", "decay", "s", 1), ("lower", "pitch", "Hz", -1)]


def make_sae(d_in: int, n_features: int, k: int, seed: int = 0) -> TopKSAE:
    g = torch.Generator().manual_seed(seed)
    sae = TopKSAE(SAEConfig(d_in=d_in, n_features=n_features, k=k), mean=0.1 * torch.randn(d_in, generator=g),
                  std=0.5 + torch.rand(d_in, generator=g), seed=seed)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1, generator=g)
        sae.level.fill_(4.0)  # an active level pair, as after training
    return sae.eval()


def write_steering(folder: Path, n_features: int, names=NAMES, seed: int = 0) -> Path:
    """A steering folder as the directions code writes it: random unit directions and probes."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    d = torch.randn(len(names), n_features, generator=g)
    tensors = {"directions": d / d.norm(dim=1, keepdim=True)}
    descriptors = sorted({desc for _, desc, _, _ in names})
    for desc in descriptors:
        tensors[f"probe.{desc}.weight"] = torch.randn(8, n_features, generator=g)
        tensors[f"probe.{desc}.bias"] = torch.randn(8, generator=g)
        tensors[f"probe.{desc}.edges"] = torch.linspace(0, 1, 9)
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "directions.safetensors"))
    meta = {"directions": [{"name": n, "descriptor": desc, "unit": u, "alpha_min": -40.0, "alpha_max": 40.0,
                            "polarity": p, "spearman": 0.9} for n, desc, u, p in names],
            "probes": {desc: {"binning": "quantile", "n_bins": 8, "accuracy": 0.5, "chance": 0.125,
                              "within_one": 0.9} for desc in descriptors},
            "descriptors": {desc: {"unit": "Hz", "mean": 1.0, "std": 2.0} for desc in descriptors}}
    (folder / "directions.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny VAE (weight norm on), a 512/16 SAE, 3 directions, exported once with a kit."""
    root = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    vae = OobleckVAE(get_config("tiny")).eval()
    sae = make_sae(vae.config.latent_dim, 512, 16)
    steering = export.load_steering(write_steering(root / "steering", 512))
    kick = np.asarray(0.05 * np.random.default_rng(0).standard_normal((64, 3)), np.float32)
    path = export.export_bundle(root / "bundle", vae, sae, steering, metrics={"fvu/val": np.float32(0.1)},
                                provenance={"data": "random"}, kit=[{"name": "kick", "label": "Kick",
                                                                    "latents": kick}])
    folded = OobleckVAE(vae.config).eval()
    folded.load_state_dict(vae.state_dict())
    folded.fold_weight_norm()
    return {"path": path, "vae": vae, "folded": folded, "sae": sae, "steering": steering, "kick": kick,
            "steer": SteerModule(sae, steering["tensors"]["directions"]).eval(),
            "bundle": load_bundle(path)}


def inputs(vae: OobleckVAE, sae: TopKSAE, batch: int, frames: int, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    audio = 0.1 * torch.randn(batch, vae.config.audio_channels, frames * vae.config.hop, generator=g)
    z = sae.mean[:, None] + sae.std[:, None] * torch.randn(batch, vae.config.latent_dim, frames, generator=g)
    return audio, z, 30 * (2 * torch.rand(3, generator=g) - 1)


def maxabs(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    return float(np.abs(a - b).max())


# --- export -> load -> parity ----------------------------------------------------------------
@pytest.mark.parametrize("batch, frames", [(1, 5), (3, 2)])  # exported at 2 x 4
def test_onnx_matches_torch(tiny, batch, frames):
    b: Bundle = tiny["bundle"]
    audio, z, alpha = inputs(tiny["folded"], tiny["sae"], batch, frames)
    with torch.no_grad():
        assert maxabs(b.encode(audio.numpy()), tiny["folded"].encode(audio)) < 1e-4
        assert maxabs(b.decode(z.numpy()), tiny["folded"].decode(z)) < 1e-4
        steered = tiny["steer"](z, alpha)
        assert maxabs(b.steer(z.numpy(), alpha.numpy()), steered) < 1e-4
        assert maxabs(b.render(z.numpy(), alpha.numpy()), tiny["folded"].decode(steered)) < 1e-4
        # and the unfolded (weight-normed) model the export started from
        assert maxabs(b.decode(z.numpy()), tiny["vae"].decode(z)) < 1e-4


def test_a_spectral_vae_leaves_its_stfts_to_the_realtime_half(tiny):
    """encoder.onnx starts after the log-magnitude STFT and decoder.onnx stops before the
    inverse STFT (dense fixed-basis convolutions, about half of each model's time in
    onnxruntime); the manifest says so and Bundle.encode / decode do them with an FFT."""
    import onnx

    m, b = tiny["bundle"].manifest, tiny["bundle"]
    hop = tiny["vae"].config.stft_hop
    assert m["onnx"]["encoder"]["input"] == "log_magnitude"
    assert m["onnx"]["encoder"]["spectrum"] == {"n_fft": 4 * hop, "hop": hop, "floor": 1e-8}
    assert m["onnx"]["decoder"]["output"] == "spectrum"
    assert m["onnx"]["decoder"]["spectrum"] == {"n_fft": 4 * hop, "hop": hop}
    for model in ("encoder", "decoder"):  # no Fourier basis inside either
        shapes = [list(i.dims) for i in onnx.load(str(b.path / f"{model}.onnx")).graph.initializer]
        assert [2 * (2 * hop + 1), 1, 4 * hop] not in shapes, model
    z = np.asarray(np.random.default_rng(3).standard_normal((2, 64, 3)), np.float32)
    assert b.decode(z).shape == (2, tiny["vae"].config.audio_channels, 3 * tiny["vae"].config.hop)


def test_silence_and_near_silence_encode_to_finite_latents(tiny):
    """The spectral front end takes log(max(power, eps)): a silent input (every real one-shot's
    tail) must stay finite through onnxruntime too (an exported `log(power + eps)` lost its eps)."""
    b = tiny["bundle"]
    x = np.zeros((b.channels, 4 * b.hop), np.float32)
    x[:, :100] = 0.5
    for audio in (x, np.zeros_like(x)):
        z = b.encode(audio)
        assert np.isfinite(z).all() and np.isfinite(b.decode(z)).all()


def test_encode_pads_to_whole_frames_and_accepts_unbatched(tiny):
    b, vae = tiny["bundle"], tiny["folded"]
    audio = 0.1 * torch.randn(2, 3 * b.hop - 100)
    z = b.encode(audio.numpy())
    assert z.shape == (1, b.latent_dim, 3)
    with torch.no_grad():
        padded = torch.nn.functional.pad(audio, (0, 100))[None]
        assert maxabs(z, vae.encode(padded)) < 1e-4
    assert b.decode(z[0]).shape == (1, b.channels, 3 * b.hop)
    with pytest.raises(ValueError, match="alpha has 2 values"):
        b.steer(z, np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="audio must be"):
        b.encode(np.zeros((1, 3 * b.hop), np.float32))  # stereo bundle, mono audio


def test_steer_at_zero_alpha_gives_the_latents_back(tiny):
    _, z, _ = inputs(tiny["folded"], tiny["sae"], 2, 6)
    out = tiny["bundle"].steer(z.numpy(), np.zeros(3, np.float32))
    assert maxabs(out, z) < 1e-4


def test_codes_are_the_sae_codes_probes_read(tiny):
    """codes.onnx gives, per latent frame, the sparse SAE code the probes were trained on."""
    from steerpad.offline.probes import sae_codes

    _, z, _ = inputs(tiny["vae"], tiny["sae"], 2, 5, seed=4)
    values, indices = tiny["bundle"].codes(z.numpy())
    assert values.shape == indices.shape == (2, 5, 16 + 2) and indices.dtype == np.int64
    ref = sae_codes(tiny["sae"], z.transpose(1, 2).reshape(-1, z.shape[1]).numpy())
    dense = np.zeros((10, 512), np.float32)
    np.put_along_axis(dense, indices.reshape(10, -1), values.reshape(10, -1), axis=1)
    assert maxabs(dense, ref.dense().numpy()) < 1e-4
    assert (indices[..., :2] == [0, 1]).all()  # the level pair first


def test_torchscript_matches_torch(tiny):
    path, vae = tiny["path"], tiny["folded"]
    audio, z, alpha = inputs(vae, tiny["sae"], 2, 3, seed=9)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", r"`torch\.jit\.load` is deprecated", DeprecationWarning)
        encoder, decoder, steer, codes = (torch.jit.load(str(path / f"{m}.pt")) for m in export.MODELS)
        assert maxabs(encoder(audio), vae.encode(audio)) < 1e-4
        values, indices = codes(z)
        assert values.shape == indices.shape == (2, 3, 16 + 2)
        assert maxabs(decoder(z), vae.decode(z)) < 1e-4
        assert maxabs(steer(z, alpha), tiny["steer"](z, alpha)) < 1e-4
        assert maxabs(steer(z, torch.zeros(3)), z) < 1e-4


def test_bundle_describes_itself(tiny):
    b, vae, sae = tiny["bundle"], tiny["vae"], tiny["sae"]
    assert b.provider == "CPUExecutionProvider"  # this machine's onnxruntime has no CUDA
    assert (b.sample_rate, b.channels, b.hop, b.max_frames) == (44100, 2, 2048, 32)
    assert (b.latent_dim, b.n_features, b.k) == (64, 512, 16)
    assert b.directions[2] == Direction("lower", "pitch", "Hz", -40.0, 40.0, -1)
    assert b.direction_names() == ["brighter", "longer", "lower"]
    np.testing.assert_allclose(b.latent_mean, sae.mean.numpy())
    assert len(b.kit) == 1 and b.kit[0].label == "Kick"
    np.testing.assert_array_equal(b.kit[0].latents, tiny["kick"])
    m = b.manifest
    assert m["schema"] == "steerpad-bundle" and m["schema_version"] == 1
    assert m["vae"]["config"] == vae.config.to_dict()
    assert m["sae"] == {"n_features": 512, "k": 16, "level_pair": True}
    assert m["directions"][0]["spearman"] == 0.9  # extra keys kept
    assert m["metrics"] == {"fvu/val": pytest.approx(0.1)} and m["provenance"] == {"data": "random"}
    assert m["probes"]["centroid"]["n_bins"] == 8 and m["descriptors"]["decay"]["unit"] == "Hz"
    assert m["kit"] == [{"name": "kick", "label": "Kick", "file": "kit/kick.npy"}]
    on_disk = {p.relative_to(b.path).as_posix() for p in b.path.rglob("*") if p.is_file()}
    assert on_disk == set(m["files"]) | {"manifest.json"}  # one file per model: weights inline
    assert set(m["files"]) == {"encoder.onnx", "decoder.onnx", "steer.onnx", "codes.onnx", "encoder.pt",
                               "decoder.pt", "steer.pt", "codes.pt", "probes.safetensors", "kit/kick.npy"}
    check = m["export_check"]
    assert max(check["max_abs_error"].values()) < 1e-4 and len(check["max_abs_error"]) == 8
    import onnx

    assert onnx.load(str(b.path / "steer.onnx")).opset_import[0].version == m["onnx"]["opset"]
    from safetensors.numpy import load_file

    probes = load_file(str(b.path / m["probes_file"]))
    np.testing.assert_array_equal(probes["probe.decay.bias"], tiny["steering"]["tensors"]["probe.decay.bias"])


def test_export_leaves_the_callers_models_alone(tiny):
    assert not tiny["vae"].folded  # a folded copy was exported
    assert not tiny["sae"].training
    _, z, _ = inputs(tiny["folded"], tiny["sae"], 1, 2)
    with torch.no_grad():  # and the weight-normed original still runs
        assert maxabs(tiny["vae"].decode(z), tiny["folded"].decode(z)) < 1e-5


# --- refusals ---------------------------------------------------------------------------------
def _edit(key_path: str, value):
    def edit(m: dict) -> None:
        *parents, last = key_path.split(".")
        for k in parents:
            m = m[k]
        m[last] = value
    return edit


def _dup_names(m):
    m["directions"][1]["name"] = m["directions"][0]["name"]


def _flip_byte(path: Path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


FILE, MANIFEST = "file", "manifest"  # what a tamper edits: the bundle folder, or the parsed manifest
TAMPERS = {
    "missing decoder": (FILE, lambda p: (p / "decoder.onnx").unlink(), r"decoder\.onnx is missing"),
    "flipped byte": (FILE, lambda p: _flip_byte(p / "steer.onnx"), r"steer\.onnx is corrupt"),
    "not json": (FILE, lambda p: (p / "manifest.json").write_text("{'schema': "),
                 r"manifest\.json is not valid JSON"),
    "newer schema": (MANIFEST, _edit("schema_version", 99),
                     r"schema_version 99 was written by a newer steerpad.*upgrade steerpad"),
    "wrong latent dim": (MANIFEST, _edit("latent.mean", [0.0] * 63),
                         r"latent\.mean has 63 values, latent\.dim is 64"),
    "sample rate": (MANIFEST, _edit("audio.sample_rate", "abc"),
                    r"manifest\.json audio\.sample_rate must be a whole number from 8000 to 384000, "
                    r"got 'abc'; re-export"),
    "duplicate names": (MANIFEST, _dup_names, r"directions\[1\]\.name 'brighter' is a duplicate"),
    "K disagrees": (MANIFEST, lambda m: m["directions"].pop(),
                    r"steer\.onnx alpha axis 0 is 3, but manifest\.json directions \(count\) is 2"),
    "channels": (MANIFEST, _edit("audio.channels", 1),
                 r"encoder\.onnx log_magnitude axis 1 is 1026, but manifest\.json audio\.channels x "
                 r"\(onnx\.encoder\.spectrum\.n_fft / 2 \+ 1\) is 513"),
    "k > F": (MANIFEST, _edit("sae.k", 600), r"sae\.k \(600\) must not exceed sae\.n_features \(512\)"),
    "escape": (MANIFEST, lambda m: m["files"].update({"../x": {"sha256": "0" * 64, "bytes": 1}}),
               r"files lists '\.\./x', which is outside the bundle"),
    "unknown mode": (MANIFEST, _edit("render", {"default_mode": "lofi"}),
                     r"render\.default_mode must be one of faithful, resynth, got 'lofi'"),
    "change key": (MANIFEST, _edit("render", {"faithful": {"cut_powr": 2}}),
                   r"render\.faithful has unknown keys \['cut_powr'\]"),
    "change range": (MANIFEST, _edit("render", {"faithful": {"bands": 2}}), r"render\.faithful\.bands"),
    "scale mode": (MANIFEST, lambda m: m["directions"][0].update(modes={"lofi": {"up": [1], "down": [-1]}}),
                   r"directions\[0\]\.modes: 'lofi' is not a render mode"),
    "scale order": (MANIFEST, lambda m: m["directions"][0].update(
        modes={"faithful": {"up": [1.0, 0.5], "down": [-1.0]}}),
        r"directions\[0\]\.modes\.faithful\.up must move away from 0 step by step"),
    "scale sign": (MANIFEST, lambda m: m["directions"][0].update(
        modes={"faithful": {"up": [1.0], "down": [0.5]}}), r"directions\[0\]\.modes\.faithful\.down\[0\]"),
    "mirror resynth": (MANIFEST, lambda m: m["directions"][0].update(
        modes={"resynth": {"up": [1.0], "down": [-1.0], "mirror_down": True}}),
        r"modes\.resynth\.mirror_down must be true or false \(true only in faithful mode\)"),
}


@pytest.mark.parametrize("name", list(TAMPERS))
def test_tampered_bundle_is_refused(tiny, tmp_path, name):
    kind, tamper, message = TAMPERS[name]
    path = Path(shutil.copytree(tiny["path"], tmp_path / "bundle"))
    if kind == MANIFEST:
        manifest = json.loads((path / "manifest.json").read_text())
        tamper(manifest)
        (path / "manifest.json").write_text(json.dumps(manifest))
    else:
        tamper(path)
    with pytest.raises(SteerpadError, match=message) as e:
        load_bundle(path)
    assert str(e.value).startswith(f"bundle {path}: ") and "\n" not in str(e.value)


def test_upgrade_stfts_refuses_what_is_no_bundle_in_one_line(tiny, tmp_path, monkeypatch, capsys):
    """A missing folder, a folder without a manifest, a broken manifest and a manifest without
    vae.config each end in one line and exit 2 (they were tracebacks; a hostile pass)."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import upgrade_stfts

    empty = tmp_path / "empty"
    empty.mkdir()
    broken = Path(shutil.copytree(tiny["path"], tmp_path / "broken"))
    (broken / "manifest.json").write_text("{")
    novae = Path(shutil.copytree(tiny["path"], tmp_path / "novae"))
    manifest = json.loads((novae / "manifest.json").read_text())
    del manifest["vae"]
    (novae / "manifest.json").write_text(json.dumps(manifest))
    for folder in (tmp_path / "nope", empty, broken, novae):
        assert upgrade_stfts.main([str(folder)]) == 2, folder
        err = capsys.readouterr().err
        assert err.startswith("steerpad: error: ") and err.count("\n") == 1 and folder.name in err, err


def test_upgrade_stfts_moves_an_older_bundle_over(tiny, tmp_path, monkeypatch):
    """scripts/upgrade_stfts.py (how models/default got its encoder.onnx and decoder.onnx): a
    bundle whose models still hold their STFTs gets models without them, from the same weights,
    encoding and decoding as before; a second run changes nothing."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import upgrade_stfts

    old = Path(shutil.copytree(tiny["path"], tmp_path / "old"))
    encode = export._Encode
    with monkeypatch.context() as m:  # the exporter as it was: the whole encoder and decoder
        m.setattr(export, "_io", lambda vae: export.IO)
        m.setattr(export, "_DecodeSpectrum", lambda vae: vae.decoder)
        m.setattr(export, "_Encode", lambda vae, from_spectrum=False: encode(vae))
        export.export_onnx(tiny["vae"], None, None, tmp_path, models=("encoder", "decoder"))
    manifest = json.loads((old / "manifest.json").read_text())
    for model, key, name in (("encoder", "input", "audio"), ("decoder", "output", "audio")):
        shutil.move(tmp_path / f"{model}.onnx", old / f"{model}.onnx")
        del manifest["onnx"][model]["spectrum"]
        manifest["onnx"][model][key] = name
        manifest["files"][f"{model}.onnx"] = {"sha256": export.sha256(old / f"{model}.onnx"),
                                              "bytes": (old / f"{model}.onnx").stat().st_size}
    (old / "manifest.json").write_text(json.dumps(manifest))
    audio, z, _ = inputs(tiny["folded"], tiny["sae"], 2, 3)
    before = load_bundle(old)
    decoded, encoded = before.decode(z.numpy()), before.encode(audio.numpy())
    assert upgrade_stfts.main([str(old)]) == 0
    after = load_bundle(old)
    for model in ("encoder", "decoder"):
        assert after.manifest["onnx"][model] == tiny["bundle"].manifest["onnx"][model]
    assert maxabs(after.decode(z.numpy()), decoded) < 1e-5
    assert maxabs(after.encode(audio.numpy()), encoded) < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]  # nothing left beside it
    files = {p: p.read_bytes() for p in old.rglob("*") if p.is_file()}
    assert upgrade_stfts.main([str(old)]) == 0
    assert {p: p.read_bytes() for p in old.rglob("*") if p.is_file()} == files


def test_knob_scales_and_render_settings_are_read(tiny, tmp_path):
    path = Path(shutil.copytree(tiny["path"], tmp_path / "bundle"))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["render"] = {"default_mode": "resynth", "faithful": {"cut_power": 2.0, "bands": 32}}
    manifest["directions"][0]["modes"] = {"faithful": {"up": [0.5, 2.0], "down": [-1.0, -4.0],
                                                       "mirror_down": True, "effect_up_std": 1.1}}
    (path / "manifest.json").write_text(json.dumps(manifest))
    b = load_bundle(path)
    assert b.default_mode == "resynth" and b.change.cut_power == 2.0 and b.change.bands == 32
    s = b.directions[0].scale("faithful")
    assert s.mirror_down and s.alpha(0.25) == pytest.approx(0.25) and s.alpha(1.0) == 2.0
    assert s.alpha(-0.75) == pytest.approx(-2.5) and s.alpha(0.0) == 0.0 and s.alpha(-3.0) == -4.0
    linear = b.directions[0].scale("resynth")  # no calibration for the mode: its α range, linearly
    assert linear.alpha(1.0) == b.directions[0].alpha_max and linear.alpha(-0.5) == pytest.approx(
        0.5 * b.directions[0].alpha_min)


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(SteerpadError, match="manifest.json is missing; point at a bundle folder"):
        load_bundle(tmp_path)


# --- atomic writes and the CLI (micro VAE) --------------------------------------------------
@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    """Saved VAE / SAE / steering folders of a micro model, and one bundle exported from them."""
    root = tmp_path_factory.mktemp("micro")
    torch.manual_seed(1)
    save_vae(OobleckVAE(MICRO), root / "vae")
    save_sae(make_sae(MICRO.latent_dim, 64, 4), root / "sae", training={"metrics": {"fvu/val": 0.2}})
    write_steering(root / "steering", 64, NAMES[:2])
    assert cli_main(["export", "--vae", str(root / "vae"), "--sae", str(root / "sae"),
                     "--steering", str(root / "steering"), "--out", str(root / "out" / "bundle")]) == 0
    return root


def _copying_exporters(monkeypatch, bundle: Path) -> None:
    """Make export_onnx / export_torchscript copy the models of `bundle` (exported from the same
    folders): the rest of export_bundle runs for real, without the exporters' ~10 s."""
    def copier(suffix: str):
        def export_models(vae, sae, directions, out_dir):
            for m in export.MODELS:
                shutil.copy(bundle / f"{m}{suffix}", out_dir)
        return export_models
    monkeypatch.setattr(export, "export_onnx", copier(".onnx"))
    monkeypatch.setattr(export, "export_torchscript", copier(".pt"))


def _args(root: Path):
    from steerpad.offline.sae import load_sae
    from steerpad.offline.vae import load_vae

    return (load_vae(root / "vae"), load_sae(root / "sae"), export.load_steering(root / "steering"))


def test_cli_export_end_to_end(micro, capsys, tmp_path):
    b = load_bundle(micro / "out" / "bundle")
    assert (b.sample_rate, b.channels, b.hop, b.latent_dim, len(b.directions)) == (16000, 1, 8, 8, 2)
    assert b.manifest["metrics"]["sae"] == {"fvu/val": 0.2}
    assert b.manifest["provenance"]["steering"] == str((micro / "steering").resolve())
    assert b.render(np.zeros((8, 5), np.float32), np.array([10.0, -5.0], np.float32)).shape == (1, 1, 40)
    # again without --force: refused, through the CLI's one error line
    capsys.readouterr()
    args = ["export", "--vae", str(micro / "vae"), "--sae", str(micro / "sae"),
            "--steering", str(micro / "steering"), "--out", str(micro / "out" / "bundle")]
    assert cli_main(args) == 2
    assert "already exists; pass --force to replace it" in capsys.readouterr().err
    (micro / "steering" / "directions.json").rename(tmp_path / "gone.json")
    try:
        assert cli_main([*args[:-1], str(tmp_path / "other"), "--force"]) == 2
        assert "directions.json: missing" in capsys.readouterr().err
    finally:
        (tmp_path / "gone.json").rename(micro / "steering" / "directions.json")


def _boom(*args, **kwargs):
    raise RuntimeError("check failed")


def test_failed_export_leaves_nothing(micro, tmp_path, monkeypatch):
    vae, sae, steering = _args(micro)
    _copying_exporters(monkeypatch, micro / "out" / "bundle")
    monkeypatch.setattr(export, "check_bundle", _boom)  # fails after every file is written
    with pytest.raises(RuntimeError, match="check failed"):
        export.export_bundle(tmp_path / "b", vae, sae, steering, metrics={}, provenance={})
    assert list(tmp_path.iterdir()) == []  # no bundle, no temp folder


def test_failed_replacement_keeps_the_old_bundle(micro, tmp_path, monkeypatch):
    vae, sae, steering = _args(micro)
    out = Path(shutil.copytree(micro / "out" / "bundle", tmp_path / "b"))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _copying_exporters(monkeypatch, out)
    monkeypatch.setattr(export, "check_bundle", _boom)
    with pytest.raises(RuntimeError, match="check failed"):
        export.export_bundle(out, vae, sae, steering, metrics={}, provenance={}, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["b"]
    load_bundle(out)


def test_force_replaces_a_bundle_but_nothing_else(micro, tmp_path, monkeypatch):
    vae, sae, steering = _args(micro)
    out = Path(shutil.copytree(micro / "out" / "bundle", tmp_path / "b"))
    _copying_exporters(monkeypatch, micro / "out" / "bundle")
    with pytest.raises(SteerpadError, match="already exists; pass --force"):
        export.export_bundle(out, vae, sae, steering, metrics={}, provenance={})
    export.export_bundle(out, vae, sae, steering, metrics={"run": 2}, provenance={}, force=True)
    assert load_bundle(out).manifest["metrics"] == {"run": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["b"]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(SteerpadError, match="steerpad did not write it .no steerpad bundle marker"):
        export.export_bundle(tmp_path / "notes", vae, sae, steering, metrics={}, provenance={}, force=True)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_bad_steering_is_refused_before_any_work(micro, tmp_path):
    vae, sae, steering = _args(micro)
    bad = dict(steering, tensors=dict(steering["tensors"], directions=2 * steering["tensors"]["directions"]))
    with pytest.raises(SteerpadError, match="rows must be finite unit vectors"):
        export.export_bundle(tmp_path / "b", vae, sae, bad, metrics={}, provenance={})
    bad = dict(steering, directions=steering["directions"][:1])
    with pytest.raises(SteerpadError, match="lists 1 directions, the directions tensor has 2 rows"):
        export.export_bundle(tmp_path / "b", vae, sae, bad, metrics={}, provenance={})
    with pytest.raises(SteerpadError, match=r"kit\[0\] \(kick\) latents must be finite \[8, N\]"):
        export.export_bundle(tmp_path / "b", vae, sae, steering, metrics={}, provenance={},
                             kit=[{"name": "kick", "latents": np.zeros((8, 33))}])
    assert list(tmp_path.iterdir()) == []


def test_realtime_bundle_does_not_import_torch():
    code = "import steerpad.realtime.bundle, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_kit_entries_carry_their_source_audio(micro, tmp_path, monkeypatch):
    """Faithful mode plays a kit entry's own one-shot: export stores it as FLAC (a one-shot over
    0 dBFS as FLAC / gain) and the loader gives it back, checked against the bundle's format."""
    _copying_exporters(monkeypatch, micro / "out" / "bundle")
    rng = np.random.default_rng(3)
    quiet = (0.4 * rng.uniform(-1, 1, (1, 200))).astype(np.float32)
    loud = (3.0 * rng.uniform(-1, 1, (1, 256))).astype(np.float32)  # a float file at +9.5 dBFS
    z = np.zeros((8, 4), np.float32)
    kit = [{"name": "quiet", "latents": z, "audio": quiet}, {"name": "loud", "latents": z, "audio": loud},
           {"name": "plain", "latents": z}]
    out = export.export_bundle(tmp_path / "b", *_args(micro), metrics={}, provenance={}, kit=kit,
                               torchscript=False)
    b = load_bundle(out)
    got = {e.name: e.audio for e in b.kit}
    assert got["plain"] is None
    for name, want in (("quiet", quiet), ("loud", loud)):
        assert got[name].shape == want.shape and got[name].dtype == np.float32
        assert np.abs(got[name] - want).max() < 1e-5 * max(1.0, float(np.abs(want).max()))
    assert [e.get("audio_gain") for e in b.manifest["kit"]] == [None, pytest.approx(np.abs(loud).max()), None]
    with pytest.raises(SteerpadError, match=r"kit\[0\] \(long\) audio must be finite \[1, T\] with 1 <= T"):
        export.export_bundle(tmp_path / "c", *_args(micro), metrics={}, provenance={}, torchscript=False,
                             kit=[{"name": "long", "latents": z, "audio": np.zeros((1, 257), np.float32)}])
