"""CSV and XLSX downloads of a page's table: the same rows the page shows, in the same scope."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal

from fastapi.responses import Response

from service.web.auth import PageError

ExportFormat = Literal["csv", "xlsx"]
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
# A cell a spreadsheet would run as a formula is prefixed so it stays text (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def export_format(value: str) -> ExportFormat:
    """Validate the ``format`` of an export link."""
    if value == "csv":
        return "csv"
    if value == "xlsx":
        return "xlsx"
    raise PageError(422, f"Exports are csv or xlsx, not {value!r}.")


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "; ".join(str(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def table_rows(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[list[Any]]:
    """The header and the rows, each cell made safe for a spreadsheet."""
    return [list(columns), *([_cell(v) for v in row] for row in rows)]


def export_response(
    *, fmt: ExportFormat, name: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> Response:
    """A download of the table as CSV (UTF-8 with BOM, so Excel reads Arabic) or XLSX."""
    table = table_rows(columns, rows)
    if fmt == "csv":
        buffer = io.StringIO()
        buffer.write("\ufeff")
        csv.writer(buffer).writerows(table)
        body = buffer.getvalue().encode("utf-8")
    else:
        from openpyxl import Workbook

        workbook = Workbook(write_only=True)
        sheet = workbook.create_sheet(title=name[:31])
        for row in table:
            sheet.append(row)
        out = io.BytesIO()
        workbook.save(out)
        body = out.getvalue()
    headers = {"Content-Disposition": f'attachment; filename="cxmine-{name}.{fmt}"'}
    return Response(content=body, media_type=MEDIA_TYPES[fmt], headers=headers)
