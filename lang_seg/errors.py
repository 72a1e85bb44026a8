"""One exception type for bad input: its message is a single line naming the problem and the fix."""


class LangSegError(Exception):
    """Raised for user errors (bad paths, options, inputs, checkpoints).

    The command-line tools print ``error: <message>`` and exit with status 2
    instead of a traceback.
    """


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
