"""One exception type for bad input: its message is a single line naming the problem and the fix."""


class LangSegError(Exception):
    """Raised for user errors (bad paths, options, inputs, checkpoints).

    The command-line tools print ``error: <message>`` and exit with status 2
    instead of a traceback.
    """

    WORKER = "Caught LangSegError in DataLoader worker"

    def __init__(self, message="", *args):
        # torch's DataLoader raises a worker's exception again in the main process as the same type, with the
        # worker's traceback as its message: keep the one line the worker raised
        if isinstance(message, str) and message.startswith(self.WORKER) and "\nOriginal Traceback" in message:
            message = message.rstrip().splitlines()[-1].split("LangSegError: ", 1)[-1]
        super().__init__(message, *args)


def cli_errors(main):
    """Decorate a CLI ``main``: a LangSegError prints ``error: <message>`` and returns status 2."""
    import functools
    import sys

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except LangSegError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return wrapper
