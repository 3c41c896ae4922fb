from enum import StrEnum


class EventEnum(StrEnum):
    ERROR = "error"
    READY = "ready"
    RECONNECT = "reconnect"
    REMOVED = "removed"
    RESET = "reset"
    STATUS = "status"

    def __str__(self) -> str:
        return str(self.value)
