"""Merged cells of a workbook's sheets, read from the sheets' XML in the zip.

openpyxl's read-only mode, the only one that streams, does not report merged
cells, and opening a workbook fully loads every cell into memory. The ranges
are listed in the sheet's XML (``<mergeCell ref="A1:B2"/>``) after its cells,
so each sheet's part is scanned as a stream: first for the bytes of the tag,
which is quick, and only where they occur is it parsed as XML to read the range
(the bytes alone could be a cell's text).
"""

from __future__ import annotations

import posixpath
import zipfile
from typing import BinaryIO
from xml.etree import ElementTree
from xml.parsers import expat

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELATIONSHIPS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PACKAGE_RELATIONSHIPS = "http://schemas.openxmlformats.org/package/2006/relationships"
_OFFICE_DOCUMENT = _RELATIONSHIPS + "/officeDocument"
_TAG = b"mergeCell"
_BLOCK = 1 << 20


def first_merged_range(handle: BinaryIO) -> tuple[str, str] | None:
    """The first sheet with merged cells and its first merged range, or None."""
    with zipfile.ZipFile(handle) as archive:
        for sheet, part in sheet_parts(archive):
            found = _first_range(archive, part)
            if found is not None:
                return sheet, found
    return None


def sheet_parts(archive: zipfile.ZipFile) -> list[tuple[str, str]]:
    """Each worksheet's name and the path of its XML part, in the workbook's order."""
    workbook = _target(archive, "_rels/.rels", "", _OFFICE_DOCUMENT) or "xl/workbook.xml"
    folder, name = posixpath.split(workbook)
    rels = _relationships(archive, posixpath.join(folder, "_rels", f"{name}.rels"), folder)
    root = ElementTree.fromstring(archive.read(workbook))
    parts = []
    for sheet in root.iter(f"{{{_MAIN}}}sheet"):
        part = rels.get(sheet.get(f"{{{_RELATIONSHIPS}}}id", ""))
        if part is not None and part in archive.NameToInfo:
            parts.append((sheet.get("name", ""), part))
    return parts


def _target(archive: zipfile.ZipFile, rels: str, folder: str, kind: str) -> str | None:
    root = ElementTree.fromstring(archive.read(rels))
    for relation in root.iter(f"{{{_PACKAGE_RELATIONSHIPS}}}Relationship"):
        if relation.get("Type") == kind:
            return _resolve(folder, relation.get("Target", ""))
    return None


def _relationships(archive: zipfile.ZipFile, rels: str, folder: str) -> dict[str, str]:
    root = ElementTree.fromstring(archive.read(rels))
    return {
        relation.get("Id", ""): _resolve(folder, relation.get("Target", ""))
        for relation in root.iter(f"{{{_PACKAGE_RELATIONSHIPS}}}Relationship")
    }


def _resolve(folder: str, target: str) -> str:
    """A relationship's target as a path in the zip (absolute targets start with /)."""
    if target.startswith("/"):
        return posixpath.normpath(target.lstrip("/"))
    return posixpath.normpath(posixpath.join(folder, target))


def _first_range(archive: zipfile.ZipFile, part: str) -> str | None:
    if not _mentions_tag(archive, part):
        return None
    found: list[str] = []

    def start(name: str, attributes: dict[str, str]) -> None:
        if name == f"{_MAIN} mergeCell":
            found.append(attributes.get("ref", "?"))

    # Read to the end: the ranges come after all the cells, so stopping at the first
    # would save little.
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.StartElementHandler = start
    with archive.open(part) as stream:
        parser.ParseFile(stream)
    return found[0] if found else None


def _mentions_tag(archive: zipfile.ZipFile, part: str) -> bool:
    tail = b""
    with archive.open(part) as stream:
        while block := stream.read(_BLOCK):
            if _TAG in tail + block[: len(_TAG)] or _TAG in block:
                return True
            tail = block[-len(_TAG) :]
    return False
