"""Hostile bundles (issue #13): every number of manifest.json is range-checked (bundle.LIMITS and
friends), manifest.json's size and nesting are capped before it is parsed, and a broken kit,
probes or ONNX file is refused by name. Each refusal is one SteerpadError line naming the bundle,
the field or file, and what to do; never a traceback, a hang or a huge allocation.

Each test edits a fresh copy of the shipped models/default (the manifest does not hash itself;
a test that rewrites a listed file refreshes its entry in manifest.json `files`)."""

from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from steerpad.realtime.bundle import LIMITS, MANIFEST_MAX_BYTES, load_bundle, parse_directions, sha256
from steerpad.realtime.errors import SteerpadError

DEFAULT = Path(__file__).resolve().parents[2] / "models" / "default"
FIX = "; re-export the bundle"


@pytest.fixture
def bundle(tmp_path) -> Path:
    return Path(shutil.copytree(DEFAULT, tmp_path / "bundle"))


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def write_manifest(path: Path, m: dict) -> None:
    (path / "manifest.json").write_text(json.dumps(m))  # json.dumps writes NaN as NaN, as a hostile one may


def rewrite(path: Path, rel: str, data: bytes) -> None:
    """Replace a listed file and refresh its size and hash in manifest.json, as a forger would."""
    (path / rel).write_bytes(data)
    m = manifest(path)
    m["files"][rel] = {"sha256": sha256(path / rel), "bytes": len(data)}
    write_manifest(path, m)


def refused(path: Path, pattern: str) -> str:
    with pytest.raises(SteerpadError) as e:
        load_bundle(path)
    msg = str(e.value)
    assert msg.startswith(f"bundle {path}: ") and "\n" not in msg and len(msg) < 400, msg
    assert re.search(pattern, msg), msg
    return msg


def at(dotted: str, value):
    def edit(m: dict) -> None:
        *parents, last = dotted.split(".")
        for k in parents:
            m = m[int(k)] if isinstance(m, list) else m[k]
        if value is DELETE:
            del m[last]
        elif isinstance(m, list):
            m[int(last)] = value
        else:
            m[last] = value
    return edit


DELETE = object()


def test_the_copy_loads(bundle):
    """The baseline every test below breaks one thing of."""
    assert load_bundle(bundle).sample_rate == 44100


# --- every number in its range ----------------------------------------------------------------
@pytest.mark.parametrize("key", list(LIMITS))
@pytest.mark.parametrize("side", ["below", "above"])
def test_every_limit_is_enforced(bundle, key, side):
    lo, hi = LIMITS[key]
    value = lo - 1 if side == "below" else hi + 1
    m = manifest(bundle)
    at(key, value)(m)
    write_manifest(bundle, m)
    refused(bundle, rf"manifest\.json {re.escape(key)} must be a whole number from {lo} to {hi}, "
                    rf"got {value}{FIX}$")


