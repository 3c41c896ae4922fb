from enum import StrEnum


class CellOpEventOpEnum(StrEnum):
    CELL_OP = "cell-op"

    def __str__(self) -> str:
        return str(self.value)
