from enum import StrEnum


class KernelStoppedEventOpEnum(StrEnum):
    KERNEL_STOPPED = "kernel-stopped"

    def __str__(self) -> str:
        return str(self.value)
