"""An upload's multipart body, read as it streams in: the trace's bytes go straight into a
server-named file in the data directory's spool, with the size limit enforced as they arrive.

Nothing is read before the route has checked the token and the declared ``Content-Length``;
then parsing, hashing and writing happen on a worker thread, a batch of received bytes at a
time, so the event loop only moves bytes.  The client's file names are metadata: checked
(UTF-8, no control characters, at most 255 bytes) and kept for messages, never used as paths.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, BinaryIO

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from tracehouse.core.errors import BadInput, InvalidField, TooLarge

if TYPE_CHECKING:  # python-multipart declares its callback table for type checkers only
    from python_multipart.multipart import MultipartCallbacks

FILE_FIELD = "file"
FIELD_BYTES = 1 << 20  # all text fields of one upload together (metadata, a manifest)
PART_OVERHEAD = 64 << 10  # boundaries and part headers, on top of the files and fields
BATCH_BYTES = 1 << 20  # received bytes handed to the parsing thread at a time
MAX_NAME_BYTES = 255  # a file name on every common file system
MAX_FILES = 64  # an ncu run is a handful of CSVs; thousands of tiny parts are not an upload
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_KNOWN_SUFFIXES = (".json.gz", ".json", ".gz", ".sqlite", ".sqlite3", ".csv")


@dataclass
class UploadBody:
    folder: Path  # this upload's spool folder, server-named
    files: list[tuple[str, Path]] = field(default_factory=list)  # (client's name, spooled path)
    fields: dict[str, list[str]] = field(default_factory=dict)
    sha256: str = ""
    size: int = 0

    def one(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else None


def body_limit(max_trace_bytes: int) -> int:
    """The most bytes an upload's body may hold: the files, the text fields, the framing."""
    return max_trace_bytes + FIELD_BYTES + PART_OVERHEAD


def check_declared_length(request: Request, limit: int) -> None:
    """413 from the ``Content-Length`` header alone, before a byte of the body is read."""
    declared = request.headers.get("content-length")
    if declared is None:
        return  # chunked: the limit is enforced while the body streams in
    if not declared.isascii() or not declared.isdigit():
        raise BadInput(f"Content-Length {declared[:40]!r} is not a number")
    if int(declared) > limit:
        raise TooLarge(f"upload of {declared} bytes exceeds the {limit}-byte limit")


def multipart_boundary(request: Request) -> bytes:
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidField("expected a multipart/form-data body with a 'file' part")
    return boundary


def client_file_name(raw: bytes | None) -> str:
    """The client's file name as metadata: its last path component, refused (422) when it
    cannot be shown or stored as it is."""
    if not raw:
        return "trace"
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidField("file name is not UTF-8") from None
    if len(raw) > MAX_NAME_BYTES:
        raise InvalidField(f"file name is {len(raw)} bytes; at most {MAX_NAME_BYTES} are allowed")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidField("file name holds a NUL or control character")
    base = PureWindowsPath(PurePosixPath(name).name).name
    return base or "trace"


def spool_name(index: int, client_name: str) -> str:
    """A server-chosen file name: the upload's index and a letters-digits-dots form of the
    client's name (so messages stay readable), never a path, never a URI's query."""
    lower = client_name.lower()
    suffix = next((s for s in _KNOWN_SUFFIXES if lower.endswith(s)), "")
    stem = _UNSAFE.sub("_", client_name[: len(client_name) - len(suffix)])[:64]
    return f"{index}-{stem}{suffix}"


class _Receiver:
    """The multipart parser's callbacks: file parts to spool files, text parts to ``fields``.
    Runs on a worker thread, one batch of the body at a time."""

    def __init__(self, body: UploadBody, max_file_bytes: int) -> None:
        self.body, self.max_file_bytes = body, max_file_bytes
        self.digest = hashlib.sha256()
        self.field_bytes = 0
        self.ended = False
        self.out: BinaryIO | None = None
        self.text: list[bytes] | None = None
        self.part_name = ""
        self.headers: dict[bytes, bytes] = {}
        self.header = [b"", b""]

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self.headers, self.header = {}, [b"", b""]

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self.header[0] += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self.header[1] += data[start:end]

    def _header_end(self) -> None:
        self.headers[self.header[0].lower()] = self.header[1]
        self.header = [b"", b""]

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.part_name = options.get(b"name", b"").decode("utf-8", "replace")
        if self.part_name != FILE_FIELD:
            self.text = []
            return
        if len(self.body.files) >= MAX_FILES:
            raise InvalidField(f"at most {MAX_FILES} files per upload")
        client = client_file_name(options.get(b"filename"))
        path = self.body.folder / spool_name(len(self.body.files), client)
        self.body.folder.mkdir(parents=True, exist_ok=True)
        self.body.files.append((client, path))
        self.out = path.open("xb")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self.out is not None:
            self.body.size += len(chunk)
            if self.body.size > self.max_file_bytes:
                raise TooLarge(f"upload exceeds the {self.max_file_bytes}-byte limit")
            self.digest.update(chunk)
            self.out.write(chunk)
        elif self.text is not None:
            self.field_bytes += len(chunk)
            if self.field_bytes > FIELD_BYTES:
                raise TooLarge(f"the upload's form fields exceed {FIELD_BYTES} bytes")
            self.text.append(chunk)

    def _part_end(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None
            client, path = self.body.files[-1]
            if path.stat().st_size == 0:
                raise BadInput(f"the uploaded file {client} is empty")
        elif self.text is not None:
            try:
                value = b"".join(self.text).decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidField(f"form field {self.part_name[:40]!r} is not UTF-8") from None
            self.body.fields.setdefault(self.part_name, []).append(value)
            self.text = None

    def _end(self) -> None:
        self.ended = True

    def feed(self, parser: MultipartParser, data: bytes) -> None:
        try:
            parser.write(data)
        except MultipartParseError as exc:
            raise BadInput(f"malformed multipart body ({exc})") from None

    def finish(self) -> None:
        if not self.ended:
            raise BadInput("the multipart body ended early (no closing boundary)")
        if not self.body.files:
            raise InvalidField("body.file: Field required")
        self.body.sha256 = self.digest.hexdigest()

    def discard(self) -> None:
        if self.out is not None:
            self.out.close()
        shutil.rmtree(self.body.folder, ignore_errors=True)


async def receive_upload(request: Request, spool_dir: Path, max_file_bytes: int) -> UploadBody:
    """Stream the body into a new spool folder; on any failure (a limit, a broken body, the
    client going away) the folder is removed before the error goes on."""
    limit = body_limit(max_file_bytes)
    check_declared_length(request, limit)
    receiver = _Receiver(UploadBody(spool_dir / uuid.uuid4().hex), max_file_bytes)
    parser = MultipartParser(multipart_boundary(request), receiver.callbacks(), max_header_count=8)
    received, batch = 0, bytearray()
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:  # a chunked body, or more than Content-Length said
                raise TooLarge(f"upload exceeds the {limit}-byte limit")
            batch += chunk
            if len(batch) >= BATCH_BYTES:
                await run_in_threadpool(receiver.feed, parser, bytes(batch))
                batch.clear()
        if batch:
            await run_in_threadpool(receiver.feed, parser, bytes(batch))
        receiver.finish()
    except BaseException:
        with anyio.CancelScope(shield=True):  # a client gone away still gets its spool removed
            await run_in_threadpool(receiver.discard)
        raise
    return receiver.body
