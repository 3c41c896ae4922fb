from enum import StrEnum


class KernelSessionsStreamState(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return str(self.value)
