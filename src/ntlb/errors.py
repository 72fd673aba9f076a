"""The one exception type users see for bad input: its message is a single line naming the problem and the fix."""


class NtlbError(Exception):
    """Bad input or an unusable model/file; `str(err)` is one line that says what to do."""
