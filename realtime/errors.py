"""The exceptions a user sees, each printed by the CLI as one line (`steerpad: error: ...`)."""


class SteerpadError(Exception):
    """Bad input (a file, a bundle, a MIDI message, an option). The message names the thing
    and says what to do; the CLI prints it as `steerpad: error: <message>` and exits 2."""


class RuntimeFailure(SteerpadError):
    """A runtime failure, not the user's input: renders that failed, an audio server that went
    away, a full disk. The CLI prints it as one line and exits 1."""
