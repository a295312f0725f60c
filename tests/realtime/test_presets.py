"""Presets and controller maps: the shipped files load, knobs map positions to alpha as documented,
relative encoders step, events find their pad and knob, and every bad input is one clear line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from steerpad.realtime.bundle import KnobScale
from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.events import ControlChange, NoteOff, NoteOn, ProgramChange
from steerpad.realtime.presets import (
    KNOB_CURVES,
    PRESETS_DIR,
    ControllerMap,
    KnobSpec,
    check_preset,
    controller_ids,
    load_controller,
    load_preset,
    write_controller,
)

EXAMPLE_KIT = ["kick", "snare", "clap", "hat-closed", "hat-open", "tom-low", "tom-high", "rim"]
EXAMPLE_DIRECTIONS = ["brighter", "punchier", "boomier", "warmer", "crisper", "airier", "louder", "higher"]
CONTROLLER = """
name = "Test pads"
sources = ["a test"]
[pads]
channel = 10
notes = [36, 37, 38, 39]
[knobs]
channel = 1
ccs = [70, 71]
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def preset(tmp_path: Path, body: str, controller: str = CONTROLLER) -> Path:
    """A preset file in tmp_path using its own controllers/test.toml."""
    write(tmp_path, "controllers/test.toml", controller)
    return write(tmp_path, "p.toml", 'controller = "test"\n' + textwrap.dedent(body))


def error(fn, *args) -> str:
    with pytest.raises(SteerpadError) as e:
        fn(*args)
    message = str(e.value)
    assert "\n" not in message, message
    return message


def cc(channel: int, control: int, raw: int) -> ControlChange:
    return ControlChange(channel, control, raw / 127, raw)


# ---------------------------------------------------------------- shipped files


def test_every_shipped_controller_map_loads_cites_sources_and_round_trips(tmp_path):
    ids = controller_ids()
    assert {"generic", "akai_mpd218", "arturia_beatstep", "akai_mpk_mini_mk3"} <= set(ids)
    for cid in ids:
        cmap = load_controller(PRESETS_DIR / "controllers" / f"{cid}.toml")
        assert cmap.sources and all(len(s) > 20 for s in cmap.sources), cid
        assert cmap.notes.strip(), cid
        write_controller(cmap, tmp_path / f"{cid}.toml")
        assert load_controller(tmp_path / f"{cid}.toml") == cmap, cid


def test_shipped_maps_hold_the_documented_numbers():
    def load(cid):
        return load_controller(PRESETS_DIR / "controllers" / f"{cid}.toml")

    generic = load("generic")
    assert generic.pad_notes == tuple(range(36, 52)) and generic.pad_channel == 9
    assert generic.knob_ccs == tuple(range(70, 78)) and generic.knob_channel == 0
    mpd = load("akai_mpd218")
    assert mpd.pad_notes == tuple(range(36, 52)) and mpd.pad_channel == 9
    assert mpd.knob_ccs == (3, 9, 12, 13, 14, 15) and mpd.knob_mode == "absolute"
    beatstep = load("arturia_beatstep")
    assert beatstep.pad_notes == (*range(44, 52), *range(36, 44)) and beatstep.pad_channel == 0
    assert beatstep.knob_ccs == (10, 74, 71, 76, 77, 93, 73, 75, 114, 18, 19, 16, 17, 91, 79, 72)
    mpk = load("akai_mpk_mini_mk3")
    assert len(mpk.pad_notes) == 8 and len(mpk.knob_ccs) == 8  # the pads it has, not 16


