"""MIDI learn: synthetic touches are recognised (notes, absolute knobs, 14-bit pairs, each kind of
relative encoder), assignments that would make an unusable map are refused with a reason, and
the learned map survives TOML and back. `run()` is driven end to end with a fake MIDI input."""

from __future__ import annotations

import argparse
import io
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from steerpad.realtime import learn
from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.events import ControlChange, NoteOff, NoteOn, ProgramChange
from steerpad.realtime.learn import Control, Learner, Session, classify, parse_answer
from steerpad.realtime.presets import load_controller, write_controller


def cc(control: int, raw: int, channel: int = 0) -> ControlChange:
    return ControlChange(channel, control, raw / 127, raw)


def turn(learner: Learner, events, t0: float = 0.0) -> Control | None:
    """Feed a gesture 10 ms apart, then poll once it has settled."""
    t, found = t0, None
    for e in events:
        learner.feed(e, t)
        got = learner.poll(t)
        assert got is None or isinstance(e, NoteOn)  # a knob is never reported mid-turn
        found = found or got
        t += 0.01
    return found or learner.poll(t + learner.settle)


def refused(fn, *args) -> str:
    with pytest.raises(SteerpadError) as e:
        fn(*args)
    assert "\n" not in str(e.value)
    return str(e.value)


# ---------------------------------------------------------------- detecting


def test_a_pad_is_known_at_its_note_on():
    lrn = Learner()
    lrn.feed(NoteOff(9, 40), 0.0)
    assert lrn.poll(0.0) is None
    lrn.feed(NoteOn(9, 36, 100), 0.0)
    lrn.feed(NoteOn(9, 37, 100), 0.001)  # a second pad in the same instant: the first one counts
    assert lrn.poll(0.001) == Control("pad", 9, 36)
    assert lrn.poll(1.0) is None
    assert Control("pad", 9, 36).describe() == "note 36 on channel 10"


def test_a_knob_is_known_when_its_gesture_settles():
    lrn = Learner(settle=0.4)
    for i, raw in enumerate(range(20, 40)):
        lrn.feed(cc(74, raw, channel=2), i * 0.01)
    assert lrn.poll(0.19 + 0.39) is None  # still turning, as far as it knows
    knob = lrn.poll(0.19 + 0.4)
    assert knob == Control("knob", 2, 74) and knob.modes == ("absolute",)
    assert knob.describe() == "CC 74 on channel 3, absolute"


def test_the_most_moved_cc_wins_a_gesture():
    knob = turn(Learner(), [cc(1, 64)] + [cc(20, v) for v in range(30, 40)] + [cc(1, 65)])
    assert knob.number == 20


@pytest.mark.parametrize("lsb_first", [False, True])
def test_14_bit_pairs_are_detected_when_msb_and_lsb_arrive_together(lsb_first):
    events = []
    for v in range(1000, 1400, 37):
        pair = [cc(7, v >> 7, 1), cc(39, v & 127, 1)]
        events += pair[::-1] if lsb_first else pair
    knob = turn(Learner(), events)
    assert knob == Control("knob", 1, 7, cc14=True)
    assert "CC 7 + CC 39 (a 14-bit pair)" in knob.describe()
    assert turn(Learner(), [cc(7, v) for v in range(10, 20)]).cc14 is False  # MSB alone: 7-bit


@pytest.mark.parametrize("values, modes", [
    ([65, 65, 65, 63, 63], ("relative_binary_offset",)),
    ([63, 63, 62, 63], ("relative_binary_offset",)),
    ([65, 65, 66, 65], ("relative_binary_offset", "relative_signed_bit")),
    ([1, 1, 1, 127, 127], ("relative_twos_complement",)),
    ([1, 1, 2, 1], ("relative_twos_complement", "relative_signed_bit")),
    ([127, 127, 127], ("relative_twos_complement", "absolute")),
    ([1, 1, 65, 65, 66], ("relative_signed_bit",)),
    ([60, 61, 62, 63, 64, 65, 66], ("absolute",)),  # slow absolute turn through the middle
    ([0, 0, 0], ("absolute",)),
    ([65, 65], ("absolute",)),  # too few to tell
    ([30, 30, 30, 30], ("absolute",)),  # repeats, but no encoder sends 30 for a step
    ([60, 61, 61, 62, 63, 64, 65, 66, 67], ("absolute",)),  # one repeat in nine is not an encoder
])
def test_classify_encoder_modes(values, modes):
    assert classify(values) == modes


