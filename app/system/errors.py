from typing import Any

from app.core.errors import STORAGE_RETRY_AFTER_SECONDS, ServiceUnavailable


class StorageLow(ServiceUnavailable):
    """Readiness: a store's filesystem has less free space than SIGNVAULT_MIN_FREE_BYTES."""

    code = "storage_low"
    title = "Storage low"

    def __init__(self, detail: str, *, free_bytes: dict[str, int]) -> None:
        extra: dict[str, Any] = {
            "checks": {"storage": "low"},
            "storage_free_bytes": free_bytes,
        }
        super().__init__(
            detail,
            headers={"Retry-After": str(STORAGE_RETRY_AFTER_SECONDS)},
            extra=extra,
        )
