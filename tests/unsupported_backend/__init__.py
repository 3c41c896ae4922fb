"""A database backend that kernel_status does not support, for the E010 tests: Django's dummy
backend under another vendor's name, as Oracle's or a third-party backend would be."""
