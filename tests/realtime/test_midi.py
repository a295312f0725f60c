"""MIDI input: the parser on every message kind and on malformed input, then MidiInput on real JACK
MIDI (conftest's dummy server): a test-owned rtmidi port sends, the handler's events are checked
in order; port loss and return; a virtual port; unknown names; `steerpad devices`.

Port and client names carry the pid, so a second test run on the same JACK server cannot match."""

from __future__ import annotations

import os
import sys
import time

import pytest
import rtmidi

from steerpad.offline.cli import main as cli_main
from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.events import ControlChange, NoteOff, NoteOn, ProgramChange
from steerpad.realtime.midi import ENV_API, MidiInput, MidiParser, list_output_ports, resolve_api

PID = os.getpid()


def cc(channel: int, control: int, raw: int, bits: int = 7) -> ControlChange:
    return ControlChange(channel, control, raw / (127 if bits == 7 else 16383), raw)


PARSED = [
    ([0x90, 60, 100], NoteOn(0, 60, 100)),
    ([0x9F, 0, 1], NoteOn(15, 0, 1)),
    ([0x93, 127, 127], NoteOn(3, 127, 127)),
    ([0x99, 38, 0], NoteOff(9, 38, 0)),  # velocity 0
    ([0x80, 60, 64], NoteOff(0, 60, 64)),
    ([0x8F, 61, 0], NoteOff(15, 61, 0)),
    ([0xB0, 7, 127], cc(0, 7, 127)),
    ([0xB2, 1, 0], cc(2, 1, 0)),
    ([0xBF, 74, 64], cc(15, 74, 64)),
    ([0xB5, 33, 9], cc(5, 33, 9)),  # an LSB number is a plain 7-bit CC unless its MSB is in cc14
    ([0xC9, 5], ProgramChange(9, 5)),
    ([0xCF, 127], ProgramChange(15, 127)),
    ((0xC0, 0), ProgramChange(0, 0)),  # any sequence, not only lists
]

MALFORMED = [
    [], [0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7], [0xF8], [0xFA], [0xFE], [0xFF], [0xF2, 0, 8],
    [0xA0, 60, 10], [0xD0, 10], [0xE0, 0, 64],  # poly aftertouch, channel pressure, pitch bend
    [60, 100], [0x3C],  # running-status fragments
    [0x90, 60], [0x90], [0xB0, 7], [0xC0],  # truncated
    [0x90, 60, 100, 62, 100], [0xC0, 1, 2],  # overlong
    [0x90, 200, 100], [0x90, 60, 128], [0xB0, 7, 255], [0xC0, 128], [0x80, -1, 0],  # data > 127
    [0x90, 0x90, 100], [0xB0, 7, 0xB0], [0xC0, 0xC0],  # status bytes in the data
    [256, 60, 100], [-112, 60, 100], [0x90, 60, None], [0x90, 60, 1.5], ["x"], 144,
]


@pytest.mark.parametrize("message, event", PARSED, ids=[str(list(m)) for m, _ in PARSED])
def test_parser_message_kinds(message, event):
    parser = MidiParser()
    got = parser.feed(message)
    assert got == event and type(got) is type(event)
    assert parser.ignored == 0


def test_parser_ignores_and_counts_malformed_messages():
    parser = MidiParser(cc14=(1,))
    for i, message in enumerate(MALFORMED, 1):
        assert parser.feed(message) is None, message
        assert parser.ignored == i
    assert parser.feed([0x90, 60, 100]) == NoteOn(0, 60, 100)  # no state left behind
    assert parser.ignored == len(MALFORMED)


