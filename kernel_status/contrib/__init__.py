"""Optional parts of kernel_status, each an app of its own with its own extra."""
