"""MIDI input through rtmidi: raw messages -> events.py events, delivered on a thread of their
own, or drained by the audio callback (`drain`, what `steerpad live` does on PortAudio; as a JACK
client it reads its own JACK MIDI port instead, realtime/jackio.py).

Threads (each a service.Loop): a reader (with a handler) takes messages from rtmidi's own queue
(`get_message()`, every `READ_S` when idle), parses them and calls the handler; for a named port
a watcher polls the port list and reconnects when the port comes back. `stop()` stops and joins
both, then closes the ports in `finally` (called from the handler, the reader closes them as it
leaves). A loop that raises ends with its `crash` kept; MidiInput.crash reports it.

A reconnect never touches the client being drained (by the reader thread, or by the audio
callback through `drain()`): the watcher opens the returned port on a fresh client and swaps
the reference (`_midiin`, written by the watcher only, after start); the old client is closed at
the watcher's next poll, when no drain can still be holding it.

Why no rtmidi callback (python-rtmidi's examples/midifilter enqueues from one): rtmidi calls it
on the driver's thread, under JACK the process thread, and it must take the GIL there. Measured
with one busy Python thread in the process (as the engine is), 1500 notes at 2 ms over JACK: a
callback received 1384 and 1160, of them 127 and 150 duplicates; polling 1500 and 1493, none
duplicated. And freeing a JACK client while a callback waits for the GIL (python-rtmidi holds
it there) cancels that thread with the GIL's mutex held: under a 2 kHz MIDI stream stop() hung
the process within 10 tries (with waits added, it crashed within ~110); polling: 150 clean. Polling
keeps Python off the driver's thread; rtmidi's queue (1024 messages) holds what arrives while
the reader waits for the GIL. It costs ~2.5 % of a core when idle.

Which MIDI API: `api=` or else $STEERPAD_MIDI_API ("alsa", "jack", "coremidi", "winmm"); unset
means rtmidi's default API, then JACK if the default cannot open or has no matching port (rtmidi's
default on Linux is ALSA, which fails without /dev/snd/seq instead of trying JACK).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager

import rtmidi

from steerpad.realtime.errors import SteerpadError
from steerpad.realtime.events import Event
from steerpad.realtime.midiparse import MidiParser
from steerpad.realtime.service import Loop

__all__ = ["MidiInput", "MidiParser", "first_input_without_virtual", "list_input_ports", "list_output_ports",
           "resolve_api"]

CLIENT_NAME = "steerpad"
"""The MIDI client name others see (JACK adds "-01" etc. when the name is taken)."""
API_NAMES = {"alsa": rtmidi.API_LINUX_ALSA, "jack": rtmidi.API_UNIX_JACK,
             "coremidi": rtmidi.API_MACOSX_CORE, "winmm": rtmidi.API_WINDOWS_MM}
"""The MIDI APIs by the names $STEERPAD_MIDI_API and `api=` take ("core" is accepted too)."""
ENV_API = "STEERPAD_MIDI_API"
READ_S = 0.001
"""How long the reader sleeps when rtmidi's queue is empty: the added latency, ~0.5 ms on average."""
_HINTS = {"jack": f"start the JACK server, or choose another API with ${ENV_API}",
          "alsa": f"load the ALSA sequencer (modprobe snd-seq), or choose another API with ${ENV_API}"}


