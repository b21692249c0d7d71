"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class UserError(Exception):
    """A mistake the user can fix (bad path, bad option, missing weights).

    The message should say what is wrong, why, and how to fix it, in one line.
    """

    exit_code = 2
