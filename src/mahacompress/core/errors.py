"""One exception type for every user-facing failure.

The CLI catches it and prints its message as a single line (exit status 2), so a user sees
"file X, row N: what is wrong" instead of a traceback. Library callers can catch it too.
"""


class MahaError(Exception):
    """A problem with the user's input (file, column, label, model folder, option value)."""
