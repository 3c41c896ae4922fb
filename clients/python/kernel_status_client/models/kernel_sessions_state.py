from enum import StrEnum


class KernelSessionsState(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return str(self.value)
