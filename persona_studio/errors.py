"""The one base class of errors a user should see as a single line (never a traceback)."""


class UserError(Exception):
    """Raised for bad input or state the user can fix; `str(exc)` is the whole message."""