def test_parser_14bit_pairs():
    parser = MidiParser(cc14=(1, 31))
    steps = [
        ([0xB0, 1, 10], cc(0, 1, 10 << 7, 14)),  # MSB alone: LSB 0
        ([0xB0, 33, 5], cc(0, 1, 10 << 7 | 5, 14)),  # LSB joins the stored MSB, reported as control 1
        ([0xB0, 33, 6], cc(0, 1, 10 << 7 | 6, 14)),  # fine move: LSB alone
        ([0xB0, 1, 11], cc(0, 1, 11 << 7, 14)),  # a new MSB resets the LSB (MIDI 1.0)
        ([0xB1, 33, 3], cc(1, 1, 3, 14)),  # pairs are per channel: channel 1 has MSB 0
        ([0xB0, 2, 5], cc(0, 2, 5)),  # not a pair: 7-bit
        ([0xB0, 34, 5], cc(0, 34, 5)),  # 34's MSB (2) is not in cc14: 7-bit
        ([0xBF, 31, 127], cc(15, 31, 127 << 7, 14)),
        ([0xBF, 63, 127], cc(15, 31, 16383, 14)),
    ]
    for message, event in steps:
        assert parser.feed(message) == event, message
    assert parser.feed([0xBF, 63, 127]).value == 1.0
    assert parser.ignored == 0


@pytest.mark.parametrize("cc14", [(32,), (-1,), (1, 64), ("1",), (1.0,)])
def test_parser_rejects_non_msb_controllers(cc14):
    with pytest.raises(SteerpadError, match="not an MSB number: use 0-31"):
        MidiParser(cc14=cc14)


def test_resolve_api(monkeypatch):
    monkeypatch.delenv(ENV_API, raising=False)
    assert resolve_api() is None and resolve_api("auto") is None
    assert resolve_api(" JACK ") == rtmidi.API_UNIX_JACK
    monkeypatch.setenv(ENV_API, "jack")
    assert resolve_api() == rtmidi.API_UNIX_JACK
    assert resolve_api("auto") is None  # the argument wins over the environment
    monkeypatch.setenv(ENV_API, "oss")
    with pytest.raises(SteerpadError, match=r"unknown MIDI API 'oss' \(from \$STEERPAD_MIDI_API\): "
                                            r"use one of alsa, jack, coremidi, winmm or auto"):
        resolve_api()
    if rtmidi.API_WINDOWS_MM not in rtmidi.get_compiled_api():
        with pytest.raises(SteerpadError, match="not built into this python-rtmidi"):
            resolve_api("winmm")


@pytest.mark.parametrize("kwargs, match", [
    (dict(port="a", virtual="b"), "not both"),
    (dict(port=" "), "port name is empty"),
    (dict(channels={0, 16}), r"MIDI channels \[16\] are out of range: use 0-15"),
    (dict(cc14=(40,)), "not an MSB number"),
    (dict(api="midi2"), "unknown MIDI API"),
])
def test_midi_input_rejects_bad_options(kwargs, match):
    with pytest.raises(SteerpadError, match=match):
        MidiInput(lambda e: None, **kwargs)


@pytest.mark.parametrize("api", ["jack", "auto"])
def test_a_midi_api_that_cannot_open_gives_one_line_and_no_library_lines(api, tmp_path):
    """No JACK server (and, for auto, no ALSA sequencer either): `steerpad learn` says so in one
    line; libjack's "Cannot connect to server socket" and ALSA's own lines, written from C, do
    not reach the terminal."""
    import subprocess

    if api == "auto" and os.path.exists("/dev/snd/seq"):
        pytest.skip("this machine has an ALSA sequencer: auto opens it")
    env = {**os.environ, "JACK_DEFAULT_SERVER": f"steerpad-none-{os.getpid()}", "JACK_NO_START_SERVER": "1"}
    run = subprocess.run([sys.executable, "-m", "steerpad.offline.cli", "learn", "--midi-api", api,
                          "--out", str(tmp_path / "m.toml")], stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, env=env, timeout=60)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("steerpad: error: ") and "JACK server" in lines[0], lines
    assert not (tmp_path / "m.toml").exists()
    # started with fd 2 closed (sys.stderr is None): the line still comes, on stdout
    closed = subprocess.run(["sh", "-c", '"$@" 2>&-', "sh", *run.args], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, env=env, timeout=60)
    assert closed.returncode == 2 and closed.stdout.startswith("steerpad: error: ") and "JACK server" in \
        closed.stdout and "internal error" not in closed.stdout, closed


