"""The one exception type for bad user input, and the hint that names the closest allowed value."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input from the user (a suite, a flag, missing data).

    The CLI prints the message as one line on stderr and exits with code 2;
    it never shows a traceback for these.
    """


def did_you_mean(name: str, allowed: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the allowed value closest to ``name``, or an empty string."""
    close = difflib.get_close_matches(str(name), list(allowed), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