BAD_FIELDS = {
    # the cases: silence bounced at 1e12 Hz, 8 TiB allocated for a 2^40 hop
    "sample rate 1e12": (at("audio.sample_rate", 10**12),
                         r"audio\.sample_rate must be a whole number from 8000 to 384000, got 1000000000000"),
    "hop 2^40": (at("audio.hop", 2**40),
                 r"audio\.hop must be a whole number from 1 to 65536, got 1099511627776"),
    "max_frames 2^40": (at("audio.max_frames", 2**40), r"audio\.max_frames must be a whole number from 1 to"),
    "n_features 2^40": (at("sae.n_features", 2**40), r"sae\.n_features must be a whole number from 1 to"),
    "a sound too long": (at("audio.max_frames", 4096),  # 4096 x 2048 samples = 190 s at 44.1 kHz
                         r"audio\.max_frames x audio\.hop is 8388608 samples \(190\.2 s at "
                         r"audio\.sample_rate.* at most 60 s"),
    "a sound too big": (lambda m: m["audio"].update(sample_rate=384000, max_frames=8192),  # 44 s, x 2 ch
                        r"audio\.max_frames x audio\.hop is 16777216 samples .* 16777216 samples over all"),
    # wrong types: a string, a float, a bool, a list, null, a huge integer
    "string rate": (at("audio.sample_rate", "44100"),
                    r"audio\.sample_rate must be a whole number .* got '44100'"),
    "float rate": (at("audio.sample_rate", 44100.0),
                   r"audio\.sample_rate must be a whole number .* got 44100\.0"),
    "bool channels": (at("audio.channels", True),
                      r"audio\.channels must be a whole number from 1 to 8, got True"),
    "list hop": (at("audio.hop", [2048]), r"audio\.hop must be a whole number .* got \[2048\]"),
    "null dim": (at("latent.dim", None), r"latent\.dim must be a whole number .* got None"),
    "audio a list": (at("audio", [44100, 2]), r"manifest\.json audio must be an object, got \[44100, 2\]"),
    "latent a string": (at("latent", "x"), r"manifest\.json latent must be an object, got 'x'"),
    "missing std": (at("latent.std", DELETE), r"manifest\.json latent\.std is missing"),
    "missing probes file": (at("probes_file", DELETE), r"manifest\.json probes_file is missing"),
    # latent statistics: finite, in range, the std above zero
    "mean 1e300": (at("latent.mean.5", 1e300),
                   r"latent\.mean\[5\] must be a number from -1e\+06 to 1e\+06, got 1e\+300"),
    "mean 10^90": (at("latent.mean.5", 10**90), r"latent\.mean\[5\] must be a number .* got 1000000000"),
    "std zero": (at("latent.std.3", 0), r"latent\.std\[3\] must be a number from 1e-06 to 1e\+06, got 0"),
    "std tiny": (at("latent.std.3", 1e-30), r"latent\.std\[3\] must be a number from 1e-06"),
    "std a string": (at("latent.std.3", "1"), r"latent\.std\[3\] must be a number .* got '1'"),
    "std a dict": (at("latent.std", {"a": 1}), r"latent\.std must be a list, got \{'a': 1\}"),
    "level pair": (at("sae.level_pair", "yes"), r"sae\.level_pair must be true or false, got 'yes'"),
    # directions: alpha ranges finite, around 0 and ordered; a bounded count; short names
    "alpha 1e300": (at("directions.0.alpha_max", 1e300),
                    r"directions\[0\]\.alpha_max must be a number from 0 to 1e\+06, got 1e\+300"),
    "alpha -10^90": (at("directions.0.alpha_min", -10**90), r"directions\[0\]\.alpha_min must be a number"),
    "alpha off centre": (at("directions.1.alpha_min", 5.0),
                         r"directions\[1\]\.alpha_min must be a number from -1e\+06 to 0, got 5\.0"),
    "alpha a string": (at("directions.1.alpha_max", "2"),
                       r"directions\[1\]\.alpha_max must be a number .* got '2'"),
    "alpha unordered": (lambda m: m["directions"][2].update(alpha_min=0.0, alpha_max=0.0),
                        r"directions\[2\]: alpha_min 0\.0 must be below alpha_max 0\.0"),
    "300 directions": (lambda m: m["directions"].extend(dict(m["directions"][0], name=f"d{i}")
                                                        for i in range(291)),
                       r"directions has 300 entries; 1 to 256 are allowed"),
    "escape in a name": (at("directions.0.name", "x\x1b[31mRED"),
                         r"directions\[0\]\.name must not hold control characters, got 'x\\x1b\[31mRED'"),
    "long name": (at("directions.0.name", "x" * 1000),
                  r"directions\[0\]\.name must be a non-empty string of at most"),
    "descriptor std": (at("descriptors.centroid.std", "wide"),
                       r"descriptors\.'centroid'\.std must be a number"),
    "file name with a newline": (lambda m: m["files"].update({"x\ny": {"sha256": "0" * 64, "bytes": 1}}),
                                 r"files lists 'x\\ny', a name with control characters"),
    # the decoder's inverse STFT
    "spectrum a list": (at("onnx.decoder.spectrum", [1024, 256]),
                        r"onnx\.decoder\.spectrum must be an object, got \[1024, 256\]"),
    "spectrum hop 3": (at("onnx.decoder.spectrum.hop", 3),
                       r"onnx\.decoder\.spectrum: n_fft 1024 must be 1 to 16 times hop 3"),
    "spectrum n_fft 2^40": (at("onnx.decoder.spectrum.n_fft", 2**40),
                            r"onnx\.decoder\.spectrum\.n_fft must be a whole number from 2 to 65536"),
    "spectrum n_fft 2048": (at("onnx.decoder.spectrum.n_fft", 2048),
                            r"decoder\.onnx .*onnx\.decoder\.spectrum\.n_fft / 2 \+ 1"),
    "encoder floor 0": (at("onnx.encoder.spectrum.floor", 0),
                        r"onnx\.encoder\.spectrum\.floor must be a number from 1e-30 to 1"),
    "encoder hop 100": (at("onnx.encoder.spectrum.hop", 100),
                        r"onnx\.encoder\.spectrum: n_fft 1024 must be 1 to 16 times hop 100"),
    # a hop within bounds that the models were not made with (a render gave audio of the wrong
    # length, an encode an error)
    "decoder hop 512": (at("onnx.decoder.spectrum.hop", 512),
                        r"decoder\.onnx gives 16 STFT frames from 2 latent frames, not the 8 that "
                        r"manifest\.json onnx\.decoder\.spectrum\.hop 512 and audio\.hop 2048 mean"),
    "encoder hop 512": (at("onnx.encoder.spectrum.hop", 512),
                        r"encoder\.onnx gives 1 latent frames from 4096 samples, not the 2 that "
                        r"manifest\.json onnx\.encoder\.spectrum\.hop 512"),
    # the kit list
    "kit label": (at("kit.0.label", {"x": 1}), r"kit\[0\]\.label must be a string .* got \{'x': 1\}"),
    "2000 kit entries": (lambda m: m["kit"].extend(dict(m["kit"][0], name=f"k{i}") for i in range(1984)),
                         r"kit has 2000 entries, at most 1024 are allowed"),
}


