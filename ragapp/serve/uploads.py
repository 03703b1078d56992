"""A multipart upload streamed from the request into an UploadBatch: each file goes to disk as it
arrives (memory stays flat whatever its size), every name is checked when its part begins, and the
batch is saved whole or not at all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from ragapp.knowledge import UploadBatch, UploadRefused

FIELD = b"files"  # the form field that carries the files (as `curl -F files=@x.pdf`)
_MAX_FIELD_BYTES = 64 * 1024  # other form fields are read and dropped, up to this much in all


def _decoded(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class _Receiver:
    """python-multipart callbacks that feed the batch."""

    def __init__(self, batch: UploadBatch) -> None:
        self.batch = batch
        self.headers: dict[bytes, bytes] = {}
        self.field, self.value = b"", b""
        self.in_file = False
        self.other_bytes = 0

    def callbacks(self) -> dict:
        return {"on_part_begin": self.part_begin, "on_header_field": self.header_field,
                "on_header_value": self.header_value, "on_header_end": self.header_end,
                "on_headers_finished": self.headers_finished, "on_part_data": self.part_data,
                "on_part_end": self.part_end}

    def part_begin(self) -> None:
        self.headers, self.in_file = {}, False

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def header_end(self) -> None:
        self.headers[self.field.lower()] = self.value
        self.field, self.value = b"", b""

    def headers_finished(self) -> None:
        _, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        filename = params.get(b"filename")
        if params.get(b"name") == FIELD and filename is not None:
            self.batch.begin(_decoded(filename))
            self.in_file = True

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_file:
            self.batch.write(data[start:end])
            return
        self.other_bytes += end - start
        if self.other_bytes > _MAX_FIELD_BYTES:
            raise UploadRefused(f"form fields other than {FIELD.decode()!r} over {_MAX_FIELD_BYTES} bytes", 413)

    def part_end(self) -> None:
        self.in_file = False


async def receive_upload(content_type: str, body: AsyncIterator[bytes], batch: UploadBatch) -> list[Path]:
    """Stream a multipart/form-data body into `batch` and commit it; UploadRefused when refused (then
    nothing of the batch is kept)."""
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadRefused("send the files as multipart/form-data in the field 'files'", 415)
    receiver = _Receiver(batch)
    parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
    with batch:
        try:
            async for chunk in body:
                if chunk:
                    await run_in_threadpool(parser.write, chunk)
            parser.finalize()
        except MultipartParseError as exc:
            raise UploadRefused(f"malformed multipart body ({exc})") from exc
        return await run_in_threadpool(batch.commit)
