"""text uploads: a corpus to fine-tune a generator on. One example per line, or JSON lines
each holding a string "text" (which may hold newlines); blank lines are skipped."""

import json
from typing import BinaryIO

import numpy as np

from app.core.config import Settings
from app.datasets.csv_upload import sniff_text
from app.datasets.parsing import Parsed, UploadOptions, check_decoded_bytes, check_rows, invalid
from app.schemas.dataset import DataKind
from app.schemas.job import Task


def parse_text(source: BinaryIO, options: UploadOptions, settings: Settings) -> Parsed:
    sniff_text(source, "text file")
    lines = [line for line in source.read().decode("utf-8").splitlines() if line.strip()]
    if not lines:
        raise invalid("not a text file: no line holds any text")
    check_rows(len(lines), settings)
    json_lines = lines[0].lstrip().startswith("{")
    texts = [_json_text(line, i) for i, line in enumerate(lines)] if json_lines else lines
    longest = max(len(t) for t in texts)
    check_decoded_bytes(len(texts) * longest * 4, "the texts (padded to the longest)", settings)
    schema = {
        "kind": DataKind.text.value,
        "task": Task.generation.value,
        "rows": len(texts),
        "layout": "json-lines" if json_lines else "lines",
        "mean_length": round(sum(len(t) for t in texts) / len(texts), 2),
        "max_length": longest,
    }
    # '<U…' keeps the array free of Python objects, so it loads without pickle.
    stored = np.array(texts, dtype=f"<U{longest}")
    y = np.zeros(len(texts), dtype=np.int64)  # a corpus has no labels: the text is the target
    return Parsed(DataKind.text, Task.generation, {"texts": stored, "y": y}, schema)


def _json_text(line: str, index: int) -> str:
    where = f"line {index + 1}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise invalid(f"{where}: not JSON ({exc.msg}); write one JSON object per line") from exc
    text = record.get("text") if isinstance(record, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise invalid(f'{where}: needs a non-empty string "text"')
    return text
