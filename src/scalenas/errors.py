"""One exception type for problems a user can fix (bad input, bad config, bad file).

The CLI prints its message without a traceback and exits with code 2.
"""


class ScaleNASError(Exception):
    """A user-facing error whose message names the file, key, module or field at fault."""


def user_message(e: BaseException) -> str:
    """The one-line message of ``e``, also when a worker process raised it.

    PyTorch's DataLoader re-raises a worker's exception as the same type with the whole worker
    traceback as its message ("Caught ScaleNASError in DataLoader worker process 0.\\nOriginal
    Traceback ..."); the original message follows the exception's name on the traceback's last
    line that starts with it.
    """
    text = str(e)
    if not text.startswith("Caught ") or "\nOriginal Traceback" not in text:
        return text
    names = (f"{type(e).__module__}.{type(e).__qualname__}: ", f"{type(e).__name__}: ")
    for line in reversed(text.splitlines()):
        for name in names:
            if line.startswith(name):
                return line[len(name):].strip()
    return text