@contextmanager
def _library_lines_dropped() -> Iterator[None]:
    """While an API opens, what ALSA and libjack write to stderr themselves (from C: "ALSA lib
    seq_hw.c:466:(snd_seq_hw_open) open /dev/snd/seq failed", "Cannot connect to server socket",
    five more) goes nowhere: rtmidi's exception says the same, and steerpad's one-line error says
    it with what to do. fd 2 is the process's: only on the main thread (the watcher thread's
    reconnects keep it), and what another thread writes to stderr in those milliseconds (the
    render worker runs by then in `steerpad live`) is lost with them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if sys.stderr is not None:  # (None: started with fd 2 closed)
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all: nothing to drop
        yield
        return
    try:
        sink = os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no fd left for /dev/null: let the lines through
        os.close(saved)
        yield
        return
    try:
        os.dup2(sink, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(sink)


def _new(cls: type, api_id: int) -> rtmidi.MidiIn | rtmidi.MidiOut:
    """An rtmidi client of `api_id` (RtMidiError if the API cannot open), the library's own
    stderr lines dropped."""
    with _library_lines_dropped():
        return cls(api_id, name=CLIENT_NAME)


NO_VIRTUAL_PORTS = {rtmidi.API_WINDOWS_MM}
"""MIDI APIs without virtual ports (WinMM: on Windows a loopback port comes from loopMIDI)."""


def first_input_without_virtual(api: str | None = None) -> str | None:
    """None where the MIDI API steerpad would use (`api`, else auto) has virtual ports. Where it
    has none: the name of its first input port, or SteerpadError saying what to do if there is
    no input at all."""
    try:
        probe = _new(rtmidi.MidiIn, _candidates(resolve_api(api))[0])
    except rtmidi.RtMidiError:
        return None  # MidiInput says why this API cannot open
    try:
        current = probe.get_current_api()
        if current not in NO_VIRTUAL_PORTS:
            return None
        ports = probe.get_ports()
    finally:
        probe.delete()
    if not ports:
        raise SteerpadError(f"MIDI ({rtmidi.get_api_name(current)}) has no virtual ports, and no MIDI input "
                            "is there: plug in a controller or create a loopback port (loopMIDI on "
                            "Windows), then pick it with --midi-port (`steerpad devices` lists them)")
    return ports[0]


def resolve_api(api: str | None = None) -> int | None:
    """`api` (or else $STEERPAD_MIDI_API) -> an rtmidi API constant; None means "auto"."""
    name = api if api is not None else os.environ.get(ENV_API, "")
    key = name.strip().lower()
    if key in ("", "auto"):
        return None
    api_id = API_NAMES.get("coremidi" if key == "core" else key)
    where = f"MIDI API {name!r}" + ("" if api is not None else f" (from ${ENV_API})")
    if api_id is None:
        raise SteerpadError(f"unknown {where}: use one of {', '.join(API_NAMES)} or auto")
    compiled = [rtmidi.get_api_name(a) for a in rtmidi.get_compiled_api()]
    if api_id not in rtmidi.get_compiled_api():
        raise SteerpadError(f"{where} is not built into this python-rtmidi: use one of "
                            f"{', '.join(compiled)} or auto")
    return api_id


def _candidates(api_id: int | None) -> list[int]:
    """The APIs to try in order: the chosen one, or rtmidi's default and then JACK."""
    if api_id is not None:
        return [api_id]
    jack = [rtmidi.API_UNIX_JACK] if rtmidi.API_UNIX_JACK in rtmidi.get_compiled_api() else []
    return [rtmidi.API_UNSPECIFIED, *jack]


def _client(cls: type, api_id: int) -> rtmidi.MidiIn | rtmidi.MidiOut:
    """A MIDI client; an explicitly chosen API that cannot open raises SteerpadError."""
    try:
        return _new(cls, api_id)
    except rtmidi.RtMidiError as e:
        name = rtmidi.get_api_name(api_id)
        hint = _HINTS.get(name, f"choose another with ${ENV_API}")
        raise SteerpadError(f"cannot open MIDI API {name} ({_reason(e)}): {hint}") from None


def _list_ports(cls: type, api: str | None) -> list[str]:
    api_id = resolve_api(api)
    if api_id is not None:
        client = _client(cls, api_id)
        try:
            return client.get_ports()
        finally:
            client.delete()
    for candidate in _candidates(None):  # auto: the first API that opens and has ports
        try:
            client = _new(cls, candidate)
        except rtmidi.RtMidiError:
            continue
        try:
            ports = client.get_ports()
        finally:
            client.delete()
        if ports:
            return ports
    return []