def test_an_ambiguous_encoder_is_resolved_by_turning_it_back():
    lrn = Learner()
    first = turn(lrn, [cc(20, 65)] * 6)
    assert first.modes == ("relative_binary_offset", "relative_signed_bit")
    assert "turn it the other way too" in first.describe()
    second = turn(lrn, [cc(20, 63)] * 6, t0=5.0)
    assert second.modes == ("relative_binary_offset",)


# ---------------------------------------------------------------- assigning


def test_assign_fills_the_next_free_slot_or_the_one_named():
    lrn = Learner(n_pads=4, n_knobs=2)
    assert lrn.assign(Control("pad", 9, 36)) == ("pad", 0)
    assert lrn.assign(Control("pad", 9, 40), 3) == ("pad", 3)
    assert lrn.assign(Control("pad", 9, 37)) == ("pad", 1)
    assert lrn.assign(Control("knob", 0, 21), 1, "knob") == ("knob", 1)
    assert [c and c.number for c in lrn.pads] == [36, 37, None, 40]


def test_refusals_say_why():
    lrn = Learner(n_pads=2, n_knobs=2)
    lrn.assign(Control("pad", 9, 36))
    assert "note 36 on channel 10 is already pad 1" in refused(lrn.assign, Control("pad", 9, 36))
    assert "pad 1 is already note 36" in refused(lrn.assign, Control("pad", 9, 38), 0)
    assert "there is no pad 5: this map has pads 1-2" in refused(lrn.assign, Control("pad", 9, 38), 4)
    assert "can only be a pad, not a knob" in refused(lrn.assign, Control("pad", 9, 38), 0, "knob")
    assert "on channel 1, but the pads so far are on channel 10" in refused(lrn.assign, Control("pad", 0, 38))
    lrn.assign(Control("pad", 9, 38))
    assert "all 2 pads are assigned" in refused(lrn.assign, Control("pad", 9, 39))
    lrn.assign(Control("knob", 0, 1, cc14=True))
    assert "CC 33 is the LSB of the 14-bit pair CC 1 (knob 1)" in refused(lrn.assign, Control("knob", 0, 33))
    assert refused(lrn.unassign, "knob", 1) == "knob 2 is not assigned"
    assert "learns no knobs (--knobs 0)" in refused(Learner(n_knobs=0).assign, Control("knob", 0, 1))


def test_one_knob_mode_per_map_with_ambiguity_narrowed_by_later_knobs():
    lrn = Learner()
    lrn.assign(Control("knob", 0, 20, modes=("relative_binary_offset", "relative_signed_bit")))
    lrn.assign(Control("knob", 0, 21, modes=("relative_signed_bit",)))
    msg = refused(lrn.assign, Control("knob", 0, 22))
    assert "a map has one knob mode" in msg and "signed bit" in msg
    assert lrn.build("x").knob_mode == "relative_signed_bit"


def test_build_refuses_gaps_and_nothing_and_sets_channels():
    lrn = Learner()
    assert "nothing is assigned yet" in refused(lrn.build, "x")
    lrn.assign(Control("pad", 9, 36))
    lrn.assign(Control("pad", 9, 38), 2)
    assert "pad 2 is not assigned but pad 3 is" in refused(lrn.build, "x")
    lrn.unassign("pad", 2)
    lrn.feed(ProgramChange(4, 3), 0.0)
    m = lrn.build("x")
    assert (m.pad_channel, m.pad_notes, m.knob_channel, m.knob_ccs) == (9, (36,), None, ())
    assert m.program_channel == 4


