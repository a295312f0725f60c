"""Issue 13: steerpad never deletes or overwrites what it did not write, and ingest survives hostile
folders (symlink loops, FIFOs, absurd levels, DC, non-UTF-8 names, unwritable outputs)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import drumsynth
import numpy as np
import pytest
import soundfile as sf

from steerpad.offline.cli import main
from steerpad.offline.ingest import EXACT_DUPLICATES_ONLY, IngestConfig, IngestStore, ingest
from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.outputs import claim_output, kind_of, mark_run, stops_held

SR = 44100
CFG = IngestConfig(workers=1)


def _tree(root: Path) -> dict[str, str]:
    """Every file under root (links not followed) -> sha256 of its bytes (or its link target)."""
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = Path(d) / n
            out[str(p.relative_to(root))] = (os.readlink(p) if p.is_symlink()
                                             else hashlib.sha256(p.read_bytes()).hexdigest())
    return out


@pytest.fixture
def samples(tmp_path) -> Path:
    """A user's folder of one-shots (two kits), plus a text file of theirs."""
    root = tmp_path / "samples"
    for kit in ("kitA", "kitB"):
        (root / kit).mkdir(parents=True)
        seed = 1 if kit == "kitA" else 2
        sf.write(root / kit / "kick.wav", drumsynth.render_kick(seed=seed), SR)
        sf.write(root / kit / "snare.wav", drumsynth.render_snare(seed=seed), SR)
    (root / "notes.txt").write_text("my notes")
    return root


def _cli(capsys, *args) -> tuple[int, str]:
    rc = main([str(a) for a in args])
    err = capsys.readouterr().err
    return rc, err


# ---------------------------------------------------------------- data loss (issue 13, item 1)

def test_ingest_into_its_own_input_with_force_deletes_nothing(samples, capsys):
    before = _tree(samples)
    rc, err = _cli(capsys, "ingest", samples, "--out", samples, "--force", "--no-progress", "--workers", 1)
    assert rc == 2 and err.count("\n") == 1 and "input" in err and str(samples) in err
    rc, err = _cli(capsys, "ingest", samples, "--out", samples / "kitA" / "store", "--no-progress")
    assert rc == 2 and "lies inside the input" in err
    rc, err = _cli(capsys, "ingest", samples / "kitA", "--out", samples, "--force", "--no-progress")
    assert rc == 2 and "holds the input" in err
    assert _tree(samples) == before


def test_force_replaces_only_a_store(samples, tmp_path, capsys):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "song.wav").write_bytes(b"their song")
    afile = tmp_path / "report.txt"
    afile.write_text("their report")
    for target in (theirs, afile):
        rc, err = _cli(capsys, "ingest", samples, "--out", target, "--force", "--no-progress")
        assert rc == 2 and "steerpad did not write it" in err, err
    assert (theirs / "song.wav").read_bytes() == b"their song" and afile.read_text() == "their report"

    store = tmp_path / "store"
    assert _cli(capsys, "ingest", samples, "--out", store, "--no-progress", "--workers", 1)[0] == 0
    assert kind_of(store) == "store"
    rc, err = _cli(capsys, "ingest", samples, "--out", store, "--no-progress")
    assert rc == 2 and "--force" in err
    assert _cli(capsys, "ingest", samples, "--out", store, "--force", "--no-progress", "--workers", 1)[0] == 0
    assert len(IngestStore.open(store)) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.txt", "samples", "store", "theirs"]


def test_a_store_is_not_a_bundle_nor_a_run(samples, tmp_path):
    store = tmp_path / "store"
    ingest([samples], store, CFG, progress=False)
    with pytest.raises(SteerpadError, match="is a steerpad store, not a steerpad bundle"):
        claim_output(store, "bundle", force=True)
    with pytest.raises(SteerpadError, match="is a steerpad store, not a steerpad vae run folder"):
        claim_output(store, "run:vae", resume=True)
    link = tmp_path / "link"
    link.symlink_to(store)
    with pytest.raises(SteerpadError, match="a symlink"):
        claim_output(link, "store", force=True)


