"""The voice mixer: exact mixing (gain, pan, velocity, sample offset, fade-in), click-free chokes,
steals and stops, voices keeping their audio, and no allocation in the audio-thread calls."""

from __future__ import annotations

import math
import tracemalloc
import weakref

import numpy as np
import pytest

from steerpad.realtime.voices import VELOCITY_CURVES, VoiceMixer, pan_gains, velocity_gain

SR = 48000
CLICK = 0.03
"""Largest allowed sample-to-sample step in tests whose voices are constants of 0.5 or less: the
32-frame fade-in of a 0.5 constant steps by 0.024; cutting any voice in them steps by >= 0.1."""


def dc(level: float, frames: int) -> np.ndarray:
    """A constant stereo one-shot: any step in the mix comes from the mixer."""
    return np.full((frames, 2), level, np.float32)


def sine(freq: float, frames: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(frames) / SR
    x = amp * np.sin(2 * np.pi * freq * t)
    return np.ascontiguousarray(np.stack([x, 0.5 * x], axis=1), np.float32)


def run(mixer: VoiceMixer, blocks: int, frames: int = 128) -> np.ndarray:
    """Mix `blocks` blocks into one [blocks * frames, 2] array (each block pre-filled with junk)."""
    out = np.empty((blocks * frames, 2), np.float32)
    for b in range(blocks):
        block = out[b * frames:(b + 1) * frames]
        block.fill(7.0)
        mixer.mix(block)
    return out


def max_step(x: np.ndarray) -> float:
    return float(np.abs(np.diff(x, axis=0)).max())


def test_velocity_curves() -> None:
    assert VELOCITY_CURVES == ("linear", "soft", "hard", "fixed")
    assert velocity_gain("linear", 127) == 1.0 and velocity_gain("linear", 0) == 0.0
    assert velocity_gain("linear", 64) == pytest.approx(64 / 127)
    assert velocity_gain("soft", 64) == pytest.approx((64 / 127) ** 0.5)
    assert velocity_gain("hard", 64) == pytest.approx((64 / 127) ** 2)
    assert velocity_gain("fixed", 1) == 1.0
    assert velocity_gain("soft", 32) > velocity_gain("linear", 32) > velocity_gain("hard", 32)
    assert velocity_gain("linear", 200) == 1.0 and velocity_gain("linear", -5) == 0.0
    with pytest.raises(ValueError, match="linear, soft, hard, fixed"):
        velocity_gain("log", 64)
    with pytest.raises(ValueError, match="velocity curve"):
        VoiceMixer(4, 128, velocity_curve="log")


def test_pan_law_is_equal_power_with_unity_centre() -> None:
    assert pan_gains(0.0) == pytest.approx((1.0, 1.0))
    assert pan_gains(-1.0) == pytest.approx((math.sqrt(2), 0.0), abs=1e-12)
    assert pan_gains(1.0) == pytest.approx((0.0, math.sqrt(2)), abs=1e-12)
    for pan in np.linspace(-1, 1, 9):
        left, right = pan_gains(pan)
        assert left**2 + right**2 == pytest.approx(2.0)
    assert pan_gains(-0.5)[0] > pan_gains(0.5)[0]


@pytest.mark.parametrize("offset", [0, 37, 200])
def test_one_voice_is_exact(offset: int) -> None:
    rng = np.random.default_rng(offset)
    audio = rng.uniform(-0.5, 0.5, (300, 2)).astype(np.float32)
    mixer = VoiceMixer(4, 128, velocity_curve="hard")
    mixer.set_pad(2, gain_db=-6.0, pan=0.3)
    mixer.note_on(2, 100, audio, offset=offset)
    assert mixer.active == 1
    out = run(mixer, 5)
    j = np.arange(1, 33)
    ramp = np.ones(300)
    ramp[:32] = 0.5 - 0.5 * np.cos(np.pi * j / 33)          # the fade-in, written out independently
    t = (0.3 + 1) * np.pi / 4
    gains = 10 ** (-6 / 20) * (100 / 127) ** 2 * np.sqrt(2) * np.array([np.cos(t), np.sin(t)])
    expected = np.zeros_like(out, dtype=np.float64)
    expected[offset:offset + 300] = audio * gains * ramp[:, None]
    np.testing.assert_allclose(out, expected, rtol=0, atol=2e-7)
    assert mixer.active == 0


def test_long_out_is_mixed_in_max_block_pieces() -> None:
    audio = sine(300, 1000)
    a, b = VoiceMixer(1, 128), VoiceMixer(1, 128)
    a.note_on(0, 127, audio, offset=10)
    b.note_on(0, 127, audio, offset=10)
    whole = np.empty((300, 2), np.float32)
    a.mix(whole)
    np.testing.assert_array_equal(whole, np.concatenate([run(b, 2), run(b, 1, 44)]))


def test_choke_fades_other_pads_of_the_group_not_itself() -> None:
    mixer = VoiceMixer(3, 128)
    mixer.set_pad(0, choke=0)   # open hat
    mixer.set_pad(1, choke=0)   # closed hat
    long = sine(100, SR)       # steps of at most 0.0066 per sample
    mixer.note_on(0, 127, long)
    mixer.note_on(2, 127, long)  # no group: never choked
    run(mixer, 3)                # pads 0 and 2 play the same sine until the choke
    mixer.note_on(1, 127, dc(0.0, SR), offset=50)   # silent, so the mix shows the choked voice
    assert mixer.choked == 1
    after = run(mixer, 4)
    # Up to the choke's offset the output is untouched; from 50 + 256 frames on only pad 2 sounds.
    np.testing.assert_allclose(after[:50], 2 * long[384:434], atol=1e-6)
    np.testing.assert_allclose(after[50 + 256:], long[384 + 306:384 + 512], atol=1e-6)
    assert max_step(after) < 0.02   # the sum steps <= 0.013 on its own; a cut would step by ~0.38
    fade = after[50:50 + 256] - long[434:434 + 256]  # pad 0's part, fading
    assert np.all(np.abs(fade) <= np.abs(long[434:434 + 256]) + 1e-6)
    assert mixer.active == 2        # pad 1 (the choker) and pad 2
    mixer.note_on(1, 127, dc(0.0, SR))             # the same pad again: both pad 1 voices stay
    assert mixer.choked == 1 and mixer.active == 3


def test_steal_takes_the_oldest_held_voice_without_a_click() -> None:
    mixer = VoiceMixer(8, 128, polyphony=3)
    mixer.note_on(0, 127, dc(0.1, 100))     # ends early, freeing the lowest slot
    run(mixer, 1)
    assert mixer.active == 0
    mixer.note_on(1, 127, dc(0.2, SR))      # oldest
    mixer.note_on(2, 127, dc(0.3, SR))
    run(mixer, 1)
    mixer.note_on(3, 127, dc(0.4, SR))      # youngest, in the lowest slot
    run(mixer, 1)
    mixer.note_on(4, 127, dc(0.5, SR), offset=20)
    assert mixer.stolen == 1 and mixer.active == 4  # the stolen voice still fades
    out = run(mixer, 4)
    assert mixer.active == 3
    # Pad 1 (0.2) fades from frame 20; pad 4 fades in; then 0.3 + 0.4 + 0.5 remain.
    np.testing.assert_allclose(out[:20], 0.9, atol=1e-6)
    np.testing.assert_allclose(out[300:], 1.2, atol=1e-6)
    assert max_step(out) < CLICK


def test_rapid_steals_past_every_slot_cut_the_oldest_fade() -> None:
    mixer = VoiceMixer(8, 128, polyphony=2)
    for pad in range(8):
        mixer.note_on(pad, 127, dc(0.1, SR))
        run(mixer, 1, 16)           # each voice starts before the next steals it
    # Notes 3-8 steal; 2 held + 2 fading fill the 4 slots, so notes 5-8 each cut a fade.
    assert mixer.stolen == 6 and mixer.cut == 4 and mixer.active == mixer.slots == 4
    run(mixer, 3)
    assert mixer.active == 2


def test_voice_keeps_its_audio_after_the_pad_render_is_replaced() -> None:
    mixer = VoiceMixer(1, 128)
    render = sine(440, 1000)
    expected = render.copy()
    ref = weakref.ref(render)
    mixer.note_on(0, 127, render)
    render = sine(880, 1000)     # the renderer swaps in a new array for the pad
    out = run(mixer, 6)
    assert ref() is not None     # the voice holds the array it started with
    np.testing.assert_allclose(out[200:768], expected[200:768], atol=1e-7)
    run(mixer, 3)
    assert mixer.active == 0 and ref() is None  # and lets go when it ends


@pytest.mark.parametrize("stop_all", [False, True])
def test_stop_fades_out(stop_all: bool) -> None:
    mixer = VoiceMixer(2, 128)
    mixer.note_on(0, 127, dc(0.5, SR))
    mixer.note_on(1, 127, dc(0.25, SR))
    run(mixer, 1)
    if stop_all:
        mixer.stop_all(offset=10)
    else:
        mixer.stop(0, offset=10)
    out = run(mixer, 4)
    rest = 0.0 if stop_all else 0.25
    np.testing.assert_allclose(out[:10], 0.75, atol=1e-6)
    assert np.all(np.diff(out[:300, 0]) <= 1e-7)      # a monotonic fade ...
    np.testing.assert_allclose(out[10 + 256:], rest, atol=1e-7)
    assert max_step(out) < CLICK                      # ... with no step
    assert mixer.active == (0 if stop_all else 1)


def test_stop_before_the_voice_starts_drops_it() -> None:
    mixer = VoiceMixer(1, 128)
    mixer.note_on(0, 127, dc(0.5, SR), offset=100)
    mixer.stop(0, offset=40)
    assert mixer.active == 0
    assert not run(mixer, 2).any()


def test_bad_note_ons_are_counted_not_raised() -> None:
    mixer = VoiceMixer(2, 128)
    mixer.note_on(5, 100, dc(0.1, 10))
    mixer.note_on(0, 100, dc(0.1, 10).astype(np.float64))
    mixer.note_on(0, 100, np.zeros((10, 1), np.float32))
    mixer.note_on(0, 100, np.zeros((0, 2), np.float32))
    mixer.note_on(0, 100, np.asfortranarray(dc(0.1, 10)))
    assert mixer.rejected == 5 and mixer.active == 0
    with pytest.raises(ValueError, match="pad"):
        mixer.set_pad(2)
    with pytest.raises(ValueError, match="pan"):
        mixer.set_pad(0, pan=1.5)
    with pytest.raises(ValueError, match="choke"):
        mixer.set_pad(0, choke=-2)


def test_mix_and_note_on_do_not_allocate() -> None:
    frames = 1024                    # a block-sized temporary would be 8 KiB
    audio = sine(100, 1100 * frames)
    mixer = VoiceMixer(16, frames, polyphony=16)
    out = np.zeros((frames, 2), np.float32)
    for pad in range(16):
        mixer.note_on(pad, 100, audio, offset=pad)
    mixer.mix(out)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(1000):
            mixer.mix(out)
        peak_mix = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        for i in range(200):
            mixer.note_on(i % 16, 100, audio, offset=i % 64)   # steals, fades
            mixer.mix(out)
        peak_notes = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert mixer.active >= 16 and mixer.stolen > 0
    assert peak_mix < 4096, peak_mix
    assert peak_notes < 4096, peak_notes


def test_a_ringing_voice_follows_a_fresh_render_at_its_playhead_with_an_equal_power_crossfade() -> None:
    mixer = VoiceMixer(2, 128, xfade=256)
    old, new = sine(440, 20000), sine(440, 20000, amp=0.25)  # the same note, 6 dB down
    renders, lineages = [old, None], [7, 0]
    mixer.note_on(0, 127, old, lineage=7)
    head = run(mixer, 10)  # 1280 frames of the old render
    renders[0] = new      # the worker publishes a fresh render of the same lineage
    mixer.follow(renders, lineages)
    assert mixer.followed == 1
    tail = run(mixer, 10)
    out = np.concatenate([head, tail])
    np.testing.assert_allclose(out[1000:1280], old[1000:1280], atol=1e-6)  # before: the old render
    np.testing.assert_allclose(out[1280 + 256:], new[1280 + 256:2560], atol=1e-6)  # after: the new
    x = np.arange(1, 257) / 257 * np.pi / 2  # during: old * cos + new * sin, at the same playhead
    np.testing.assert_allclose(out[1280:1536], old[1280:1536] * np.cos(x)[:, None]
                               + new[1280:1536] * np.sin(x)[:, None], atol=1e-6)
    # no click: a step no larger than the signal's own, times the equal-power crossfade's most
    # (cos + sin <= sqrt 2 where both renders agree); a cut or a jump in time would step ~0.5
    assert max_step(out) <= math.sqrt(2) * max(max_step(old), max_step(new))
    mixer.follow(renders, lineages)  # already on it: nothing to do
    assert mixer.followed == 1


def test_a_voice_keeps_its_sound_across_lineages_and_lengths() -> None:
    mixer = VoiceMixer(1, 128)
    a = sine(440, 5000)
    mixer.note_on(0, 127, a, lineage=1)
    run(mixer, 2)
    mixer.follow([sine(880, 5000)], [2])  # an `affects = "next"` knob moved, or a new source
    mixer.follow([sine(880, 4000)], [1])  # another length: not a render of the same source
    assert mixer.followed == 0
    np.testing.assert_allclose(run(mixer, 2), a[256:512], atol=1e-7)


def test_follow_and_crossfades_do_not_allocate() -> None:
    frames = 1024
    renders = [sine(100, 400 * frames, amp=0.1) for _ in range(16)]
    mixer = VoiceMixer(16, frames, polyphony=16, xfade=frames // 2 + 3)  # crossfades span blocks
    lineages = [0] * 16
    out = np.zeros((frames, 2), np.float32)
    for pad in range(16):
        mixer.note_on(pad, 100, renders[pad])
    fresh = [sine(100, 400 * frames, amp=0.2) for _ in range(16)]
    mixer.follow(renders, lineages)
    mixer.mix(out)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(100):
            renders[i % 16] = fresh[i % 16] if renders[i % 16] is not fresh[i % 16] else renders[(i + 1) % 16]
            mixer.follow(renders, lineages)
            mixer.mix(out)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert mixer.followed > 16
    assert peak < 4096, peak
