"""The audio options every part of the engine supports, and the one check `steerpad live` and
`steerpad render` run on --sample-rate and --blocksize before anything opens; and FILE_RATES,
the sample rates an audio file may have (engine.read_one_shot, offline ingest).

Block size, 16..8192 frames:
- the master bus (masterbus.py) needs at least 16 frames;
- pyo's block processing keeps per-block buffers on the calling thread's stack, about 12 bytes
  per frame for the master bus (2 channels + the meter channel, float32). Live, that thread is
  the audio driver's: a JACK client thread has a 512 KiB stack (so do macOS's secondary
  threads), and a block of ~43,000 frames or more overflows it (measured: `steerpad live
  --blocksize 65536` died with SIGSEGV; MasterBus.process on a 512 KiB-stack thread works at
  43,108 frames and crashes at 43,360, on a 256 KiB one at 21,184 / 21,436). 8192 frames
  (~96 KiB, 170 ms at 48 kHz) keeps a 4x margin and is the largest period JACK and most
  PortAudio devices offer; a larger block has no use live, and a render gains nothing from it.

Sample rate, 8000..384000 Hz: the range sound cards and JACK run at. The master bus's lookahead
is 0.5 ms rounded to whole samples, which is no sample at all under ~3 kHz (a render at 1000 Hz
died dividing by zero); renders through soxr and the limiter were checked at both ends
(`steerpad render` at 8000 and 384000 Hz).
"""

from __future__ import annotations

import math
import numbers

from steerpad.realtime.errors import SteerpadError

BLOCKSIZE_MIN, BLOCKSIZE_MAX = 16, 8192
"""Frames per audio block."""
SAMPLE_RATE_MIN, SAMPLE_RATE_MAX = 8000, 384000
"""Hz."""
FILE_RATES = (1000, 768000)
"""Sample rates an audio file (a pad's sample, a one-shot to ingest) may have, in Hz: a header
outside this is broken or hostile (a 1 Hz "kick" would be upsampled from a few samples)."""


def _whole(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Integral):
        return True
    return isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer()


def check_audio_options(sample_rate: object, blocksize: object, where: str = "live") -> None:
    """Raise SteerpadError, one line naming the option and its range, unless `sample_rate`
    (Hz; None = the device's own rate, checked once known) and `blocksize` (frames) are whole
    numbers in SAMPLE_RATE_MIN..MAX and BLOCKSIZE_MIN..MAX. `where` names the command
    ("live", "render") in the message."""
    if not (_whole(blocksize) and BLOCKSIZE_MIN <= blocksize <= BLOCKSIZE_MAX):
        raise SteerpadError(f"--blocksize {blocksize} is out of range for steerpad {where}: use "
                            f"{BLOCKSIZE_MIN} to {BLOCKSIZE_MAX} frames (128 or 256 suit live play)")
    if sample_rate is not None and not (_whole(sample_rate)
                                        and SAMPLE_RATE_MIN <= sample_rate <= SAMPLE_RATE_MAX):
        raise SteerpadError(f"--sample-rate {sample_rate} is out of range for steerpad {where}: use "
                            f"{SAMPLE_RATE_MIN} to {SAMPLE_RATE_MAX} Hz (44100 or 48000 suit most devices)")
