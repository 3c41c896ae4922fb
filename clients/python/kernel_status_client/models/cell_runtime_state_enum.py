from enum import StrEnum


class CellRuntimeStateEnum(StrEnum):
    DISABLED_TRANSITIVELY = "disabled-transitively"
    IDLE = "idle"
    QUEUED = "queued"
    RUNNING = "running"

    def __str__(self) -> str:
        return str(self.value)
