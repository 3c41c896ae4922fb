from enum import StrEnum


class KernelHeartbeatEventOpEnum(StrEnum):
    KERNEL_HEARTBEAT = "kernel-heartbeat"

    def __str__(self) -> str:
        return str(self.value)