def wait_until(predicate, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def ping(out: rtmidi.MidiOut, events: list, channel: int = 15) -> NoteOff:
    """Send a note-off on `channel` until the handler sees one, and return that event (a test
    leaves it out): a JACK connection carries MIDI only from the cycle after it is made, so on a
    loaded machine a message sent at once can fall into the cycle before."""
    pong = NoteOff(channel, 0, 0)
    seen = events.count(pong)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        out.send_message([0x80 | channel, 0, 0])
        if wait_until(lambda: events.count(pong) > seen, 0.02):
            return pong
    raise AssertionError("no MIDI arrived over the new connection within 3 s")


def open_by_name(out: rtmidi.MidiOut, name: str) -> None:
    """rtmidi opens ports by index: retry while other programs' ports come and go."""
    for _ in range(5):
        out.close_port()
        i = out.get_ports().index(name)
        try:
            out.open_port(i)
        except rtmidi.InvalidPortError:
            continue
        if out.get_ports()[i:i + 1] == [name]:
            return
    raise AssertionError(f"could not open {name!r}")


@pytest.fixture
def sender(jack_server):
    """make(client, port) -> an rtmidi JACK MidiOut with a virtual output port 'client:port'."""
    outs = []

    def make(client: str, port: str) -> rtmidi.MidiOut:
        out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=client)
        out.open_virtual_port(port)
        outs.append(out)
        return out

    yield make
    for out in outs:
        out.delete()


def test_named_port_delivers_events_in_order(sender, monkeypatch):
    monkeypatch.delenv(ENV_API, raising=False)  # auto: rtmidi's default (ALSA, absent here), then JACK
    out = sender(f"sp-pads-{PID}", "pads")
    events, times = [], []

    def handler(event):
        events.append(event)
        times.append(midi.event_time)

    midi = MidiInput(handler, port=f"SP-PADS-{PID}:PAD", cc14=(1,))
    t0 = time.perf_counter()
    with midi:
        assert (midi.connected, midi.port_name, midi.api_name) == (True, f"sp-pads-{PID}:pads", "jack")
        pong = ping(out, events)
        for message in ([0x90, 36, 100], [0xF0, 0x7E, 0x7F, 0xF7], [0xB0, 74, 64], [0x3C], [0x90, 36],
                        [0xB0, 1, 10], [0xB0, 33, 5], [0xC2, 7], [0xE0, 0, 64], [0x99, 38, 0]):
            out.send_message(message)
        assert wait_until(lambda: len(events) - events.count(pong) == 6), events
        time.sleep(0.05)  # nothing more arrives
    pongs = events.count(pong)
    assert events[pongs:] == [NoteOn(0, 36, 100), cc(0, 74, 64), cc(0, 1, 10 << 7, 14),
                              cc(0, 1, 10 << 7 | 5, 14), ProgramChange(2, 7), NoteOff(9, 38, 0)]
    # rtmidi drops the sysex; [0x3C], [0x90, 36] and the pitch bend are ignored
    assert (midi.received - pongs, midi.ignored, midi.filtered, midi.handler_errors) == (9, 3, 0, 0)
    assert t0 < times[0] <= times[-1] < time.perf_counter()
    assert not midi.connected
    midi.stop()  # idempotent


def test_port_loss_and_return(sender):
    name = f"sp-loss-{PID}"
    out = sender(name, "knobs")
    events = []
    with MidiInput(events.append, port=f"{name}:knobs", api="jack", poll_s=0.1) as midi:
        pong = ping(out, events)
        out.send_message([0x90, 40, 1])
        assert wait_until(lambda: NoteOn(0, 40, 1) in events)
        drained = midi._midiin  # the client the reader drains: a reconnect must never reopen it
        out.delete()
        t = time.monotonic()
        assert wait_until(lambda: not midi.connected), "the lost port was not noticed"
        lost_s = time.monotonic() - t
        assert midi.reconnects == 0 and "disappeared" in midi.last_error
        out = sender(name, "knobs")  # a new client with the same port name
        assert wait_until(lambda: midi.connected), "no reconnect"
        assert midi.reconnects == 1 and midi.port_name == f"{name}:knobs"
        assert midi._midiin is not drained  # a fresh client, swapped in
        assert wait_until(lambda: drained not in midi._retired)  # the old one closed a poll later
        ping(out, events)
        out.send_message([0x90, 41, 2])
        assert wait_until(lambda: NoteOn(0, 41, 2) in events)
    assert [e for e in events if e != pong] == [NoteOn(0, 40, 1), NoteOn(0, 41, 2)]
    assert lost_s < 1.0


