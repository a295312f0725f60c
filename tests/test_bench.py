"""scripts/bench's machinery: every benchmark runs and reports sane numbers (not their speed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))  # bench/ is not a package
import bench  # noqa: E402
from steerpad.offline.sae import SAEConfig  # noqa: E402
from steerpad.realtime.errors import SteerpadError  # noqa: E402
from tests.tinystore import tiny_config  # noqa: E402


def test_quick_run_prints_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench" / "report.json"
    assert bench.main(["--quick", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert json.loads(out.read_text()) == report
    assert set(report["results"]) == set(bench.BENCHES)
    assert report["options"] == {"quick": True, "threads": None, "device": "cpu", "load": False}
    r = report["results"]
    assert r["sae_train"]["sae/vectors_per_s"] > 0 and r["sae_train"]["sae/n_features"] == 4096
    for config in ("vae_small", "vae_sao"):
        m = r[config]
        assert m["time/decode_ms"] > 0 and m["rtf/decode"] > 0
        assert m["rtf/decode"] == pytest.approx(m["time/decode_ms"] / 1000 / m["audio/seconds"])
    # SAO's VAE is ~78 M parameters a side; small is far smaller.
    assert 70e6 < r["vae_sao"]["params/decoder"] < 90e6
    assert r["vae_small"]["params/decoder"] < r["vae_sao"]["params/decoder"] / 20
    assert r["vae_train_small"]["vae_train/steps_per_s"] > 0
    e = r["export_onnx"]
    assert e["onnx/decode_ms"] > 0 and e["torch/decode_ms"] > 0 and e["onnx/steer_ms"] > 0
    assert e["onnx/decode_max_abs_error"] < 1e-4
    live = r["live_render"]
    for mode in ("render", "render/resynth"):  # faithful (the plain keys) and resynth
        assert 0 < live[f"{mode}/compute_p50_ms"] <= live[f"{mode}/knob_to_fresh_p50_ms"]
    assert live["render/one_shot_s"] > 0.9  # a 1 s one-shot, resampled to 48 kHz
    cb = r["live_callback"]
    assert 0 < cb["callback/p50_ms"] <= cb["callback/p99_ms"] and cb["callback/mean_voices"] > 12
    m = r["live_modulation"]
    assert m["live_modulation/ringing_measured"] >= 2  # every ringing voice took the fresh render
    assert 0 < m["live_modulation.knob_to_ringing_ms/p50"] < m["live_modulation.knob_to_all_pads_ms/p90"]
    j = r["live_jack"]
    assert j["jack/hits"] >= 10 and j["jack/within_one_block"] > 0.5
    assert j["jack/xruns_steerpad"] >= 0 and j["jack/xruns_plain_client"] >= 0
    assert j["jack_client/hits"] >= 10 and j["jack_client/within_one_block"] > 0.5
    assert 0 < j["jack_client/callback_p50_ms"] <= j["jack_client/callback_p99_ms"]
    f = r["live_oscfeed"]
    assert 0 < f["oscfeed/callback_p50_ms_off"] and 0 < f["oscfeed/callback_p50_ms_on"]
    assert f["oscfeed/frames_per_s"] > 30 and f["oscfeed/feed_cpu_ms_per_s"] > 0
    assert f["oscfeed/send_errors"] == 0
    for name in bench.BENCHES:
        assert name in captured.err  # the table names every benchmark
    assert "rtf/decode" in captured.err


def test_only_and_threads(capsys):
    assert bench.main(["--quick", "--only", "vae_small", "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["results"]) == ["vae_small"]
    assert report["results"]["vae_small"]["torch/threads"] == 1


def test_unknown_benchmark_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--only", "nope"])
    assert e.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_throughput_reports_speed():
    result = bench.sae_throughput(n_vectors=1024, batch=512, config=SAEConfig(n_features=256, k=8))
    assert result["sae/vectors_per_s"] > 0 and result["sae/vectors_per_s_auxk"] > 0
    assert result["sae/batch"] == 512


def test_step_rate_benchmark_runs():
    rate = bench.vae_train_step_rate(tiny_config(), batch=1, crop_frames=8, steps=1, threads=1)
    assert rate > 0
    with pytest.raises(SteerpadError, match="crop_frames"):  # 4 x 256 samples < 2048-point STFT
        bench.vae_train_step_rate(tiny_config(), batch=1, crop_frames=4, steps=1, threads=1)
