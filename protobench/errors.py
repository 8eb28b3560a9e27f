"""The one exception type for bad user input."""


class UserError(Exception):
    """Bad input from the user (a suite, a flag, missing data).

    The CLI prints the message as one line on stderr and exits with code 2;
    it never shows a traceback for these.
    """