def test_example_preset_loads_and_fits_the_bundle_it_documents():
    p = load_preset(PRESETS_DIR / "example.toml")
    assert p.controller == load_controller(PRESETS_DIR / "controllers" / "generic.toml")
    assert [pad.sample for pad in p.pads] == EXAMPLE_KIT and all(pad.kind == "kit" for pad in p.pads)
    assert [k.direction for k in p.knobs] == EXAMPLE_DIRECTIONS
    assert p.pads[3].choke == p.pads[4].choke == "hats"
    assert p.knobs[5].initial == 0.0  # range [0, 1] starts untouched
    assert set(p.snapshots) == {0, 1, 2}
    assert p.mode == "faithful" and p.pad_mode(p.pads[2], "faithful") == "resynth"  # the clap
    check_preset(p, EXAMPLE_DIRECTIONS, EXAMPLE_KIT)
    assert "kit:rim" in error(check_preset, p, EXAMPLE_DIRECTIONS, EXAMPLE_KIT[:-1])


# ---------------------------------------------------------------- knob -> share -> alpha


def alpha(k: KnobSpec, position: float, alpha_min: float, alpha_max: float) -> float:
    """α of knob k at `position` on an uncalibrated direction (linear over [alpha_min, alpha_max]),
    as the engine computes it: the knob's share of travel through the direction's KnobScale."""
    return KnobScale((alpha_max,), (alpha_min,)).alpha(k.share(position))


@pytest.mark.parametrize("curve", KNOB_CURVES)
def test_centre_is_exactly_untouched_and_the_ends_reach_the_full_share(curve):
    k = KnobSpec(0, "brighter", (-1.0, 1.0), curve)
    assert k.share(0.5) == 0.0
    assert k.share(0.0) == pytest.approx(-1.0)
    assert k.share(1.0) == pytest.approx(1.0)
    assert k.share(-1.0) == k.share(0.0)  # positions clamp to 0-1
    assert k.share(2.0) == k.share(1.0)


@pytest.mark.parametrize("curve", KNOB_CURVES)
def test_centre_is_exactly_untouched_and_the_ends_reach_the_calibrated_range(curve):
    k = KnobSpec(0, "brighter", (-1.0, 1.0), curve)
    assert alpha(k, 0.5, -3.0, 5.0) == 0.0
    assert alpha(k, 0.0, -3.0, 5.0) == pytest.approx(-3.0)
    assert alpha(k, 1.0, -3.0, 5.0) == pytest.approx(5.0)
    assert alpha(k, -1.0, -3.0, 5.0) == alpha(k, 0.0, -3.0, 5.0)  # positions clamp to 0-1
    assert alpha(k, 2.0, -3.0, 5.0) == alpha(k, 1.0, -3.0, 5.0)


@pytest.mark.parametrize("curve", KNOB_CURVES)
@pytest.mark.parametrize("rng", [(-1.0, 1.0), (0.0, 1.0), (-0.5, 0.25), (1.0, -1.0)])
def test_curves_are_monotonic_in_the_range_direction(curve, rng):
    k = KnobSpec(0, "x", rng, curve)
    positions = [i / 200 for i in range(201)]
    for values in ([k.share(x) for x in positions], [alpha(k, x, -2.0, 4.0) for x in positions]):
        steps = [b - a for a, b in zip(values, values[1:])]
        if rng[1] > rng[0]:
            assert all(s >= 0 for s in steps) and values[-1] > values[0]
        else:
            assert all(s <= 0 for s in steps) and values[-1] < values[0]
    assert all(-1.0 <= k.share(x) <= 1.0 for x in positions)


