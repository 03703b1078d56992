"""Typed values passed between pipeline stages."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


# What a page is called in each format that has pages ("page" for the rest).
_PAGE_NAMES = {".pptx": "slide", ".xlsx": "sheet", ".epub": "chapter", ".eml": "attachment", ".tif": "frame",
               ".tiff": "frame"}


def place(source: str, page: int | None, label: str | None = None, ocr: bool = False) -> str:
    """A position in a document as people say it: "page 3", "slide 2", "sheet Sales", "page 4, OCR"."""
    name = _PAGE_NAMES.get(source[source.rfind("."):].lower(), "page") if "." in source else "page"
    if label:
        where = f"{name} {label}" if name in ("sheet", "attachment") else f"{name} {page} ({label})"
    else:
        where = f"{name} {page}" if page is not None else ""
    return f"{where}, OCR" if ocr and where else ("OCR" if ocr else where)


@dataclass(frozen=True)
class Box:
    """A rectangle on a page in page-relative units: 0..10000 from the top-left corner of the page as
    shown (rotation applied), across and down."""

    x0: int
    y0: int
    x1: int
    y1: int

    def to_dict(self) -> dict:
        """JSON-ready form, as fractions of the page's width and height."""
        return {"x0": self.x0 / 10_000, "y0": self.y0 / 10_000, "x1": self.x1 / 10_000, "y1": self.y1 / 10_000}


@dataclass(frozen=True)
class TableRows:
    """Rows of one table as cells, as a loader read them (a long table comes in several parts)."""

    # Which table of its page: "" for a sheet or CSV file, "table 2" for the second table of a page.
    key: str
    rows: tuple[tuple[str, ...], ...]
    # The number of rows[0] in its table, counting from 1 (the header row, if any, is row 1).
    first: int = 1


@dataclass(frozen=True)
class Page:
    """Text of one page (PDF page, slide, sheet, chapter), or of a text file or a segment of it (page is None)."""

    source: str
    page: int | None
    text: str
    # Characters before this text in its file (a segment of a streamed text file); chunk positions add it.
    offset: int = 0
    # The page's own name where it has one: a sheet's, a chapter's, an attachment's.
    label: str | None = None
    # True when the text was read by OCR from an image of the page.
    ocr: bool = False
    # The page's tables as cells, when its loader read any (kept as SQL tables by ragapp.tables).
    tables: tuple[TableRows, ...] = ()
    # Where each character of `text` sits on the page (ragapp.load.geometry's encoding), when known.
    geometry: bytes | None = None


@dataclass(frozen=True)
class Chunk:
    """A piece of a document with its exact position: `text == page_text[start:end]`."""

    id: str
    text: str
    source: str
    page: int | None
    start: int
    end: int
    # Sentence boundaries inside `text`, as (start, end) offsets; used by the reranker and citations.
    sentences: tuple[tuple[int, int], ...] = ()
    # The page's name and whether its text came from OCR (see Page).
    label: str | None = None
    ocr: bool = False

    @property
    def place(self) -> str:
        """Where in its document the chunk sits, as people say it ("page 3", "slide 2", "sheet Sales")."""
        return place(self.source, self.page, self.label, self.ocr)


@dataclass(frozen=True)
class Query:
    """A question as every stage needs it: text, language, BM25 terms and its vector."""

    text: str
    language: str
    terms: tuple[str, ...]
    vector: np.ndarray


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with the score of every stage that saw it; `row` is its position in the index."""

    chunk: Chunk
    score: float
    row: int = -1
    bm25_score: float | None = None
    bm25_rank: int | None = None
    dense_score: float | None = None
    dense_rank: int | None = None
    fused_score: float | None = None
    rerank_score: float | None = None
    # Best-supporting sentence, as offsets into chunk.text (set by the reranker).
    support: tuple[int, int] | None = None
    # The same text indexed elsewhere (a copied file): embedded once, searched once, cited in every place.
    also: tuple[Chunk, ...] = ()

    @property
    def support_text(self) -> str:
        """The supporting sentence, or the start of the chunk when no reranker chose one."""
        if self.support is None:
            return self.chunk.text[:200]
        return self.chunk.text[self.support[0] : self.support[1]]

    def to_dict(self) -> dict:
        """JSON-ready form used by `ragapp search --json`: where, the text, and every stage's score."""
        c = self.chunk
        return {"source": c.source, "page": c.page, "page_label": c.label, "place": c.place, "ocr": c.ocr, "start": c.start,
                "end": c.end, "chunk_id": c.id, "text": c.text,
                "support": self.support_text, "score": self.score, "bm25_rank": self.bm25_rank,
                "bm25_score": self.bm25_score, "dense_rank": self.dense_rank, "dense_score": self.dense_score,
                "fused_score": self.fused_score, "rerank_score": self.rerank_score}