def list_input_ports(api: str | None = None) -> list[str]:
    """Ports MIDI can be read from (controllers, other programs' outputs); auto: see the module."""
    return _list_ports(rtmidi.MidiIn, api)


def list_output_ports(api: str | None = None) -> list[str]:
    """Ports MIDI can be sent to; auto: see the module."""
    return _list_ports(rtmidi.MidiOut, api)


def _match(ports: Sequence[str], query: str, prefer: str | None = None) -> int | None:
    if prefer is not None and prefer in ports:
        return ports.index(prefer)
    q = query.lower()
    return next((i for i, p in enumerate(ports) if q in p.lower()), None)


class MidiInput:
    """Reads one MIDI input and calls `handler(event)` on its own thread, for every parsed event;
    or, made with handler=None, keeps the messages in rtmidi's queue for its owner to `drain()`
    (the audio callback does, at the start of each block: no thread hop between MIDI and audio).

    `port`: open the first input port whose name contains it (case-insensitive); `virtual`: open a
    virtual input port of that name for a DAW or sequencer to connect to; neither: the virtual
    port "steerpad". `channels`: only these (0-15) reach the handler. `cc14`: see MidiParser.

    A named port that disappears leaves the input running (`connected` False); a watcher polls
    the port list every `poll_s` and reconnects when the same port name, or else a port matching
    `port`, shows up again. A port that vanishes and returns within one poll is not noticed.

    Attributes, read from any thread: `connected`, `port_name` (the connected port's name, or
    the virtual port's name), `api_name` ("jack", "alsa", ...), `reconnects`, `received`
    (messages taken from rtmidi), `ignored` (messages that gave no event), `filtered` (events
    dropped by `channels`), `handler_errors` (exceptions the handler raised, counted and the
    latest kept in `handler_error`, never fatal; written by whoever delivers: the reader or
    drain()'s caller), `last_error` (the watcher's latest port problem in one line, or None) and
    `event_time` (time.perf_counter() when the message being handled was taken from
    rtmidi, ~READ_S after it arrived; read it inside the handler). rtmidi itself drops sysex,
    clock and active sensing: they are not counted.
    """

    def __init__(self, handler: Callable[[Event], None] | None, port: str | None = None,
                 virtual: str | None = None, cc14: Collection[int] = (), api: str | None = None,
                 channels: Collection[int] | None = None, poll_s: float = 0.5):
        if port is not None and virtual is not None:
            raise SteerpadError(f"MIDI input: give a port ({port!r}) or a virtual port ({virtual!r}), "
                                "not both")
        if port is not None and not port.strip():
            raise SteerpadError("MIDI input port name is empty: give part of a port name "
                                "(`steerpad devices` lists them)")
        if channels is not None:
            bad = [c for c in channels if type(c) is not int or not 0 <= c <= 15]
            if bad:
                raise SteerpadError(f"MIDI channels {bad!r} are out of range: use 0-15 (devices say 1-16)")
        if not poll_s > 0:
            raise ValueError(f"poll_s must be > 0, got {poll_s!r}")
        self._handler = handler
        self._query = port
        self._virtual = virtual if port is not None or virtual is not None else CLIENT_NAME
        self._api_id = resolve_api(api)
        self._parser = MidiParser(cc14)
        self._mask = None if channels is None else [c in set(channels) for c in range(16)]
        self._poll_s = poll_s
        self._midiin: rtmidi.MidiIn | None = None
        self._probe: rtmidi.MidiIn | None = None  # lists ports for the watcher (its own client)
        self._retired: list[rtmidi.MidiIn] = []  # swapped out by a reconnect; the watcher closes them
        self._loops: list[Loop] = []
        self._started = False
        self._close_on_exit = False
        self.connected = False
        self.port_name: str | None = None
        self.api_name: str | None = None
        self.reconnects = 0
        self.received = 0
        self.filtered = 0
        self.handler_errors = 0
        self.handler_error: str | None = None
        self.last_error: str | None = None
        self.event_time = 0.0

    @property
    def ignored(self) -> int:
        return self._parser.ignored

    def __enter__(self) -> MidiInput:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> MidiInput:
        """Open the port (SteerpadError if it cannot) and start the threads."""
        if self._started:
            raise RuntimeError("MidiInput.start() was already called; make a new MidiInput")
        self._started = True
        try:
            self._open_named() if self._query is not None else self._open_virtual()
        except BaseException:
            self._close()
            raise
        if self._handler is not None:
            self._loops.append(Loop("steerpad-midi", self._read))
        if self._query is not None:
            self._loops.append(Loop("steerpad-midi-watch", self._watch))
        for loop in self._loops:
            loop.start()
        return self

    @property
    def crash(self) -> str | None:
        """Why the reader or the watcher ended on an exception (one line), or None."""
        return next((loop.crash for loop in self._loops if loop.crash is not None), None)

    def stop(self) -> None:
        """Stop the threads and close the ports; safe to call twice, or from the handler."""
        self._started = True  # a stopped input does not start again
        mine = any(loop.on_own_thread for loop in self._loops)
        try:
            for loop in self._loops:
                loop.stop()  # (does not wait on the calling thread itself)
        finally:
            if not mine:
                self._close()
            else:  # called from the handler: the reader closes the ports as it leaves
                self._close_on_exit = True

    def drain(self, handler: Callable[[Event], None], limit: int = 256) -> int:
        """Take up to `limit` waiting messages from rtmidi and call handler(event) for each, now,
        on this thread: for an input made with handler=None, whose owner (the audio callback)
        drains it at the start of every block. Never blocks; returns the messages taken."""
        midiin = self._midiin
        if midiin is None:
            return 0
        get = midiin.get_message
        n = 0
        while n < limit:
            got = get()
            if got is None:
                break
            n += 1
            self._deliver(got[0], handler)
        return n

    def _deliver(self, message: list[int], handler: Callable[[Event], None]) -> None:
        self.received += 1
        event = self._parser.feed(message)
        if event is None:
            return
        if self._mask is not None and not self._mask[event.channel]:
            self.filtered += 1
            return
        self.event_time = time.perf_counter()
        try:
            handler(event)
        except Exception as e:  # a handler bug must not end MIDI input
            self.handler_errors += 1
            self.handler_error = f"MIDI handler raised {type(e).__name__}: {e}".splitlines()[0]

    def _read(self, stopping: threading.Event) -> None:
        handler = self._handler
        try:
            while not stopping.is_set():
                midiin = self._midiin  # a reconnect swaps in a fresh client
                got = midiin.get_message() if midiin is not None else None
                if got is None:
                    time.sleep(READ_S)
                    continue
                self._deliver(got[0], handler)
        finally:
            if self._close_on_exit:
                for loop in self._loops[1:]:
                    loop.stop()
                self._close()

    def _clients(self, reasons: list[str]) -> Iterator[rtmidi.MidiIn]:
        """Clients of the APIs to try, in order (see the module); an auto API that cannot open is
        skipped with its reason noted, a chosen one raises SteerpadError."""
        tried = set()
        for api_id in _candidates(self._api_id):
            if self._api_id is not None:
                midiin = _client(rtmidi.MidiIn, api_id)
            else:
                try:
                    midiin = _new(rtmidi.MidiIn, api_id)
                except rtmidi.RtMidiError as e:
                    which = "rtmidi's default API" if api_id == rtmidi.API_UNSPECIFIED else \
                        rtmidi.get_api_name(api_id)
                    reasons.append(f"{which} ({_reason(e)})")
                    continue
            if midiin.get_current_api() in tried:  # rtmidi's default was JACK already
                midiin.delete()
                continue
            tried.add(midiin.get_current_api())
            yield midiin

    def _open_virtual(self) -> None:
        reasons: list[str] = []
        for midiin in self._clients(reasons):
            api_name = rtmidi.get_api_name(midiin.get_current_api())
            try:
                midiin.open_virtual_port(self._virtual)
            except (rtmidi.RtMidiError, NotImplementedError) as e:
                reasons.append(f"{api_name} ({_reason(e)})")
                midiin.delete()
                continue
            self._midiin, self.api_name = midiin, api_name
            self.port_name, self.connected = self._virtual, True
            return
        raise SteerpadError(f"cannot open a virtual MIDI input port {self._virtual!r} "
                            f"({'; '.join(reasons)}): name an input port instead "
                            "(`steerpad devices` lists them)")

    def _open_named(self) -> None:
        seen: list[str] = []
        reasons: list[str] = []
        for midiin in self._clients(reasons):
            api_name = rtmidi.get_api_name(midiin.get_current_api())
            ports = midiin.get_ports()
            if _match(ports, self._query) is None:
                seen += [f"{p!r} ({api_name})" for p in ports]
                midiin.delete()
                continue
            self._midiin, self.api_name = midiin, api_name
            self._probe = _client(rtmidi.MidiIn, midiin.get_current_api())
            self._connect(midiin)
            return
        available = (", ".join(seen) or "none") + (f"; not searched: {'; '.join(reasons)}" if reasons else "")
        raise SteerpadError(f"no MIDI input port matches {self._query!r}: available: {available}")

    def _connect(self, midiin: rtmidi.MidiIn) -> bool:
        """Open the matching port on `midiin`; False if it is gone again.

        rtmidi opens a port by its index in a list it fetches again, so a port list that changes
        in between (other programs come and go) can open the wrong port or none: check the port
        is still at that index afterwards, and try again if not."""
        for _ in range(5):
            midiin.close_port()
            ports = midiin.get_ports()
            i = _match(ports, self._query, prefer=self.port_name)
            if i is None:
                return False
            try:
                midiin.open_port(i, name="in")
            except rtmidi.InvalidPortError:
                continue
            now = midiin.get_ports()
            if i < len(now) and now[i] == ports[i]:
                self.port_name, self.connected = ports[i], True
                return True
        raise SteerpadError(f"MIDI port {ports[i]!r} could not be opened: the port list kept changing")

    def _reconnect(self) -> bool:
        """Open the returned port on a fresh client and swap it in: the client being drained (by
        the audio callback, or the reader thread) is never closed or reopened under it. The old
        one is retired, and closed at the watcher's next poll, long after any drain let go."""
        fresh = _client(rtmidi.MidiIn, self._probe.get_current_api())
        try:
            opened = self._connect(fresh)
        except BaseException:
            fresh.delete()
            raise
        if not opened:
            fresh.delete()
            return False
        old, self._midiin = self._midiin, fresh  # the atomic swap: drain() takes it next block
        if old is not None:
            self._retired.append(old)
        return True

    def _retire(self) -> None:
        """Close and free the clients swapped out at an earlier poll."""
        while self._retired:
            old = self._retired.pop()
            try:
                old.close_port()
            finally:
                old.delete()

    def _watch(self, stopping: threading.Event) -> None:
        while not stopping.wait(self._poll_s):
            try:
                self._retire()
                ports = self._probe.get_ports()
                if self.connected and self.port_name not in ports:
                    self.connected = False
                    self.last_error = f"MIDI port {self.port_name!r} disappeared: waiting for it to return"
                elif not self.connected and _match(ports, self._query, prefer=self.port_name) is not None:
                    if self._reconnect():
                        self.reconnects += 1
            except Exception as e:  # keep watching: the port may come back
                self.last_error = f"MIDI reconnect failed: {type(e).__name__}: {e}".splitlines()[0]

    def _close(self) -> None:
        """Close and free our clients, once the threads that use them have stopped."""
        clients, self._midiin, self._probe = (self._midiin, self._probe, *self._retired), None, None
        self._retired = []
        self.connected = False
        try:
            for client in clients:
                if client is not None:
                    client.close_port()
        finally:
            for client in clients:
                if client is not None:
                    client.delete()


def _reason(e: BaseException) -> str:
    """An rtmidi error as one line."""
    return (str(e).splitlines() or [type(e).__name__])[0]
