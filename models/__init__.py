"""steerpad.models: the shipped default bundle (default/, with its MODEL_CARD.md and the licence
notes of the samples its kit is derived from), as package data; found through
steerpad.realtime.shipped."""