@dataclass(frozen=True)
class Citation:
    """Where part of an answer came from."""

    source: str
    page: int | None
    start: int
    end: int
    score: float
    chunk_id: str
    # The supporting sentence (at most 300 characters; the whole of it is chunk_text[span[0]:span[1]]).
    quote: str = ""
    # The whole cited chunk and where the quote sits in it, so a UI can show the quote in context.
    chunk_text: str = ""
    span: tuple[int, int] = (0, 0)
    label: str | None = None
    ocr: bool = False
    # Where the quote sits on its page, one box per line of text (ragapp.show); () when not known.
    boxes: tuple[Box, ...] = ()

    @property
    def place(self) -> str:
        """Where in its document the quote sits ("page 3", "slide 2, OCR"); "" for a plain text file."""
        return place(self.source, self.page, self.label, self.ocr)

    def to_dict(self) -> dict:
        """JSON-ready form used by `ragapp ask --json`."""
        return {
            "source": self.source,
            "page": self.page,
            "page_label": self.label,
            "place": self.place,
            "ocr": self.ocr,
            "start": self.start,
            "end": self.end,
            "quote": self.quote,
            "score": round(self.score, 6),
            "boxes": [b.to_dict() for b in self.boxes],
        }


@dataclass(frozen=True)
class TableQuery:
    """How a table answered: the query as run, the table (file, place, its SQL name), the rows that fed
    the result (numbered as in the file) and the result itself."""

    sql: str
    source: str
    page: int | None
    label: str | None
    place: str
    table: str
    rows: tuple[int, ...]
    columns: tuple[str, ...]
    result: tuple[tuple, ...]
    # The first cited rows as "row N: column: value; ..." lines (the citation's quote).
    quote: str = ""
    # True when the query returned more rows than `[tables] max_rows` (the result holds the first ones).
    truncated: bool = False

    def citation(self) -> Citation:
        """The table's citation: the file, its page or sheet, the rows that fed the result."""
        return Citation(source=self.source, page=self.page, start=0, end=0, score=1.0, chunk_id="", quote=self.quote,
                        chunk_text=self.quote, span=(0, len(self.quote)), label=self.label)

    def to_dict(self) -> dict:
        """JSON-ready form (in `ragapp ask --json` and the HTTP API's replies)."""
        return {"sql": self.sql, "source": self.source, "page": self.page, "place": self.place, "table": self.table,
                "rows": list(self.rows), "columns": list(self.columns), "result": [list(r) for r in self.result],
                "truncated": self.truncated}


@dataclass(frozen=True)
class Answer:
    """The result of `RAG.ask`: an answer with citations, or the fallback with answered=False."""

    text: str
    answered: bool
    language: str
    citations: list[Citation] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    # The standalone question that was searched (differs from the question for a follow-up).
    query: str = ""
    # Which backend and model answered ("" when no model was asked: a refusal before the model).
    model: str = ""
    # Set when the answer came from a query over a table (ragapp.tables) rather than from passages.
    table: TableQuery | None = None
    # Tokens the chat model read and wrote for this answer (0, 0 when it was not asked).
    usage: dict[str, int] = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})
    # The estimated probability that the answer is right and supported (ragapp.query.confidence); for a
    # refusal, that of the draft it withheld (0.0 when the model wrote none).
    confidence: float = 0.0
    # What the confidence was computed from, and the model's answer when the confidence gate withheld it.
    signals: dict[str, float | None] = field(default_factory=dict)
    draft: str = ""

    def to_dict(self) -> dict:
        """JSON-ready form used by `ragapp ask --json`."""
        return {
            "answer": self.text,
            "answered": self.answered,
            "language": self.language,
            "reason": self.reason,
            "query": self.query,
            "model": self.model,
            "usage": self.usage,
            "confidence": round(self.confidence, 3),
            "signals": self.signals,
            "draft": self.draft,
            "citations": [c.to_dict() for c in self.citations],
            "table_query": self.table.to_dict() if self.table is not None else None,
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
        }


