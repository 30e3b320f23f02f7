"""The one exception type for bad input: files, fields, settings a user can fix."""

__all__ = ["InputError"]


class InputError(ValueError):
    """A problem with the user's input. The message names the file (or option) and the problem.

    The command line prints it as one line and exits with status 2; Python callers can catch it
    (it is a ``ValueError``).
    """