def test_curve_shapes_and_partial_ranges():
    def at(curve, pos, rng=(-1.0, 1.0)):
        return KnobSpec(0, "x", rng, curve).share(pos)

    assert at("linear", 0.75) == pytest.approx(0.5)
    assert at("exponential", 0.75) == pytest.approx(0.25)
    assert at("logarithmic", 0.75) == pytest.approx(0.5 ** 0.5)
    assert at("s-curve", 0.75) == pytest.approx(3 * 0.25 - 2 * 0.125)
    assert at("exponential", 0.25) == pytest.approx(-0.25)  # odd-symmetric about the centre
    assert at("linear", 0.0, (0.0, 1.0)) == 0.0
    assert at("linear", 1.0, (-0.5, 0.5)) == pytest.approx(0.5)
    assert alpha(KnobSpec(0, "x", (-1.0, 1.0)), 1.0, -7.0, 2.0) == pytest.approx(2.0)
    assert alpha(KnobSpec(0, "x", (-1.0, 1.0)), 0.0, -7.0, 2.0) == pytest.approx(-7.0)
    assert alpha(KnobSpec(0, "x", (-1.0, 1.0)), 0.75, -7.0, 2.0) == pytest.approx(1.0)  # half of the right
    assert alpha(KnobSpec(0, "x", (-1.0, 1.0)), 0.25, -7.0, 2.0) == pytest.approx(-3.5)  # ... and left side


def test_initial_defaults_to_the_untouched_position(tmp_path):
    p = load_preset(preset(tmp_path, """
        [[knobs]]
        direction = "a"
        [[knobs]]
        direction = "b"
        range = [-0.25, 0.75]
    """))
    assert [k.initial for k in p.knobs] == [0.5, 0.25]
    assert p.knobs[1].share(p.knobs[1].initial) == 0.0
    assert alpha(p.knobs[1], p.knobs[1].initial, -1.0, 1.0) == 0.0


def test_a_knob_affects_ringing_notes_unless_it_says_next(tmp_path):
    p = load_preset(preset(tmp_path, """
        [[knobs]]
        direction = "a"
        [[knobs]]
        direction = "b"
        affects = "next"
    """))
    assert [k.affects for k in p.knobs] == ["ringing", "next"]
    bad = preset(tmp_path, '[[knobs]]\ndirection = "a"\naffects = "later"\n')
    msg = error(load_preset, bad)
    assert msg.startswith(f"{bad}: knobs[1].affects ") and "ringing, next" in msg, msg


# ---------------------------------------------------------------- render modes


def test_preset_and_pad_modes_parse_and_resolve(tmp_path):
    p = load_preset(preset(tmp_path, """
        mode = "resynth"
        [[pads]]
        sample = "kit:kick"
        [[pads]]
        sample = "kit:snare"
        mode = "faithful"
    """))
    assert p.mode == "resynth"
    assert [pad.mode for pad in p.pads] == [None, "faithful"]
    assert p.pad_mode(p.pads[0], "faithful") == "resynth"  # the preset's mode
    assert p.pad_mode(p.pads[1], "resynth") == "faithful"  # the pad's own
    assert p.pad_mode(None, "faithful") == "resynth"  # an empty pad (a capture's) takes the preset's


def test_without_modes_pads_play_the_bundle_default(tmp_path):
    p = load_preset(preset(tmp_path, """
        [[pads]]
        sample = "kit:kick"
        [[pads]]
        sample = "kit:snare"
        mode = "resynth"
    """))
    assert p.mode is None and p.pads[0].mode is None
    assert p.pad_mode(p.pads[0], "faithful") == "faithful"
    assert p.pad_mode(p.pads[0], "resynth") == "resynth"
    assert p.pad_mode(p.pads[1], "faithful") == "resynth"
    assert p.pad_mode(None, "faithful") == "faithful"


@pytest.mark.parametrize("body, key", [
    ('mode = "resynthesis"\n', "mode"),
    ('mode = 1\n', "mode"),
    ('[[pads]]\nsample = "kit:kick"\n[[pads]]\nsample = "kit:snare"\nmode = "exact"\n', "pads[2].mode"),
])
def test_a_bad_mode_is_one_line_naming_the_key(tmp_path, body, key):
    p = preset(tmp_path, body)
    msg = error(load_preset, p)
    assert msg.startswith(f"{p}: {key} "), msg
    assert "faithful, resynth" in msg, msg


# ---------------------------------------------------------------- events -> pads and knobs


