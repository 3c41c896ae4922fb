"""The core's management commands (Django finds them in ``commands/``): ``kernel_status_reset``
clears a session's mirror that the write API cannot undo. They sit at the top of the house and
use the public write API, :mod:`kernel_status.mirror`."""
