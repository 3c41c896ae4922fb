from enum import StrEnum


class KernelStartedEventOpEnum(StrEnum):
    KERNEL_STARTED = "kernel-started"

    def __str__(self) -> str:
        return str(self.value)
