"""One exception type for bad input: its message is a single line naming the problem and the fix."""


class LangSegError(Exception):
    """Raised for user errors (bad paths, options, inputs, checkpoints).

    The command-line tools print ``error: <message>`` and exit with status 2
    instead of a traceback.
    """
