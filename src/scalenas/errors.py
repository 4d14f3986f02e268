"""One exception type for problems a user can fix (bad input, bad config, bad file).

The CLI prints its message without a traceback and exits with code 2.
"""


class ScaleNASError(Exception):
    """A user-facing error whose message names the file, key, module or field at fault."""