def test_pad_for_and_knob_for_follow_the_channels():
    m = ControllerMap("t", pad_channel=9, pad_notes=(36, 38), knob_channel=0, knob_ccs=(70, 71))
    assert m.pad_for(NoteOn(9, 38, 100)) == 1
    assert m.pad_for(NoteOff(9, 36)) == 0
    assert m.pad_for(NoteOn(0, 36, 100)) is None  # another channel
    assert m.pad_for(NoteOn(9, 37, 100)) is None  # not a pad note
    assert m.pad_for(cc(9, 36, 5)) is None
    assert m.knob_for(cc(0, 71, 3)) == 1
    assert m.knob_for(cc(9, 71, 3)) is None
    assert m.knob_for(NoteOn(0, 70, 1)) is None and m.knob_for(ProgramChange(0, 70)) is None
    anywhere = ControllerMap("t", None, (36,), None, (70,))
    assert all(anywhere.pad_for(NoteOn(ch, 36, 1)) == 0 and anywhere.knob_for(cc(ch, 70, 1)) == 0
               for ch in range(16))


@pytest.mark.parametrize("mode, up, down", [("relative_binary_offset", 65, 63),
                                            ("relative_twos_complement", 1, 127),
                                            ("relative_signed_bit", 1, 65)])
def test_relative_encoders_step_one_127th_per_tick_and_clamp(mode, up, down):
    m = ControllerMap("t", None, (), None, (20,), knob_mode=mode)
    assert m.knob_value(0.5, cc(0, 20, up)) == pytest.approx(0.5 + 1 / 127)
    assert m.knob_value(0.5, cc(0, 20, down)) == pytest.approx(0.5 - 1 / 127)
    assert m.knob_value(0.5, cc(0, 20, up + 2)) == pytest.approx(0.5 + 3 / 127)  # accelerated: 3 ticks
    assert m.knob_value(1.0, cc(0, 20, up)) == 1.0
    assert m.knob_value(0.0, cc(0, 20, down)) == 0.0


def test_absolute_knobs_take_the_value_sent():
    m = ControllerMap("t", None, (), None, (1,), cc14=frozenset({1}))
    assert m.knob_value(0.9, ControlChange(0, 1, 8192 / 16383, 8192)) == pytest.approx(8192 / 16383)


# ---------------------------------------------------------------- validation messages


def test_unknown_keys_are_named_with_what_is_allowed(tmp_path):
    p = preset(tmp_path, """
        [[pads]]
        sample = "kit:kick"
        pann = 0.5
    """)
    msg = error(load_preset, p)
    assert msg.startswith(f"{p}: pads[1].pann is not a known key")
    assert "sample, gain_db, pan, choke" in msg
    bad = write(tmp_path, "controllers/typo.toml", CONTROLLER + "\n[program]\nchanel = 3\n")
    assert "program.chanel is not a known key (allowed: channel)" in error(load_controller, bad)
    top = write(tmp_path, "top.toml", 'controller = "test"\nvoice = {}\n')
    assert "voice is not a known key" in error(load_preset, top)


@pytest.mark.parametrize("value", ["17", "-1", '"ten"', "true", "1.5"])
def test_bad_channels_say_what_channels_are(tmp_path, value):
    path = write(tmp_path, "c.toml", CONTROLLER.replace("channel = 10", f"channel = {value}"))
    msg = error(load_controller, path)
    assert msg.startswith(f"{path}: pads.channel must be 1-16") and '"any"' in msg


def test_any_channel_is_0_or_any(tmp_path):
    text = CONTROLLER.replace("channel = 10", 'channel = "any"').replace("channel = 1\n", "channel = 0\n")
    m = load_controller(write(tmp_path, "c.toml", text))
    assert m.pad_channel is None and m.knob_channel is None and m.program_channel is None