def test_virtual_port_channel_filter_and_handler_errors(jack_server):
    name = f"sp-virt-{PID}"
    events = []

    def handler(event):
        if event.note == 13:
            raise ZeroDivisionError("a handler bug")
        events.append(event)

    source = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=f"sp-seq-{PID}")
    try:
        with MidiInput(handler, virtual=name, api="jack", channels={9}) as midi:
            assert (midi.connected, midi.port_name) == (True, name)
            (mine,) = [p for p in list_output_ports("jack") if p.endswith(f":{name}")]
            open_by_name(source, mine)
            pong = ping(source, events, channel=9)
            for message in ([0x90, 36, 90], [0x99, 13, 1], [0x99, 36, 90], [0x89, 36, 0]):
                source.send_message(message)
            assert wait_until(lambda: NoteOff(9, 36, 0) in events)
            assert [e for e in events if e != pong] == [NoteOn(9, 36, 90), NoteOff(9, 36, 0)]
            assert (midi.filtered, midi.handler_errors) == (1, 1)
            assert midi.handler_error == "MIDI handler raised ZeroDivisionError: a handler bug"
        assert mine not in list_output_ports("jack")  # the port was closed
    finally:
        source.delete()


def test_stop_from_the_handler(sender):
    out = sender(f"sp-stop-{PID}", "pads")
    events = []

    def handler(event):
        events.append(event)
        if event == NoteOn(0, 99, 1):
            midi.stop()

    midi = MidiInput(handler, port=f"sp-stop-{PID}:pads", api="jack", poll_s=0.05).start()
    ping(out, events)
    out.send_message([0x90, 99, 1])
    assert wait_until(lambda: not midi.connected), "stop() from the handler did not close the input"
    assert wait_until(lambda: not any(loop.running for loop in midi._loops)), "a MIDI thread is left running"
    midi.stop()  # and again from outside


def test_default_is_a_virtual_steerpad_port(jack_server):
    with MidiInput(lambda e: None, api="jack") as midi:
        assert (midi.connected, midi.port_name) == (True, "steerpad")
        assert any(p.startswith("steerpad") and p.endswith(":steerpad") for p in list_output_ports("jack"))


def test_unknown_port_lists_the_available_ones(sender, monkeypatch):
    monkeypatch.delenv(ENV_API, raising=False)
    sender(f"sp-known-{PID}", "x")
    midi = MidiInput(lambda e: None, port="no-such-port-zz")
    with pytest.raises(SteerpadError) as e:
        midi.start()
    message = str(e.value)
    assert message.startswith("no MIDI input port matches 'no-such-port-zz': available: ")
    assert f"'sp-known-{PID}:x' (jack)" in message and "\n" not in message


def test_devices_lists_jack_audio_and_midi_ports(sender, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    sender(f"sp-dev-{PID}", "ctl")
    assert cli_main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "JACK Audio Connection Kit" in out and "system" in out
    assert "in out" in out  # JACK's "system" is the default input and output
    assert f"sp-dev-{PID}:ctl" in out


def test_devices_without_portaudio_still_lists_midi(sender, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails as without PortAudio
    sender(f"sp-dev2-{PID}", "ctl")
    assert cli_main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "audio: sounddevice cannot load PortAudio" in out
    assert "JACK Audio Connection Kit" not in out and f"sp-dev2-{PID}:ctl" in out
