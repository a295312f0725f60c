"""The live engine end to end on a real JACK server (jackd -d dummy, 48 kHz, 128-frame periods).

A test JACK client sends note-ons into steerpad's MIDI port (rtmidi, JACK MIDI); steerpad's
output (sounddevice -> PortAudio -> JACK) is recorded by another test client on the same frame
clock, so each onset can be placed against the cycle its note-on was sent in."""

from __future__ import annotations

import time

import numpy as np
import pytest
from rig.jackrig import Sender, first_onset, live_rig

from steerpad.realtime.bundle import load_bundle
from steerpad.realtime.midi import MidiInput
from steerpad.realtime.presets import load_preset
from tests.chainbundle import write_preset

pytestmark = pytest.mark.slow

PORT = "steerpad-jack-test"
SNARE, HAT = 2, 0


@pytest.fixture(scope="module")
def live(jack_server, chain, tmp_path_factory):
    bundle = load_bundle(chain / "bundle")
    preset = load_preset(write_preset(tmp_path_factory.mktemp("live"), chain / "kits" / "synth_kit_6"))
    with live_rig(bundle, preset, PORT) as rig:
        yield rig


def rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-20))


def test_every_hit_sounds_in_the_block_after_its_note_on(live):
    engine, stream, midi = live.engine, live.stream, live.midi
    period = live.recorder.period
    latencies = []
    for i in range(10):
        t, audio = live.hit(HAT if i % 2 else SNARE, listen=0.35)
        assert live.silent_before(t), "the previous hit had not died away: space the hits further"
        onset = first_onset(audio)
        assert onset is not None, f"hit {i}: no sound"
        latencies.append(onset)
    # The note-on reaches steerpad in the cycle it was sent (block k); its onset must be in
    # block k + 1 at the latest, i.e. before frame t + 2 periods.
    assert max(latencies) < 2 * period, latencies
    assert stream.callback_errors == 0 and midi.handler_errors == 0
    assert engine.silent_hits == 0 and engine.dropped == 0


def test_knob_sweep_rerenders_and_the_next_hit_is_louder(live):
    engine, sender = live.engine, live.sender
    louder = 1  # knob 2 = CC 71 on channel 1 in the generic map

    def hit_alone() -> np.ndarray:
        """A snare hit once the previous one has died away: a render can be ready sooner than the
        last hit ends (its tail, loud at the top of the knob, would be measured with the next)."""
        deadline = time.monotonic() + 10
        while engine.sounding() and time.monotonic() < deadline:
            time.sleep(0.01)
        return live.hit(SNARE)[1]

    def turn(value: int) -> None:
        """Knob 2 to CC value `value`, and its renders fresh. The dummy JACK server drops MIDI when
        it xruns (see LiveRig.hit): a CC that did not arrive is sent again, at most twice."""
        for _ in range(3):
            sender.send([0xB0, 70 + louder, value])
            deadline = time.monotonic() + 5
            while engine.knobs[louder] != value / 127 and time.monotonic() < deadline:
                time.sleep(0.01)
            if engine.knobs[louder] == value / 127:
                break
        assert engine.knobs[louder] == value / 127, (value, engine.knobs[louder])
        assert engine.worker.wait_fresh(60)  # (it waits for the worker to take the knobs first)
        assert np.array_equal(engine.worker.alpha, engine.alpha())  # the worker has its alpha

    centre = hit_alone()
    renders = engine.worker.stats.renders
    for v in range(64, 128, 8):  # a sweep up to the top, as a hand turns a knob
        sender.send([0xB0, 70 + louder, v])
    turn(127)
    assert engine.worker.stats.renders > renders
    up = hit_alone()
    turn(0)
    down = hit_alone()
    n = 9600
    levels = [rms_db(x[first_onset(x):first_onset(x) + n]) for x in (down, centre, up)]
    assert levels[2] > levels[1] + 1.0 > levels[0] + 2.0, levels
    turn(64)  # back to the centre for the other tests


def test_malformed_midi_is_ignored_and_play_goes_on(live):
    stream, midi, sender = live.stream, live.midi, live.sender
    ignored = midi.ignored
    # An unterminated sysex holds back rtmidi's input until the device sends its end (0xF7):
    # rtmidi joins what comes between into one sysex, which is dropped (see realtime/midi.py).
    garbage = [[0x99], [0x99, 0x80, 0x40], [0xB0, 70], [0xF0, 0x7E, 0x01], [0x40, 0x40], [0xF7],
               [0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7], [0xE0, 0x00, 0x40], [0xFF], [0xB0, 0x47, 0xFF]]
    for g in garbage:
        sender.send(g)
    time.sleep(0.2)
    assert midi.ignored > ignored
    _, audio = live.hit(SNARE)
    assert first_onset(audio) is not None
    assert stream.callback_errors == 0 and midi.handler_errors == 0


def test_a_lost_midi_port_returns_and_play_goes_on(live):
    """A named controller port vanishes (cable pulled) and comes back: audio never stops and
    the engine plays from the port again once it returns."""
    name = "steerpad-test-usb-pad"
    first = Sender(name)
    midi = MidiInput(None, port=name, api="jack", poll_s=0.1).start()
    previous = live.engine.midi
    live.engine.attach_midi(midi)

    def heard(sender: Sender) -> bool:
        """A snare from `sender`, sent again (at most twice) if the stream saw an xrun meanwhile:
        the dummy server drops MIDI when it xruns (see LiveRig.hit)."""
        for _ in range(3):
            xruns = live.stream.xruns
            t = sender.send([0x99, 36 + SNARE, 100])
            time.sleep(0.3)
            if first_onset(live.recorder.audio_since(t)) is not None:
                return True
            if live.stream.xruns == xruns:
                return False
        return False

    try:
        time.sleep(0.3)  # a new JACK connection carries MIDI from a later cycle on
        assert heard(first)
        blocks = live.engine.blocks
        first.close()  # the cable is pulled
        deadline = time.monotonic() + 5
        while midi.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not midi.connected and live.engine.blocks > blocks  # audio goes on
        second = Sender(name)  # ... and plugged back in
        try:
            while not midi.connected and time.monotonic() < deadline + 5:
                time.sleep(0.05)
            assert midi.connected and midi.reconnects == 1
            time.sleep(0.3)
            assert heard(second)
        finally:
            second.close()
    finally:
        live.engine.attach_midi(previous)
        midi.stop()
    assert live.stream.callback_errors == 0