@pytest.mark.parametrize("name", list(BAD_FIELDS))
def test_bad_field_is_refused_by_name(bundle, name):
    edit, pattern = BAD_FIELDS[name]
    m = manifest(bundle)
    edit(m)
    write_manifest(bundle, m)
    assert refused(bundle, pattern).endswith(FIX)


# --- manifest.json itself: size, depth, encoding, strict JSON ---------------------------------
def _text(path: Path) -> str:
    return (path / "manifest.json").read_text()


BAD_TEXT = {
    "200000 deep": (lambda t: t[:-2] + ', "x": ' + "[" * 200_000 + "]" * 200_000 + "}",
                    r"manifest\.json nests objects and lists more than 32 levels deep"),
    "33 deep": (lambda t: t[:-2] + ', "x": ' + "[" * 33 + "]" * 33 + "}",
                r"manifest\.json nests objects and lists more than 32 levels deep"),
    "over the size cap": (lambda t: t + " " * MANIFEST_MAX_BYTES, r"manifest\.json is larger than 2 MiB"),
    "NaN": (lambda t: t.replace('"metrics": {', '"metrics": {"loss": NaN, ', 1),
            r"manifest\.json is not valid JSON \(NaN is not a JSON number\)"),
    "Infinity": (lambda t: t.replace('"max_frames": 32', '"max_frames": Infinity', 1),
                 r"not valid JSON \(Infinity is not a JSON number\)"),
    "5000-digit integer": (lambda t: t.replace('"metrics": {', '"metrics": {"n": ' + "9" * 5000 + ", ", 1),
                           r"not valid JSON \(an integer of 5000 digits\)"),
    "101-digit hop": (lambda t: t.replace('"hop": 2048', '"hop": ' + "1" * 101, 1),
                      r"not valid JSON \(an integer of 101 digits\)"),
    "truncated": (lambda t: t[: len(t) // 2], r"manifest\.json is not valid JSON \(.*line \d+ column"),
    "empty": (lambda t: "", r"manifest\.json is not valid JSON"),
    "a list": (lambda t: "[1, 2]", r"manifest\.json must hold an object, got \[1, 2\]"),
}


@pytest.mark.parametrize("name", list(BAD_TEXT))
def test_bad_manifest_text_is_refused(bundle, name):
    edit, pattern = BAD_TEXT[name]
    text = _text(bundle)
    (bundle / "manifest.json").write_text(edit(text.rstrip()) + "\n")
    refused(bundle, pattern)


def test_non_utf8_manifest_is_refused(bundle):
    key = b'"steerpad_version": "'
    data = (bundle / "manifest.json").read_bytes().replace(key, key + b"\xff\xfe", 1)
    (bundle / "manifest.json").write_bytes(data)
    refused(bundle, r"manifest\.json is not valid JSON \(not UTF-8 text: invalid start byte at byte \d+\)")


def test_brackets_and_escaped_quotes_inside_strings_do_not_count_as_nesting(bundle):
    m = manifest(bundle)
    m["provenance"]["notes"] = '[{"' * 100 + '\\"[[[' + "]" * 50  # 300+ brackets, all in one string
    write_manifest(bundle, m)
    assert load_bundle(bundle).manifest["provenance"]["notes"] == m["provenance"]["notes"]


# --- the files: kit .npy, probes.safetensors, ONNX --------------------------------------------
def _npy(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=array.dtype == object)
    return buf.getvalue()


def _huge_npy_header(template: bytes) -> bytes:
    """kick.npy's own bytes with a header claiming [2^40, 1] float32 (4 TiB)."""
    header_len = struct.unpack("<H", template[8:10])[0]
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1), }"
    header = header.ljust(header_len - 1) + "\n"
    return template[:10] + header.encode() + template[10 + header_len:]


