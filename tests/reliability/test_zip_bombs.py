"""Zip bombs and crafted central directories are refused quickly, with the process's memory bounded.

The ZIPs are written byte by byte here (``raw_zip``), so a member can declare any
size, CRC or offset, entries can overlap and the end record can claim anything.
Each is uploaded to ``POST /admin/restore-backup`` as an admin script does. The
peak resident memory of the process while one request runs is read from VmHWM,
reset before each case through /proc/self/clear_refs; the request runs in this
process (the restore job in a thread of it), so that peak is the app's. Each
refusal must be a 413 or 422 with a JSON error, change nothing, take under 2 s
(recorded; asserted with a generous bound, the machine being shared), and grow
the peak memory by less than ``MEMORY_BOUND`` where the bombs would take GBs.

tests/backup/archive/test_directory.py and tests/backup/restore/test_rejections.py
check the messages of single cases (3,000 and 20,000 entries, a 40 MB bomb);
this file measures the whole collection, at sizes that would hurt.
"""
from __future__ import annotations

import io
import re
import struct
import time
import zipfile
import zlib

import pytest

from app.backup.archive import format
from app.backup.provenance import schema_revision
from support.archives import build_archive, snapshot
from support.backup import archive_members
from support.reliability import FULL, record
from support.restoring import backup_names, restore_upload

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

GIB = 1 << 30
MEMORY_BOUND = 96 * 1024 * 1024
# Under `make reliability` each case must take under 2 s; in `make test` (a shared, busy machine) the
# bound only catches a runaway, and the real figures are recorded by the full run.
TIME_BOUND = 2.0 if FULL else 10.0

_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_END = struct.Struct("<4s4H2LH")
_END64 = struct.Struct("<4sQ2H2L4Q")
_LOCATOR = struct.Struct("<4sLQL")