def test_stages_refuse_a_folder_they_did_not_write(samples, tmp_path, capsys):
    """encode, train vae, train sae, eval and train write into folders: never into a user's."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "meta.json").write_text('{"mine": true}')
    (theirs / "metrics.json").write_text('{"mine": true}')
    before = _tree(theirs)
    store = tmp_path / "store"
    ingest([samples], store, CFG, progress=False)
    vae = Path(__file__).parent / "fixtures" / "synth_vae"
    bundle = Path(__file__).parents[1] / "models" / "default"
    for args in (["encode", store, "--vae", vae, "--out", theirs],
                 ["train", "vae", store, "--out", theirs, "--steps", 1],
                 ["train", "--data", samples, "--out", tmp_path / "b", "--work", theirs],
                 ["train", "--data", samples, "--out", theirs],
                 ["eval", bundle, "--data", samples, "--out", theirs],
                 ["encode", store, "--vae", vae, "--out", store / "latents"]):
        rc, err = _cli(capsys, *args)
        refused = "steerpad did not write it" in err or "input" in err
        assert rc == 2 and err.count("\n") == 1 and refused, (args, err)
    assert _tree(theirs) == before
    assert not (tmp_path / "b").exists()


def test_a_path_that_appears_while_a_command_runs_is_not_replaced(tmp_path):
    from steerpad.realtime.outputs import replace_claimed

    tmp = tmp_path / ".x.wav.123.tmp"
    tmp.write_bytes(b"the render")
    out = tmp_path / "x.wav"
    out.write_bytes(b"a file the user saved there meanwhile")
    with pytest.raises(SteerpadError, match="steerpad did not write it"):
        replace_claimed(tmp, out, "wav")
    assert out.read_bytes() == b"a file the user saved there meanwhile" and not tmp.exists()


def test_a_stop_inside_stops_held_lands_as_the_block_ends():
    """What lets a file be made and handed to its cleanup as one step: a SIGTERM that arrives
    inside the block runs the handler that was in place once the block has finished, and a
    thread other than the main one (where Python runs no handlers) passes straight through."""
    class Stop(Exception):
        pass

    def stop(signum, frame):
        raise Stop(signum)

    before = signal.signal(signal.SIGTERM, stop)
    try:
        done = []
        with pytest.raises(Stop):
            with stops_held():
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(10_000):  # without the hold, the handler would have run in here
                    pass
                done.append("made and held")
        assert done == ["made and held"] and signal.getsignal(signal.SIGTERM) is stop
        with stops_held():  # nothing arrived: nothing raised
            done.append("again")
        import threading

        t = threading.Thread(target=lambda: stops_held().__enter__() or done.append("thread"))
        t.start()
        t.join()
        assert done[-1] == "thread" and signal.getsignal(signal.SIGTERM) is stop
    finally:
        signal.signal(signal.SIGTERM, before)


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    """A `timeout` or a job manager stops a render: rc 143, one line, no hidden .tmp left."""
    import mido

    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    for i in range(240):  # two minutes of hits, each with a knob move before it
        track.append(mido.Message("control_change", channel=0, control=70, value=i % 128, time=0))
        track.append(mido.Message("note_on", channel=9, note=36 + i % 16, velocity=100, time=240))
    mid.save(tmp_path / "long.mid")
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "steerpad.offline.cli", "render",
                             str(tmp_path / "long.mid"), "--bundle", str(repo / "models" / "default"),
                             "--preset", str(repo / "presets" / "default.toml"),
                             "--out", str(tmp_path / "long.wav")],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".long.wav.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert list(tmp_path.glob(".long.wav.*.tmp")), "the render never started writing"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert "Traceback" not in err, err
    left = sorted(p.name for p in tmp_path.iterdir())
    if proc.returncode == 0:  # the render had already finished: a whole file, nothing hidden
        assert left == ["long.mid", "long.wav"], (left, err)
    else:
        assert proc.returncode == 128 + signal.SIGTERM and left == ["long.mid"], (proc.returncode, left, err)


def test_a_marked_run_folder_resumes_and_an_empty_one_is_taken(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert claim_output(empty, "run:vae", resume=True) is True
    mark_run(empty, "vae")
    assert kind_of(empty) == "run:vae" and claim_output(empty, "run:vae", resume=True) is True
    with pytest.raises(SteerpadError, match="is a steerpad vae run folder, not a steerpad eval run"):
        claim_output(empty, "run:eval", resume=True)  # eval never writes into a training run
    assert claim_output(tmp_path / "new" / "deeper", "run:sae", resume=True) is False
    assert (tmp_path / "new").is_dir()


# ---------------------------------------------------------------- hostile folders (item 4)

def test_symlink_loops_and_fifos_are_skipped_not_followed(samples, tmp_path):
    (samples / "kitA" / "loop1").symlink_to(".")
    (samples / "kitA" / "loop2").symlink_to("..")
    (samples / "a.wav").symlink_to("b.wav")
    (samples / "b.wav").symlink_to("a.wav")
    (samples / "dangling.wav").symlink_to("nowhere.wav")
    os.mkfifo(samples / "kitB" / "pipe.wav")
    (samples / "kitB" / "folder.wav").mkdir()
    out = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-m", "steerpad.offline.cli", "ingest", str(samples),
                           "--out", str(out), "--no-progress", "--workers", "2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    skips = [line for line in proc.stderr.splitlines() if line.startswith("skip ")]
    assert any("pipe.wav" in s and "FIFO" in s for s in skips), skips
    assert sum(("a.wav" in s or "b.wav" in s) and "symbolic links" in s for s in skips) == 2, skips
    assert any("dangling.wav" in s for s in skips)
    assert len(IngestStore.open(out)) == 4  # each real file once, through any number of links
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_absurd_levels_and_dc_are_refused_at_ingest(tmp_path):
    d = tmp_path / "in" / "kit"
    d.mkdir(parents=True)
    good = drumsynth.render_kick(seed=0)
    sf.write(d / "kick.wav", good, SR, subtype="FLOAT")
    sf.write(d / "loud_kick.wav", good * 1e30, SR, subtype="FLOAT")
    sf.write(d / "dc_kick.wav", np.full(SR, 0.5, np.float32), SR, subtype="FLOAT")
    sf.write(d / "1hz_kick.wav", good[:17640], 1, subtype="FLOAT")  # a broken header's rate
    summary = ingest([tmp_path / "in"], tmp_path / "store", CFG, progress=False)
    assert summary.clips == 1 and summary.skipped == {"level": 1, "dc": 1, "unreadable": 1}
    reasons = {Path(s["path"]).name: s["reason"] for s in summary.skipped_files}
    assert "+599" in reasons["loud_kick.wav"] and "AC" in reasons["dc_kick.wav"]


def test_training_names_a_clip_with_an_absurd_level(tmp_path):
    """A store written before ingest refused such clips: training names the clip, not the lr."""
    from steerpad.offline.vae_train import VAETrainConfig, train_vae

    d = tmp_path / "in"
    for k, kit in enumerate(("a", "b")):
        (d / kit).mkdir(parents=True)
        for i in range(2):
            sf.write(d / kit / f"kick{i}.wav", drumsynth.render_kick(seed=i + 7 * k), SR)
    store = tmp_path / "store"
    ingest([d], store, IngestConfig(workers=1, frames=4, val_kits=["b"], **EXACT_DUPLICATES_ONLY),
           progress=False)
    opened = IngestStore.open(store)
    victim = next(r for r in opened.records if r.split == "val")
    shard, offset, _ = opened._locs[victim.id]
    audio = np.load(store / f"audio_{shard:03d}.npy")
    audio[:, offset:offset + 100] = 1e30
    np.save(store / f"audio_{shard:03d}.npy", audio)
    with pytest.raises(SteerpadError, match=f"clip {victim.id} .*{Path(victim.path).name}"):
        train_vae(store, tmp_path / "run", VAETrainConfig(model="tiny", steps=1), progress=False)


def test_non_utf8_names_are_read(tmp_path, capsys):
    folder = os.fsencode(tmp_path / "in") + b"/kit\xff"
    os.makedirs(folder)
    sf.write(folder + b"/kick\xe9.wav", drumsynth.render_kick(seed=1), SR)
    sf.write(folder + b"/snare.wav", drumsynth.render_snare(seed=1), SR)
    rc, err = _cli(capsys, "ingest", tmp_path / "in", "--out", tmp_path / "store", "--no-progress",
                   "--workers", 1)
    assert rc == 0, err
    store = IngestStore.open(tmp_path / "store")
    assert len(store) == 2 and store.summary["skipped"] == {}


# ---------------------------------------------------------------- unwritable outputs (item 12)

def test_out_under_a_regular_file_is_one_line(samples, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    rc, err = _cli(capsys, "ingest", samples, "--out", afile / "store", "--no-progress")
    assert rc == 2 and err.count("\n") == 1 and "is a file, not a folder" in err


def test_read_only_and_full_file_systems_are_one_line_and_leave_nothing(samples, mount_tmpfs, capsys):
    ro = mount_tmpfs("ro,size=1m")
    rc, err = _cli(capsys, "ingest", samples, "--out", ro / "store", "--no-progress")
    assert rc == 2 and err.count("\n") == 1 and "Read-only" in err, err
    full = mount_tmpfs("size=64k")
    rc, err = _cli(capsys, "ingest", samples, "--out", full / "store", "--no-progress", "--workers", 1)
    assert rc == 1 and err.count("\n") == 1 and "--out" in err and "is the disk full" in err, err
    assert list(full.iterdir()) == []  # no .partial folder left behind


@pytest.mark.parametrize("stop, code, line", [
    (KeyboardInterrupt(), 130, "steerpad: interrupted\n"),
    ("SIGTERM", 143, "steerpad: stopped by SIGTERM\n"),
])
def test_a_stop_that_a_library_turns_into_its_own_error_is_still_a_stop(monkeypatch, capsys, stop, code,
                                                                       line):
    """A stop landing in numba's or onnxruntime's C code comes back as their SystemError or
    ImportError raised while handling it: exit 130 / 143 and one line, not 'internal error'."""
    from steerpad.offline import cli

    if stop == "SIGTERM":
        stop = cli.Stopped(signal.SIGTERM)

    def run(*args):
        try:
            raise stop
        except KeyboardInterrupt:
            raise SystemError("CPUDispatcher(<function _viterbi>) returned a result with an "
                              "exception set") from None

    monkeypatch.setattr(cli, "_run", run)
    assert cli.main(["render", "x.mid"]) == code
    assert capsys.readouterr().err == line
