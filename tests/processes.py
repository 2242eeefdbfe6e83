"""Starting the CLI as a child process the way a user's terminal does."""

from __future__ import annotations

import signal


def ctrl_c_as_in_a_terminal() -> None:
    """A program started in the background by a non-interactive shell inherits SIGINT ignored (CI may run us so):
    give the child the default disposition, as a terminal would, so Ctrl-C reaches it. Use as preexec_fn."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
