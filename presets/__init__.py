"""steerpad.presets: the shipped presets (default.toml, example.toml, default_kit.toml), the
controller maps (controllers/<id>.toml) and the demo performance (demo.mid), as package data;
found through steerpad.realtime.shipped."""