def test_duplicate_pad_notes_and_knob_ccs(tmp_path):
    path = write(tmp_path, "c.toml", CONTROLLER.replace("[36, 37, 38, 39]", "[36, 37, 36]"))
    assert "pads.notes lists note 36 twice (entries 1 and 3)" in error(load_controller, path)
    path = write(tmp_path, "c.toml", CONTROLLER.replace("[70, 71]", "[70, 200]"))
    assert "knobs.ccs[2] must be a whole number from 0 to 127, got 200" in error(load_controller, path)


def test_14_bit_pairs_are_checked(tmp_path):
    def msg(knobs):
        return error(load_controller, write(tmp_path, "c.toml", CONTROLLER.replace("ccs = [70, 71]", knobs)))

    assert "MSB 0-31" in msg("ccs = [40]\ncc14 = [40]")
    assert "not one of knobs.ccs" in msg("ccs = [1]\ncc14 = [2]")
    assert "the LSB of the 14-bit pair 1" in msg("ccs = [1, 33]\ncc14 = [1]")
    assert 'use mode = "absolute"' in msg('ccs = [1]\ncc14 = [1]\nmode = "relative_signed_bit"')
    assert "knobs.mode must be one of absolute, relative_binary_offset" in msg('ccs = [1]\nmode = "rel"')


@pytest.mark.parametrize("body, key, says", [
    ('[[pads]]\nsample = "kit:kick"\n[[pads]]\nsample = "kit:snare"\npan = 1.5\n',
     "pads[2].pan", "must be a number from -1 to 1, got 1.5"),
    ('[[pads]]\nsample = "kit:kick"\ngain_db = 20\n', "pads[1].gain_db", "from -60 to 12, got 20"),
    ('[[pads]]\nsample = "kit:"\n', "pads[1].sample", "needs a kit entry name"),
    ('[[pads]]\ngain_db = 1\n', "pads[1].sample", "is missing"),
    ('[voices]\npolyphony = 0\n', "voices.polyphony", "from 1 to 256, got 0"),
    ('[voices]\nvelocity_curve = "loud"\n', "voices.velocity_curve", "one of linear, soft, hard, fixed"),
    ('[[knobs]]\ndirection = "a"\nrange = [0.5, 0.5]\n', "knobs[1].range", "would do nothing"),
    ('[[knobs]]\ndirection = "a"\nrange = [0, 2]\n', "knobs[1].range[2]", "from -1 to 1, got 2"),
    ('[[knobs]]\ndirection = "a"\ncurve = "cubic"\n', "knobs[1].curve", "linear, exponential, logarithmic"),
    ('[[knobs]]\ndirection = "a"\n[[knobs]]\ndirection = "a"\n', "knobs[2].direction", "already knob 1"),
    ('[[knobs]]\ndirection = "a"\n[snapshots]\n3 = { b = 0.5 }\n', "snapshots.3.b", "(knobs: a)"),
    ('[[knobs]]\ndirection = "a"\n[snapshots]\n200 = { a = 0.5 }\n', "snapshots.200", "0-127"),
    ('[[knobs]]\ndirection = "a"\n[snapshots]\n1 = { a = 2 }\n', "snapshots.1.a", "from 0 to 1"),
    ("[[knobs]]\ndirection = 'a'\n[[knobs]]\ndirection = 'b'\n[[knobs]]\ndirection = 'c'\n", "knobs",
     'has 3 entries, but controller "Test pads" has 2 knobs'),
])
def test_preset_errors_name_the_file_and_key(tmp_path, body, key, says):
    p = preset(tmp_path, body)
    msg = error(load_preset, p)
    assert msg.startswith(f"{p}: {key} "), msg
    assert says in msg, msg


def test_toml_syntax_errors_name_the_file_and_line(tmp_path):
    p = write(tmp_path, "bad.toml", 'controller = "test"\n[voices]\npolyphony = = 3\n')
    msg = error(load_preset, p)
    assert msg.startswith(f"{p}: not valid TOML") and "line 3" in msg
    assert "no such file" in error(load_preset, tmp_path / "missing.toml")


