"""The snapshot's files, columns and checksums: the contract with ``absorb-sandbox serve --from-snapshot``.

docs/snapshot-format.md describes it for people; the sandbox reads it with its own code (it imports
nothing from here), so a change to this module is a change of the documented format and of
``FORMAT_VERSION``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

FORMAT = "absorb-portal-snapshot"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"  # written last: its presence means the snapshot is complete
PROGRESS = "progress.json"  # what an interrupted snapshot had finished (removed on completion)
ENROLLMENTS_DIR = "enrollments"  # one <courseId>.parquet per course

# (API field, kind) per table. Dates stay the text the portal answered (no reformatting: a clone
# then serves the very values the portal did); kinds: string, int, float, bool.
DEPARTMENT_FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "string"),
    ("name", "string"),
    ("externalId", "string"),
    ("parentId", "string"),
)
USER_FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "string"),
    ("username", "string"),
    ("departmentId", "string"),
    ("firstName", "string"),
    ("lastName", "string"),
    ("emailAddress", "string"),
    ("externalId", "string"),
    ("employeeNumber", "string"),
    ("jobTitle", "string"),
    ("location", "string"),
    ("dateHired", "string"),
    ("dateTerminated", "string"),
    ("supervisorId", "string"),
    ("activeStatus", "int"),
    ("dateAdded", "string"),
    ("dateEdited", "string"),
)
COURSE_FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "string"),
    ("name", "string"),
    ("courseType", "string"),
    ("activeStatus", "int"),
    ("description", "string"),
    ("externalId", "string"),
    ("dateAdded", "string"),
    ("dateEdited", "string"),
)
ENROLLMENT_FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "string"),
    ("courseId", "string"),
    ("courseName", "string"),
    ("userId", "string"),
    ("fullName", "string"),
    ("jobTitle", "string"),
    ("status", "int"),
    ("progress", "float"),
    ("score", "float"),
    ("isActive", "bool"),
    ("dateAdded", "string"),
    ("dateStarted", "string"),
    ("dateCompleted", "string"),
    ("dateDue", "string"),
    ("dateExpires", "string"),
    ("dateEdited", "string"),
    ("accessDate", "string"),
    ("timeSpentTicks", "int"),
    ("credits", "float"),
    ("courseVersionId", "string"),
    ("enrollmentKeyId", "string"),
    ("certificateId", "string"),
    ("acceptedTermsAndConditions", "bool"),
    ("courseCollectionId", "string"),
)
# The API has no catalogue of sessions, chapters and lessons: they are seen through a few
# enrollments per course (see snapshot_read.read_catalogue), so these may be incomplete.
SESSION_FIELDS: tuple[tuple[str, str], ...] = (("id", "string"), ("courseId", "string"), ("name", "string"))
CHAPTER_FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "string"),
    ("courseId", "string"),
    ("name", "string"),
    ("position", "int"),
)
LESSON_FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "string"),
    ("courseId", "string"),
    ("chapterId", "string"),
    ("name", "string"),
    ("type", "string"),
    ("position", "int"),
)
TABLE_FILES: dict[str, tuple[tuple[str, str], ...]] = {
    "departments.parquet": DEPARTMENT_FIELDS,
    "users.parquet": USER_FIELDS,
    "courses.parquet": COURSE_FIELDS,
    "sessions.parquet": SESSION_FIELDS,
    "chapters.parquet": CHAPTER_FIELDS,
    "lessons.parquet": LESSON_FIELDS,
}


def arrow_schema(fields: tuple[tuple[str, str], ...]):
    import pyarrow as pa

    types = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    return pa.schema([(name, types[kind]) for name, kind in fields])


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def overall_checksum(files: dict[str, str]) -> str:
    """SHA-256 over ``"<relative path> <sha256>\\n"`` lines sorted by path: one value names the
    whole snapshot (the sandbox recomputes it the same way)."""
    lines = "".join(f"{name} {files[name]}\n" for name in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def data_files(folder: Path) -> list[Path]:
    """Every Parquet file of a snapshot, in a stable order."""
    tables = [folder / name for name in TABLE_FILES if (folder / name).exists()]
    return tables + sorted((folder / ENROLLMENTS_DIR).glob("*.parquet"))


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Written whole or not at all (tmp + rename), so an interruption never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
