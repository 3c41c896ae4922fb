"""Optional parts of kernel_status, each an app of its own with its own extra, as
``rest_framework.authtoken`` is DRF's: ``contrib.marimo`` (``kernel-status[marimo]``) follows
real marimo servers into the mirror and culls their idle sessions. The core never imports them;
they use its public modules and the few internals that docs/development.md names."""
