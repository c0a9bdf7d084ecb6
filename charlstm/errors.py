"""The one exception for problems the user can fix."""


class CharlstmError(Exception):
    """A problem the user can fix; the message names the file or value and what to do.

    The CLI turns it into one line on stderr, ``Error: <message>``, and exit status 1.
    """