def test_a_learned_map_round_trips_through_toml(tmp_path):
    lrn = Learner()
    for note in (36, 38, 42):
        lrn.assign(turn(lrn, [NoteOn(9, note, 90), NoteOff(9, note)]))
    lrn.assign(turn(lrn, [cc(7, v >> 7, 1) for v in range(0, 800, 60)] +
                    [cc(39, 5, 1), cc(7, 7, 1), cc(39, 9, 1)]))
    lrn.assign(turn(lrn, [cc(75, v, 1) for v in (40, 41, 42, 44)]))
    m = lrn.build("My kit", ("steerpad learn",), "learned")
    assert m.pad_notes == (36, 38, 42) and m.knob_ccs == (7, 75) and m.cc14 == frozenset({7})
    assert m.knob_channel == 1 and m.knob_mode == "absolute"
    write_controller(m, tmp_path / "mine.toml")
    assert load_controller(tmp_path / "mine.toml") == m
    assert m.knob_for(cc(75, 3, 1)) == 1 and m.pad_for(NoteOn(9, 42, 1)) == 2


# ---------------------------------------------------------------- the conversation


@pytest.mark.parametrize("text, answer", [
    ("", ("next",)), ("  next ", ("next",)), ("skip", ("skip",)), ("DONE", ("done",)),
    ("pad 3", ("assign", "pad", 2)), ("k2", ("assign", "knob", 1)), ("knob10", ("assign", "knob", 9)),
    ("clear  pad 1", ("clear", "pad", 0)),
])
def test_parse_answer(text, answer):
    assert parse_answer(text) == answer


@pytest.mark.parametrize("text", ["pad", "pad 0", "drum 1", "pad -1"])
def test_parse_answer_refuses_with_the_choices(text):
    assert "'pad N' / 'knob N'" in refused(parse_answer, text)


def test_a_session_from_touch_to_file(tmp_path):
    said: list[str] = []
    s = Session(Learner(n_pads=4, n_knobs=2), "Box", tmp_path / "box.toml", said.append)
    s.start()
    s.line("pad 1")
    assert said[-1] == "touch a pad or turn a knob first (or 'done')"
    s.event(NoteOn(9, 36, 100), 0.0)
    s.tick(0.0)
    assert said[-1] == "note 36 on channel 10 -> which pad? [Enter = pad 1]"
    s.event(NoteOn(9, 50, 100), 0.1)  # bumped while answering: ignored
    s.line("")
    assert said[-1] == "pad 1 = note 36 on channel 10"
    s.tick(0.2)
    assert s.pending is None
    for i, v in enumerate(range(10, 30)):
        s.event(cc(70, v), 1.0 + i * 0.01)
        s.tick(1.0 + i * 0.01)
    s.tick(2.0)
    assert said[-1].startswith("CC 70 on channel 1, absolute -> which knob? [Enter = knob 1]")
    s.line("pad 2")
    assert "can only be a knob" in said[-1] and s.pending is not None
    s.line("knob 2")
    s.line("done")
    assert "knob 1 is not assigned but knob 2 is" in said[-1] and not s.finished
    s.line("clear knob 2")
    assert said[-1] == "knob 2 cleared (was CC 70 on channel 1, absolute)"
    s.event(ProgramChange(0, 5), 3.0)
    assert said[-1].startswith("program change 5 on channel 1")
    s.event(NoteOn(9, 37, 1), 3.1)
    s.tick(3.1)
    s.line("skip")
    assert said[-1] == "skipped note 37 on channel 10"
    s.line("wat")
    assert said[-1].startswith("'wat'? answers:")
    s.line("done")
    assert s.finished and said[-1] == (f"wrote {tmp_path / 'box.toml'}: 1 pad, 0 knobs (absolute); in a "
                                       f'preset: controller = "{tmp_path / "box.toml"}"')
    m = load_controller(tmp_path / "box.toml")
    assert m == s.map and m.name == "Box" and m.pad_notes == (36,) and m.program_channel == 0


class FakeMidiInput:
    """Stands in for midi.MidiInput: start() delivers a scripted touch through the handler."""

    def __init__(self, handler, port=None, virtual=None, cc14=(), api=None):
        assert cc14 == () and port == "pads"  # learn must see raw CCs, on the port asked for
        self.handler, self.port_name = handler, "fake:pads"

    def start(self):
        self.handler(NoteOn(9, 38, 90))

    def stop(self):
        pass