class AnswerStream:
    """Iterate for the answer text as it is generated; `.answer` holds the final Answer afterwards."""

    def __init__(self, pieces: Iterator[str]) -> None:
        self._pieces = pieces
        self.answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        yield from self._pieces


@dataclass
class FileFailure:
    """A file that could not be ingested, and why."""

    path: str
    reason: str


@dataclass
class IngestReport:
    """Summary of one ingest run."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[FileFailure] = field(default_factory=list)
    # Files that went in with a part missing (a PDF page that could not be read), with the reason.
    warnings: list[FileFailure] = field(default_factory=list)
    # Files another ingest was writing into the same index at the same time (Milvus): left to it.
    taken: list[str] = field(default_factory=list)
    chunks: int = 0
    chunks_added: int = 0
    # Files whose content was hashed (the others' size, mtime, ctime and inode were as recorded).
    hashed: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "failed": [{"path": f.path, "reason": f.reason} for f in self.failed],
            "warnings": [{"path": f.path, "reason": f.reason} for f in self.warnings],
            "taken": self.taken,
            "chunks": self.chunks,
            "chunks_added": self.chunks_added,
            "hashed": self.hashed,
            "seconds": round(self.seconds, 2),
            "stage_seconds": {k: round(v, 2) for k, v in self.stage_seconds.items()},
        }


@dataclass(frozen=True)
class DocumentInfo:
    """One indexed document, as `RAG.documents()` lists it."""

    source: str
    chunks: int
    size: int
    sha256: str
    ingested_at: float  # epoch seconds
    ocr_pages: int = 0  # pages (or the image) read by OCR

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"source": self.source, "chunks": self.chunks, "size": self.size, "sha256": self.sha256,
                "ingested_at": self.ingested_at, "ocr_pages": self.ocr_pages}


@dataclass(frozen=True)
class IndexInfo:
    """What `RAG.info()` reports: the index, how it was built, and which models answer."""

    index: str
    generation: int
    schema_version: int
    ragapp_version: str
    chunks: int
    sentences: int
    embedding: dict
    split: dict
    bm25: dict
    generator: str
    reranker: str
    min_score: dict
    created_at: float
    updated_at: float
    documents: list[DocumentInfo] = field(default_factory=list)
    # Tables kept as SQL tables for questions over them (ragapp.tables).
    tables: int = 0
    # Whether the index keeps where its pages' text sits (ragapp.show): citations drawn on their pages.
    pages: bool = False
    # Per language: where the refusal threshold in force came from (configured, fitted by ragapp eval, global).
    min_score_origin: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form used by `ragapp info --json` (documents keyed by source)."""
        data = {k: v for k, v in self.__dict__.items() if k != "documents"}
        data["documents"] = len(self.documents)
        types: dict[str, int] = {}
        for d in self.documents:
            suffix = d.source.rsplit(".", 1)[-1].lower() if "." in d.source.rsplit("/", 1)[-1] else "(none)"
            types[suffix] = types.get(suffix, 0) + 1
        data["types"] = dict(sorted(types.items()))
        data["ocr_pages"] = sum(d.ocr_pages for d in self.documents)
        if not self.pages:
            data["pages"] = "not kept: citations are shown as text; `ragapp ingest --rebuild` adds the pages"
        data["files"] = {d.source: {k: v for k, v in d.to_dict().items() if k != "source"} for d in self.documents}
        return data
