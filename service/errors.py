"""Field-level input errors, shared by validation in ingestion and the API's problem details."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class FieldError(BaseModel):
    """One invalid input field: where it is (a JSON pointer-like path) and what is wrong."""

    field: str
    message: str
    code: str | None = None


def field_errors_from_pydantic(errors: Any, *, drop_prefix: int = 0) -> list[FieldError]:
    """Field errors from a pydantic/FastAPI error list, with readable locations."""
    result = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ())][drop_prefix:]
        message = str(error.get("msg", "invalid value"))
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        result.append(
            FieldError(field=".".join(location) or "(root)", message=message, code=error.get("type"))
        )
    return result
