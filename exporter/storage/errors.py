"""Errors the storage layer raises to the rest of the program."""


class StorageUnavailable(Exception):
    """The database cannot be reached or cannot commit right now; the caller should retry."""

    def __init__(self, message: str = "storage is unavailable", retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after
