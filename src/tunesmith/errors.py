"""The one exception type that reaches the user as a single line and exit code 2."""


class UserError(Exception):
    """Bad input or config: the message names the file, row, column or field, what was found
    and what is expected. The CLI prints it on one line and exits with code 2."""