def test_controllers_are_found_by_id_or_path(tmp_path):
    shipped = load_preset(write(tmp_path, "a.toml", 'controller = "generic"\n'))
    assert shipped.controller.name.startswith("Generic")
    write(tmp_path, "maps/mine.toml", CONTROLLER)
    by_path = load_preset(write(tmp_path, "sets/b.toml", 'controller = "../maps/mine.toml"\n'))
    assert by_path.controller.name == "Test pads"
    write(tmp_path, "controllers/generic.toml", CONTROLLER)  # the preset's own folder comes first
    assert load_preset(tmp_path / "a.toml").controller.name == "Test pads"
    msg = error(load_preset, write(tmp_path, "c.toml", 'controller = "nope"\n'))
    assert "controller \"nope\" is neither a controller id (shipped: " in msg and "generic" in msg


def test_check_preset_names_unknown_directions_kit_entries_and_missing_files(tmp_path):
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "kick.wav").write_bytes(b"RIFF")
    p = load_preset(preset(tmp_path, """
        [[pads]]
        sample = "samples/kick.wav"
        [[pads]]
        sample = "samples/snare.wav"
        [[knobs]]
        direction = "brighter"
        [[knobs]]
        direction = "boomy"
    """))
    assert p.pads[0].kind == "file" and p.pads[0].sample == (tmp_path / "samples" / "kick.wav").resolve()
    msg = error(check_preset, p, ["brighter", "louder"], [])
    assert msg == f'{p.path}: knobs[2].direction "boomy" is not in the bundle (it has: brighter, louder)'
    msg = error(check_preset, p, ["brighter", "boomy"], [])
    snare = tmp_path.resolve() / "samples" / "snare.wav"
    assert msg.startswith(f"{p.path}: pads[2].sample {snare} is not a file")


def test_write_controller_round_trips_awkward_text_and_any_channels(tmp_path):
    m = ControllerMap('My "pad" box\\2', None, (36, 1, 127), 15, (0, 33, 7), cc14=frozenset({0, 7}),
                      program_channel=3, sources=("über \t tab", "line\nbreak"),
                      notes='a "b"\n\x01\x7f\u2028')
    write_controller(m, tmp_path / "deep" / "m.toml")
    assert load_controller(tmp_path / "deep" / "m.toml") == m
    rel = ControllerMap("r", 0, (), 0, (20,), knob_mode="relative_twos_complement")
    write_controller(rel, tmp_path / "r.toml")
    assert load_controller(tmp_path / "r.toml") == rel


PAD = 'controller = "generic"\n[[pads]]\nsample = '


@pytest.mark.parametrize("line, words", [
    (PAD + '"~nosuchuser/kick.wav"', "pads[1].sample: '~nosuchuser/kick.wav' starts with ~nosuchuser"),
    ('controller = "~nosuchuser/map.toml"\n[[pads]]\nsample = "kit:kick"',
     "controller: '~nosuchuser/map.toml'"),
    (PAD + '"a\\u0000b.wav"', "pads[1].sample: 'a<NUL>b.wav' holds a NUL"),
    (PAD + '"kit:kick"\n[capture]\nkit_dir = "k\\u0000"', "capture.kit_dir: 'k<NUL>' holds a NUL"),
])
def test_a_path_no_system_call_takes_is_one_line_naming_the_key(tmp_path, line, words):
    """~user of an unknown user (pathlib raises RuntimeError) and a NUL byte (every os call
    raises ValueError) reached the user as 'internal error' tracebacks (a hostile pass)."""
    path = tmp_path / "p.toml"
    path.write_text(line + "\n")
    with pytest.raises(SteerpadError) as e:
        load_preset(path)
    assert str(e.value).startswith(f"{path}: ") and words in str(e.value) and "\n" not in str(e.value)
