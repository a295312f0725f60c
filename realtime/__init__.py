"""steerpad.realtime: plays a bundle from MIDI. numpy + onnxruntime only; never torch or offline."""