def args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    learn.add_arguments(parser)
    return parser.parse_args(["--out", str(tmp_path / "my_pads.toml"), "--midi-port", "pads", *extra])


def test_run_learns_from_a_midi_port_and_the_terminal(tmp_path, monkeypatch, capsys):
    import steerpad.realtime.midi as midi

    monkeypatch.setattr(midi, "MidiInput", FakeMidiInput)
    monkeypatch.setattr("sys.stdin", io.StringIO("\ndone\n"))
    assert learn.run(args(tmp_path, "--pads", "4")) == 0
    out = capsys.readouterr().out
    assert "listening on fake:pads" in out and "pad 1 = note 38 on channel 10" in out
    m = load_controller(tmp_path / "my_pads.toml")
    assert m.name == "my pads" and m.pad_notes == (38,) and m.sources[0].startswith("steerpad learn")
    assert "'fake:pads'" in m.notes  # the port it was learned from


def test_run_refuses_to_overwrite_and_gives_up_at_end_of_input(tmp_path, monkeypatch):
    import steerpad.realtime.midi as midi

    monkeypatch.setattr(midi, "MidiInput", FakeMidiInput)
    (tmp_path / "my_pads.toml").write_text("keep me")
    # --force replaces only a map steerpad learned, never a file of the user's
    for flags in ((), ("--force",)):
        assert "steerpad did not write it" in refused(learn.run, args(tmp_path, *flags))
    assert (tmp_path / "my_pads.toml").read_text() == "keep me"
    learned = "# steerpad controller map: an earlier take\n"
    (tmp_path / "my_pads.toml").write_text(learned)
    assert "--force" in refused(learn.run, args(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert learn.run(args(tmp_path, "--force")) == 1  # nothing assigned when input ended
    assert (tmp_path / "my_pads.toml").read_text() == learned
    assert "slots" in refused(learn.run, args(tmp_path, "--force", "--pads", "0", "--knobs", "0"))


def test_learn_over_a_real_jack_midi_port(jack_server, tmp_path):
    """`steerpad learn` in a process of its own, as a performer runs it, on a JACK MIDI port that
    rtmidi sends to: a pad, then a two's-complement encoder turned both ways. (In the test
    process, a JACK server slow to close an earlier test's client once froze the whole run:
    rtmidi calls JACK holding the GIL.)"""
    import rtmidi

    out_path = tmp_path / "controllers" / "jack_box.toml"
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "steerpad-learn-test")
    out.open_virtual_port("out")
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "steerpad.offline.cli", "learn", "--out", str(out_path),
         "--midi-api", "jack", "--midi-port", "steerpad-learn-test", "--pads", "2", "--knobs", "2"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
    reader.start()
    printed = ""

    def wait_for(text: str, within: float = 20) -> None:
        nonlocal printed
        deadline = time.monotonic() + within
        while text not in printed:
            ended = proc.poll() is not None
            if ended:
                reader.join(5)  # all it printed, up to its last line, before judging
            while not lines.empty():
                printed += lines.get()
            if text in printed:
                return
            assert time.monotonic() < deadline and not ended, f"no {text!r} in:\n{printed}"
            time.sleep(0.02)

    try:
        wait_for("listening on steerpad-learn-test")
        out.send_message([0x99, 36, 100])
        wait_for("note 36 on channel 10 -> which pad?")
        proc.stdin.write("\n")
        proc.stdin.flush()
        wait_for("pad 1 = note 36")
        for v in (1, 1, 1, 127, 127, 127):
            out.send_message([0xB1, 21, v])
            time.sleep(0.01)
        wait_for("CC 21 on channel 2, relative encoder, two's complement")
        proc.stdin.write("knob 1\ndone\n")
        proc.stdin.flush()
        wait_for('in a preset: controller = "jack_box"')
        assert proc.wait(20) == 0, printed
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        out.close_port()
        out.delete()  # now, not when the collector frees it (rtmidi closes JACK clients holding the GIL)
    m = load_controller(out_path)
    assert (m.pad_channel, m.pad_notes, m.knob_channel, m.knob_ccs) == (9, (36,), 1, (21,))
    assert m.knob_mode == "relative_twos_complement"
