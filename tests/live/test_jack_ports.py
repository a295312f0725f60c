"""steerpad as a JACK client of its own (realtime/jackio.py), on the session's dummy JACK server:
the named client and ports a DAW sees (`jack_lsp`), --connect, --outputs pads|groups, a hit
recorded from a per-pad port, and MIDI on steerpad:midi_in. Plus the MIDI fallback for an API
without virtual ports (Windows' WinMM), played here by JACK MIDI with that ability taken away."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from rig.jackrig import Recorder, Sender, first_onset

from steerpad.offline.cli import main
from steerpad.realtime import jackio, midi
from steerpad.realtime.bundle import load_bundle
from steerpad.realtime.engine import Engine
from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.presets import load_preset
from tests.chainbundle import write_preset

pytestmark = pytest.mark.slow


def lsp(*flags: str) -> list[str]:
    return subprocess.run(["jack_lsp", *flags], capture_output=True, text=True).stdout.splitlines()


def connections(lines: list[str], port: str) -> list[str]:
    """What `port` connects to, from `jack_lsp -c` lines (its connections are indented under it)."""
    i = lines.index(port)
    out = []
    for line in lines[i + 1:]:
        if not line.startswith("   "):
            break
        out.append(line.strip())
    return out


@pytest.mark.parametrize("outputs, buses, connect", [
    ("pads", ["pad01", "pad02", "pad03", "pad04"], None),
    ("groups", ["hats", "pad03", "pad04"], "system"),  # pads 1-2 share the choke group "hats"
])
def test_jack_lsp_shows_the_named_client_and_its_ports(jack_server, chain, tmp_path, outputs, buses, connect):
    preset = write_preset(tmp_path, chain / "kits" / "synth_kit_6")
    name = "steerpad" if outputs == "pads" else f"steerpad-lsp-{outputs}"  # the default name, then another
    named = [] if name == "steerpad" else ["--client-name", name]
    live = subprocess.Popen(
        [sys.executable, "-m", "steerpad.offline.cli", "live", "--bundle", str(chain / "bundle"), "--preset",
         str(preset), *named, "--outputs", outputs,
         *(["--connect", connect] if connect else []), "--no-status", "--duration", "60"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while f"{name}:main_L" not in lsp():
            assert live.poll() is None and time.monotonic() < deadline, live.communicate()
            time.sleep(0.1)
        time.sleep(0.3)  # --connect connects right after the client goes active
        ours = [p for p in lsp() if p.startswith(name + ":")]
        expected = ["main_L", "main_R"] + [f"{b}_{s}" for b in buses for s in "LR"] + ["midi_in"]
        assert sorted(ours) == sorted(f"{name}:{p}" for p in expected)
        typed = lsp("-t")
        assert "midi" in typed[typed.index(f"{name}:midi_in") + 1]
        assert "audio" in typed[typed.index(f"{name}:pad03_L" if outputs == "pads" else f"{name}:hats_L") + 1]
        wired = lsp("-c")
        if connect is None:  # left for a DAW to take
            assert connections(wired, f"{name}:main_L") == [] and connections(wired, f"{name}:main_R") == []
        else:
            assert connections(wired, f"{name}:main_L") == ["system:playback_1"]
            assert connections(wired, f"{name}:main_R") == ["system:playback_2"]
        assert "PortAudio" not in "".join(ours)
    finally:
        live.send_signal(signal.SIGINT)
        out, err = live.communicate(timeout=30)
    assert live.returncode == 0, err
    assert "JACK client " + name in out and "steerpad live: stopped" in out and "Traceback" not in err


def test_a_second_steerpad_is_refused_the_taken_name(jack_server, capsys):
    client = jackio.open_client("steerpad-taken")
    try:
        client.outports.register("main_L")
        client.activate()
        rc = main(["live", "--client-name", "steerpad-taken", "--duration", "1"])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1, err
        assert "JACK client name 'steerpad-taken' is taken" in err and "--client-name" in err
    finally:
        client.deactivate()
        client.close()


@pytest.mark.parametrize("flags, says", [
    (["--connect", "("], "--connect '(': not a regular expression"),
    (["--connect", "no-such-daw"], "--connect 'no-such-daw': no JACK audio input matches; there are: "),
    (["--midi-port", "no-such-pads"], "--midi-port 'no-such-pads': no JACK MIDI output matches"),
    (["--audio-backend", "jack", "--audio-device", "0"], "--audio-device names a PortAudio device"),
    (["--audio-backend", "portaudio", "--outputs", "pads"], "--outputs applies to the JACK backend only"),
    (["--client-name", "a:b"], "--client-name 'a:b': give 1-63 characters without ':'"),
    (["--sample-rate", "44100"], "--sample-rate 44100: the JACK server runs at 48000 Hz"),
])
def test_jack_options_are_refused_in_one_line(jack_server, chain, tmp_path, capsys, flags, says):
    preset = write_preset(tmp_path, chain / "kits" / "synth_kit_6")
    rc = main(["live", "--bundle", str(chain / "bundle"), "--preset", str(preset), "--duration", "1", *flags])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("steerpad: error: ") and err.count("\n") == 1, err
    assert says in err, err


def test_a_hit_is_recorded_from_its_pad_port_and_no_other(jack_server, chain, tmp_path):
    """--outputs pads end to end: a note-on into steerpad:midi_in sounds on pad03_L/R within the
    block after it, at the same frame as on main_L/R; pad04's port stays silent; a hit of pad 1
    reaches main and not pad03."""
    bundle = load_bundle(chain / "bundle")
    preset = load_preset(write_preset(tmp_path, chain / "kits" / "synth_kit_6"))
    name = "steerpad-pads-e2e"
    client = jackio.open_client(name)
    engine = stream = sender = None
    recs: list[Recorder] = []
    try:
        engine = Engine(bundle, preset, client.samplerate, client.blocksize)
        stream = jackio.JackStream(engine, client, jackio.routing(preset, "pads"),
                                   jackio.JackMidi(client, preset.controller.cc14))
        engine.start(wait=None)
        stream.start()
        for bus in ("pad03", "pad04", "main"):
            rec = Recorder(seconds=20, name=f"steerpad-test-rec-{bus}")
            for side, port in zip("LR", rec.ports):
                rec.client.connect(f"{name}:{bus}_{side}", port)
            recs.append(rec)
        pad3, pad4, main_out = recs
        sender = Sender("steerpad-test-pads-midi")
        sender.connect(f"{name}:midi_in")
        time.sleep(0.3)  # a new JACK connection carries data from the next cycle on
        period = client.blocksize
        t = sender.send([0x99, 36 + 2, 110])  # pad 3, channel 10
        time.sleep(0.5)
        on_pad, on_main = first_onset(pad3.audio_since(t)), first_onset(main_out.audio_since(t))
        assert on_pad is not None and on_pad < 2 * period, on_pad
        assert on_main == on_pad
        assert np.abs(pad4.audio_since(t)).max() == 0.0
        hit = pad3.audio_since(t)[on_pad:on_pad + 4800]
        assert 10 * np.log10(np.mean(hit.astype(np.float64) ** 2)) > -50
        while engine.sounding():
            time.sleep(0.01)
        t = sender.send([0x99, 36 + 0, 110])  # pad 1
        time.sleep(0.4)
        assert first_onset(main_out.audio_since(t)) is not None
        assert np.abs(pad3.audio_since(t)).max() == 0.0
        assert stream.callback_errors == 0 and stream.midi.received == 2 and engine.played == 2
    finally:
        if stream is not None:
            stream.close()
        else:
            client.close()
        for closing in (engine, sender, *recs):
            if closing is not None:
                closing.close()


def test_without_virtual_ports_live_plays_from_the_first_input(jack_server, chain, tmp_path, capsys,
                                                               monkeypatch):
    """As on Windows (WinMM has no virtual ports): with no --midi-port, steerpad live opens the
    first MIDI input and says which. JACK MIDI plays WinMM here, its virtual ports taken away."""
    import rtmidi

    monkeypatch.setattr(midi, "NO_VIRTUAL_PORTS", {rtmidi.API_UNIX_JACK})
    sender = Sender("steerpad-test-first-midi")
    try:
        first = midi.list_input_ports("jack")[0]
        preset = write_preset(tmp_path, chain / "kits" / "synth_kit_6")
        rc = main(["live", "--bundle", str(chain / "bundle"), "--preset", str(preset), "--audio-backend",
                   "portaudio", "--midi-api", "jack", "--no-status", "--duration", "1"])
        out = capsys.readouterr().out
        assert rc == 0, out
        assert f"this MIDI API has no virtual ports; playing from the first input, {first!r}" in out
    finally:
        sender.close()


def test_without_virtual_ports_or_any_input_live_says_what_to_do(tmp_path, monkeypatch, capsys):
    """The same on a JACK server with no MIDI port at all: exit 2 and what to do."""
    import rtmidi
    from test_live_hardening import Server

    monkeypatch.setattr(midi, "NO_VIRTUAL_PORTS", {rtmidi.API_UNIX_JACK})
    server = Server()
    try:
        monkeypatch.setenv("JACK_DEFAULT_SERVER", server.name)
        with pytest.raises(SteerpadError) as e:
            midi.first_input_without_virtual("jack")
        assert "no virtual ports, and no MIDI input is there" in str(e.value) and "loopMIDI" in str(e.value)
    finally:
        server.close()


def test_midi_port_connects_a_jack_source_and_again_when_it_returns(jack_server, chain, tmp_path):
    """--midi-port under JACK: the matching JACK MIDI output is wired to midi_in, and wired again
    by the watcher when that port goes away and comes back."""
    bundle = load_bundle(chain / "bundle")
    preset = load_preset(write_preset(tmp_path, chain / "kits" / "synth_kit_6"))
    client = jackio.open_client("steerpad-src-e2e")
    engine = stream = None
    sender = Sender("steerpad-test-src")
    try:
        engine = Engine(bundle, preset, client.samplerate, client.blocksize)
        midi = jackio.JackMidi(client, preset.controller.cc14, source="test-src")
        midi.check_source()
        stream = jackio.JackStream(engine, client, None, midi)
        engine.start(wait=None)
        stream.start()
        assert midi.connected and midi.port_name == "steerpad-src-e2e:midi_in ← steerpad-test-src:out"
        time.sleep(0.1)
        sender.send([0x99, 36 + 2, 100])
        deadline = time.monotonic() + 5
        while engine.played < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.played == 1 and midi.received == 1
        sender.close()  # the controller is unplugged ...
        deadline = time.monotonic() + 5
        while midi.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not midi.connected and "disappeared" in midi.last_error
        sender = Sender("steerpad-test-src")  # ... and plugged in again
        deadline = time.monotonic() + 5
        while not midi.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert midi.connected and midi.reconnects == 1
        time.sleep(0.1)
        sender.send([0x99, 36 + 3, 100])
        deadline = time.monotonic() + 5
        while engine.played < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.played == 2
    finally:
        if stream is not None:
            stream.close()
        else:
            client.close()
        if engine is not None:
            engine.close()
        sender.close()