def deflated_fill(size: int, head: bytes = b"", tail: bytes = b"", fill: bytes = b" ") -> bytes:
    """A raw deflate stream of ``head``, ``size`` bytes of ``fill`` (a whole number of MiB) and ``tail``,
    built from one repeated block so that gigabytes cost milliseconds: each MiB ends with a full flush,
    which resets the compressor, so every block after the first compresses alike."""
    mib = 1 << 20
    chunk = fill * (mib // len(fill))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(head + chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first + block * (size // mib - 1) + compressor.compress(tail) + compressor.flush()


def raw_zip(entries: list[dict], *, comment: bytes = b"", end_changes: dict | None = None,
            zip64_end: dict | None = None) -> bytes:
    """A ZIP written field by field. An entry: ``name``, ``data`` (as stored), and optionally ``method``
    (deflate), ``crc``, ``csize``, ``usize`` (declared; default true for data), ``at`` (point the directory
    entry at an earlier entry's local header instead of writing one), ``local_name``.
    ``end_changes`` overrides end-record fields (entries, size, offset, comment_length); ``zip64_end``
    adds a ZIP64 record and locator with these entries/size/offset."""
    out, central, offsets = bytearray(), bytearray(), []
    for entry in entries:
        name = entry["name"].encode()
        data = entry.get("data", b"")
        method = entry.get("method", zipfile.ZIP_DEFLATED)
        crc = entry.get("crc", zlib.crc32(data) if method == zipfile.ZIP_STORED else 0)
        csize, usize = entry.get("csize", len(data)), entry.get("usize", len(data))
        if "at" in entry:
            offset = offsets[entry["at"]]
        else:
            offset = len(out)
            local_name = entry.get("local_name", entry["name"]).encode()
            out += _LOCAL.pack(b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, csize, usize, len(local_name), 0)
            out += local_name + data
        offsets.append(offset)
        central += _CENTRAL.pack(b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc, csize, usize, len(name), 0, 0,
                                 0, 0, 0o600 << 16, offset) + name
    directory_at = len(out)
    out += central
    end = {"entries": len(entries), "size": len(central), "offset": directory_at, "comment_length": len(comment)}
    end.update(end_changes or {})
    if zip64_end is not None:
        record_at = len(out)
        out += _END64.pack(b"PK\x06\x06", 44, 45, 45, 0, 0, zip64_end["entries"], zip64_end["entries"],
                           zip64_end["size"], zip64_end["offset"])
        out += _LOCATOR.pack(b"PK\x06\x07", 0, record_at, 1)
    out += _END.pack(b"PK\x05\x06", 0, 0, end["entries"], end["entries"], end["size"], end["offset"],
                     end["comment_length"]) + comment
    return bytes(out)


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def bombs(members: dict[str, bytes]) -> list[tuple[str, bytes]]:
    """(what, upload): each a bomb or crafted directory; ``members`` are a good archive's (signed metadata)."""
    def small(name):
        content = members[name]
        return {"name": name, "data": deflated(content), "usize": len(content), "crc": zlib.crc32(content)}

    head = [small(format.METADATA_MEMBER), small(format.APP_INFO_MEMBER)]
    # Valid JSON all the way (a table of 3 GiB of blanks): only the limits can stop it, not the parser.
    three_gib = deflated_fill(3 * GIB, b'{"users":[', b"]}")
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.bin", bytes(64 << 20))
    nested = inner.getvalue()
    for _ in range(3):
        outer = io.BytesIO()
        with zipfile.ZipFile(outer, "w", zipfile.ZIP_DEFLATED) as zf:
            for i in range(10):
                zf.writestr(f"layer{i}.zip", nested)
        nested = outer.getvalue()
    data = {"name": format.DATA_MEMBER}
    return [
        ("a member declaring 3 GiB at 1000:1", raw_zip(head + [{**data, "data": three_gib, "usize": 3 * GIB}])),
        ("a 3 GiB member whose header declares 2:1",
         raw_zip(head + [{**data, "data": three_gib, "usize": 2 * len(three_gib)}])),
        ("a 3 GiB member whose header declares 0 bytes", raw_zip(head + [{**data, "data": three_gib, "usize": 0}])),
        ("a stored member declaring 3 GiB it does not hold",
         raw_zip(head + [{**data, "data": b"{}", "method": zipfile.ZIP_STORED, "usize": 3 * GIB, "csize": 3 * GIB}])),
        ("the metadata member inflating to 1 GiB",
         raw_zip([{"name": format.METADATA_MEMBER, "data": deflated_fill(GIB, b"{", b"}"),
                  "usize": 1000},
                  small(format.APP_INFO_MEMBER), small(format.DATA_MEMBER)])),
        ("nested zips (10 × 10 × 10 × 64 MiB inside the data member)",
         raw_zip(head + [{**data, "data": deflated(nested), "usize": len(nested), "crc": zlib.crc32(nested)}])),
        ("65,535 tiny members", raw_zip([{"name": f"{i}", "data": b"x", "method": zipfile.ZIP_STORED}
                                         for i in range(65_535)])),
        ("the three members and 5,000 more", raw_zip(head + [small(format.DATA_MEMBER)] + [
            {"name": f"extra/{i}", "data": b"", "method": zipfile.ZIP_STORED} for i in range(5000)])),
        ("overlapping entries: three names over one local header",
         raw_zip([{**data, "data": three_gib, "usize": 2 * len(three_gib)},
                  {"name": format.METADATA_MEMBER, "at": 0, "csize": len(three_gib), "usize": 2 * len(three_gib)},
                  {"name": format.APP_INFO_MEMBER, "at": 0, "csize": len(three_gib), "usize": 2 * len(three_gib)}])),
        ("overlapping entries: the data member inside the metadata's bytes",
         raw_zip(head + [{**data, "at": 0, "csize": len(head[0]["data"]), "usize": 0xFFFFFFF0}])),
        ("a local name that differs from the directory's",
         raw_zip(head + [{**data, "data": three_gib, "usize": 2 * len(three_gib), "local_name": "x.json"}])),
        ("an end record claiming 65,535 entries in 4 GiB",
         raw_zip(head + [small(format.DATA_MEMBER)], end_changes={"entries": 0xFFFF, "size": 0xFFFFFFFF})),
        ("a ZIP64 record claiming 2^62 entries and an exabyte of directory",
         raw_zip(head + [small(format.DATA_MEMBER)], end_changes={"entries": 0xFFFF, "size": 0xFFFFFFFF,
                                                                  "offset": 0xFFFFFFFF},
                 zip64_end={"entries": 1 << 62, "size": 1 << 60, "offset": 0})),
        ("a directory offset past the end of the file",
         raw_zip(head + [small(format.DATA_MEMBER)], end_changes={"offset": 0x7FFFFFFF})),
        ("a comment hiding a fake end record that claims 65,535 entries",
         raw_zip(head + [small(format.DATA_MEMBER)],
                 comment=_END.pack(b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFF0, 0, 0))),
        ("a comment length past the end of the file",
         raw_zip(head + [small(format.DATA_MEMBER)], end_changes={"comment_length": 0xFFFF})),
        ("64 KiB of end-record signatures in the comment",
         raw_zip(head + [small(format.DATA_MEMBER)], comment=(b"PK\x05\x06" * 16383)[:0xFFFF])),
    ]


def peak_memory_growth(run) -> tuple[object, int]:
    """``run()``'s result and how far the process's peak resident memory rose above its resident memory
    at the start (bytes), read from VmHWM after resetting it through /proc/self/clear_refs."""
    def status(field):
        with open("/proc/self/status") as info:
            return int(re.search(rf"^{field}:\s+(\d+) kB", info.read(), re.M).group(1)) * 1024

    with open("/proc/self/clear_refs", "w") as reset:
        reset.write("5")
    start = status("VmRSS")
    result = run()
    return result, status("VmHWM") - start


def test_zip_bombs_and_crafted_directories_are_refused_fast_in_bounded_memory(app, admin_user, api_headers,
                                                                               tmp_path):
    with app.app_context():
        key, revision = format.signing_key(app.config), schema_revision(app)
    members = archive_members(build_archive(tmp_path / "good.zip", key=key, schema_revision=revision))
    client = app.test_client()
    before = snapshot(app), backup_names(app)
    failures, figures, slowest, most = [], [], 0.0, 0
    for what, upload in bombs(members):
        started = time.monotonic()
        response, growth = peak_memory_growth(lambda: restore_upload(client, api_headers, upload, trust_unsigned="1"))
        seconds = time.monotonic() - started
        slowest, most = max(slowest, seconds), max(most, growth)
        figures.append(f"{what}: {response.status_code} in {seconds:.2f} s, +{max(growth, 0) / 2**20:.0f} MiB")
        body = response.get_json(silent=True) or {}
        if response.status_code not in (413, 422) or not body.get("error"):
            failures.append(f"{what}: {response.status_code} {response.get_data(as_text=True)[:200]!r}")
        if growth > MEMORY_BOUND:
            failures.append(f"{what}: the peak memory grew by {growth / 2**20:.0f} MiB")
        if seconds > TIME_BOUND:
            failures.append(f"{what}: took {seconds:.1f} s, over {TIME_BOUND:.0f} s")
    if (snapshot(app), backup_names(app)) != before:
        failures.append("the database or the backup list changed")
    record("zip-bombs", cases=len(figures), losses=len(failures),
           measured=f"{len(figures) - len(failures)} of {len(figures)} bombs and crafted directories refused "
                    f"(413/422) within {TIME_BOUND:.0f} s and {MEMORY_BOUND >> 20} MiB; slowest {slowest:.2f} s, "
                    f"peak memory growth at most {most / 2**20:.0f} MiB; " + "; ".join(figures))
    print("\n".join(figures))
    assert not failures, "\n".join(failures + figures)
