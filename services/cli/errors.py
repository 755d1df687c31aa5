"""What the command line tells a user instead of a traceback."""


class CliError(Exception):
    """A one-line explanation; the command exits non-zero with it."""
