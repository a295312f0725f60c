"""`steerpad live` as a performer starts it, on the JACK server: it opens the audio device and a
virtual MIDI port, renders the pads, shows the status view, plays what arrives, and stops
cleanly (here after --duration; Ctrl-C takes the same path)."""

from __future__ import annotations

import threading
import time

import pytest
from rig.jackrig import Sender

from steerpad.offline.cli import main
from tests.chainbundle import write_preset

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("flags", [["--client-name", "steerpad-cli"],  # JACK: steerpad-cli:midi_in
                                   ["--audio-backend", "portaudio", "--midi-api", "jack",
                                    "--midi-port-name", "steerpad-cli"]], ids=["jack", "portaudio"])
def test_live_plays_from_a_virtual_port_and_stops_cleanly(jack_server, chain, tmp_path, capsys, flags):
    preset = write_preset(tmp_path, chain / "kits" / "synth_kit_6")
    sent = []

    def play() -> None:  # a sequencer connecting to steerpad's virtual port once it appears
        sender = Sender("steerpad-cli-test")
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    sender.connect("steerpad-cli")
                    break
                except LookupError:
                    time.sleep(0.1)
            time.sleep(0.2)  # a new JACK connection carries MIDI from the next cycle on
            for pad in (0, 2, 3):
                sent.append(sender.send([0x99, 36 + pad, 100]))
                time.sleep(0.2)
            sender.send([0xB0, 71, 100])
        finally:
            sender.close()

    t = threading.Thread(target=play)
    t.start()
    rc = main(["live", "--bundle", str(chain / "bundle"), "--preset", str(preset), *flags, "--duration", "3"])
    t.join()
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert len(sent) == 3
    assert "steerpad · test" in out and "knob→fresh" in out and "brighter" in out
    assert "3 hits" in out or "hits 3" in out, out + err
    assert "steerpad live: stopped" in out


def test_live_refuses_a_bad_preset_and_device(jack_server, chain, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('controller = "generic"\n[[knobs]]\ndirection = "boomy"\n')
    rc = main(["live", "--bundle", str(chain / "bundle"), "--preset", str(bad), "--duration", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "bad.toml" in err and "boomy" in err
    preset = write_preset(tmp_path, chain / "kits" / "synth_kit_6")
    rc = main(["live", "--bundle", str(chain / "bundle"), "--preset", str(preset), "--audio-device",
               "no such card", "--duration", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "no such card" in err and "steerpad devices" in err
