"""Reading HTML form fields into typed values, collecting a message per field instead of raising."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any
from urllib.parse import quote

from litestar.enums import RequestEncodingType
from litestar.params import Body, URLEncodedBody

from trialcoord.kernel.web.schemas import EARLIEST_YEAR, LATEST_YEAR

Form = URLEncodedBody[dict[str, str]]
MAX_LENGTH = 2000  # as the API's free-text fields


class FormReader:
    def __init__(self, data: dict[str, str]):
        self.data = {key: value.strip() for key, value in data.items() if isinstance(value, str)}
        self.errors: dict[str, str] = {}

    def text(self, name: str, label: str, required: bool = True, choice: bool = False) -> str | None:
        value = self.data.get(name) or None
        if value is None and required:
            self.errors[name] = f"Choose the {label}." if choice else f"Enter the {label}."
        elif value is not None and any(ord(c) < 32 for c in value):
            self.errors[name] = f"The {label} contains characters that are not allowed."
        elif value is not None and len(value) > MAX_LENGTH:
            self.errors[name] = f"The {label} is longer than {MAX_LENGTH} characters."
        return value

    def date(self, name: str, label: str, required: bool = True) -> date | None:
        raw = self.text(name, label, required)
        if raw is None:
            return None
        try:
            value = date.fromisoformat(raw)
        except ValueError:
            self.errors[name] = f"Enter the {label} as a date, such as 2024-03-18."
            return None
        if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
            self.errors[name] = f"The {label} must fall between {EARLIEST_YEAR} and {LATEST_YEAR}."
            return None
        return value

    def integer(self, name: str) -> int | None:
        return whole_number(self.data.get(name) or "")


def whole_number(raw: str, digits: int = 9) -> int | None:
    """`raw` as a number if it is ASCII digits only (str.isdigit also takes '²', which int() refuses)."""
    return int(raw) if re.fullmatch(f"[0-9]{{1,{digits}}}", raw) else None


def participant_url(study: str, subject_id: str, **query: str) -> str:
    url = f"/studies/{quote(study, safe='')}/participants/{quote(subject_id, safe='')}"
    return url + ("?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items()) if query else "")


# A multipart form with a file, as the pages post it.
Upload = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)]
