"""The exceptions users see: one line that names the problem and the fix."""


class NtlbError(Exception):
    """Bad input or an unusable model/file; `str(err)` is one line that says what to do."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a long run; the message says where it stopped and how to resume."""
