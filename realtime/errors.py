"""The one exception type for bad input a user can fix. The CLI prints its message as one line."""


class SteerpadError(Exception):
    """Bad input (a file, a bundle, a MIDI message, an option). The message names the thing
    and says what to do; the CLI prints it as `steerpad: error: <message>` and exits 2."""