KICK = "kit/kick.npy"
BAD_FILES = {
    "npy claims 4 TiB": (KICK, lambda b: _huge_npy_header(b),
                         r"kit/kick\.npy must hold finite float32 latents \[D=64, N <= 32\] .* got float32 "
                         r"\[1099511627776, 1\]"),
    "npy float64": (KICK, lambda b: _npy(np.zeros((64, 3))),
                    r"kit/kick\.npy must hold .* got float64 \[64, 3\]"),
    "npy 3 dims": (KICK, lambda b: _npy(np.zeros((64, 3, 1), np.float32)), r"got float32 \[64, 3, 1\]"),
    "npy no frames": (KICK, lambda b: _npy(np.zeros((64, 0), np.float32)), r"got float32 \[64, 0\]"),
    "npy pickled objects": (KICK, lambda b: _npy(np.array([[{"a": 1}]] * 64, dtype=object)),
                            r"kit/kick\.npy must hold .* got object \[64, 1\]"),
    "npy huge values": (KICK, lambda b: _npy(np.full((64, 3), 1e30, np.float32)),
                        r"kit/kick\.npy must hold .* with \|x\| <= 1e\+06, it has values beyond that"),
    "npy infinite": (KICK, lambda b: _npy(np.full((64, 3), np.inf, np.float32)),
                     r"it has values beyond that"),
    "npy truncated": (KICK, lambda b: b[: len(b) - 100],
                      r"kit/kick\.npy holds \d+ bytes of data, its header says"),
    "npy not npy": (KICK, lambda b: b"hello", r"kit/kick\.npy is not a readable \.npy file"),
    "npy header garbage": (KICK, lambda b: b"\x93NUMPY\x01\x00\x88\x13" + b"{" * 4999 + b"\n",  # 5000 bytes
                           r"kit/kick\.npy is not a readable \.npy file \(.+\)"),
    "probes header 2^62": ("probes.safetensors", lambda b: struct.pack("<Q", 1 << 62) + b[8:],
                           r"probes\.safetensors is not a readable safetensors file \(.*header too large"),
    "probes truncated": ("probes.safetensors", lambda b: b[: len(b) // 2],
                         r"probes\.safetensors is not a readable safetensors file \("),
    "probes garbage": ("probes.safetensors", lambda b: b"\x00" * 7, r"probes\.safetensors is not a readable"),
    "onnx garbage": ("decoder.onnx", lambda b: np.random.default_rng(0).bytes(5000),
                     r"decoder\.onnx is not a model onnxruntime can load \(.+\)"),
    "onnx empty": ("steer.onnx", lambda b: b"", r"steer\.onnx is not a model onnxruntime can load"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_file_is_refused_by_name(bundle, name):
    rel, make, pattern = BAD_FILES[name]
    rewrite(bundle, rel, make((bundle / rel).read_bytes()))
    assert refused(bundle, pattern).endswith(FIX)


def test_probe_of_the_wrong_size_is_refused(bundle):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(bundle / "probes.safetensors"))
    tensors["probe.centroid.weight"] = tensors["probe.centroid.weight"][:, :100].copy()
    save_file(tensors, str(bundle / "probes.safetensors"))
    rewrite(bundle, "probes.safetensors", (bundle / "probes.safetensors").read_bytes())
    refused(bundle, r"probes\.safetensors probe 'centroid' has weight F32 \[8, 100\] .* expected F32 "
                    r"\[bins <= 1024, sae\.n_features = 4096\]")


def test_a_steering_folders_huge_integer_alpha_is_refused():
    """parse_directions also checks export's directions.json, parsed without the manifest's digit
    cap: an integer too big for a float is refused, not an OverflowError."""
    entry = {"name": "up", "descriptor": "centroid", "unit": "Hz", "alpha_min": -10**400, "alpha_max": 1.0,
             "polarity": 1}
    with pytest.raises(SteerpadError, match=r"^steering: directions\[0\]\.alpha_min must be a number from "
                                            r"-1e\+06 to 0, got -1000.*; fix it$"):
        parse_directions([entry], "steering: directions", "fix it")


@pytest.mark.parametrize("value", [np.nan, 1e30])
def test_kit_audio_beyond_full_scale_is_refused_at_load(bundle, value):
    """A kit entry's audio that is not finite or beyond +-1 (a float WAV under the .flac name) was
    loaded, and failed at the first render (NaN) or warned over several lines (1e30)."""
    import io

    import soundfile as sf

    m = manifest(bundle)
    rel = m["kit"][0]["audio"]
    data = io.BytesIO()
    sf.write(data, np.full((1000, m["audio"]["channels"]), value, np.float32), m["audio"]["sample_rate"],
             format="WAV", subtype="FLOAT")
    rewrite(bundle, rel, data.getvalue())
    refused(bundle, re.escape(rel) + r" holds samples that are not finite or beyond full scale")


def test_a_model_with_external_data_is_refused(bundle):
    """Weights in an external data file (not in `files`, so not hashed) could be swapped under a
    valid manifest: the models load from their hashed bytes, where external data cannot load."""
    import onnx

    model = onnx.load(str(bundle / "decoder.onnx"))
    onnx.save_model(model, str(bundle / "decoder.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="w.bin")
    rewrite(bundle, "decoder.onnx", (bundle / "decoder.onnx").read_bytes())
    refused(bundle, r"decoder\.onnx keeps its weights in external data files")
