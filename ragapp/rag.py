"""The application object: ingest, search and ask over one index directory."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ragapp.answer import cite, fallback, is_refusal
from ragapp.config import Config
from ragapp.conversation import Turn, standalone_question
from ragapp.embed import Embedder, build_embedder
from ragapp.errors import IndexNotFoundError
from ragapp.generate import Generator, build_generator
from ragapp.index import Index, Manifest, check_compatible, check_index_folder, read_manifest
from ragapp.prompt import build_prompt
from ragapp.rerank import (
    CALIBRATED_MIN_SCORE,
    CrossEncoderReranker,
    FusionOnly,
    HttpReranker,
    Reranker,
    SentenceReranker,
    final_score,
    prompt_passages,
)
from ragapp.retrieve import hybrid_search
from ragapp.runtime import prepare_environment, set_faiss_threads
from ragapp.text import detect_language
from ragapp.tokenize import Tokenizer
from ragapp.types import Answer, Hit, IngestReport, Query


class AnswerStream:
    """Iterate for the answer text as it is generated; `.answer` holds the final Answer afterwards."""

    def __init__(self, pieces: Iterator[str]) -> None:
        self._pieces = pieces
        self.answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        yield from self._pieces


class RAG:
    """Question answering over the documents in one index directory.

        rag = RAG("data/index")                  # opens or creates; models load on first use
        report = rag.ingest(["docs/"])           # IngestReport(added, updated, unchanged, removed, failed, chunks)
        answer = rag.ask("What is ...?")         # Answer(text, answered, language, citations)
        for piece in (stream := rag.ask_stream("...?")): print(piece, end="")
        stream.answer.citations
        hits = rag.search("query", top_k=10)     # list[Hit] with bm25/dense/fused/rerank scores

    Thread safety: one RAG may be shared by threads for search/ask/ask_stream; model calls are
    serialised by locks and a newly committed index is picked up atomically. Ingest from one
    thread or process at a time (a file lock makes other writers wait).
    """

    def __init__(self, index: str | Path = "data/index", config: Config | None = None, *, embedder: Embedder | None = None,
                 reranker: Reranker | None = None, generator: Generator | None = None) -> None:
        self.config = config or Config()
        prepare_environment(self.config.threads)
        self.path = Path(index)
        self.embedder = embedder or build_embedder(self.config)
        self.generator = generator or build_generator(self.config.generate, self.config.cache_dir, self.config.models)
        self._custom_reranker = reranker
        self._reranker: Reranker | None = reranker
        self._tokenizer: Tokenizer | None = None
        self._index: Index | None = None
        self._index_stamp: tuple[int, int] | None = None
        self._lock = threading.RLock()
        self._model_lock = threading.Lock()

    # -- index --------------------------------------------------------------------------------

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path / "manifest.json")
            return (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            return None

    def index(self) -> Index:
        """The last committed index; reopened when another process or thread commits a new generation."""
        with self._lock:
            stamp = self._stamp()
            if stamp is None:
                raise IndexNotFoundError(f"no index at {self.path} (run: ragapp ingest PATH --index {self.path})")
            if self._index is None or stamp != self._index_stamp:
                index = Index.open(self.path)
                check_compatible(index.manifest, {"model": self.embedder.name,
                                                  "backend": getattr(self.embedder, "backend", "sentence-transformers")},
                                 self.path)
                set_faiss_threads(self.config.threads)
                self._index, self._index_stamp = index, stamp
                self._tokenizer = None
            return self._index

    def manifest(self) -> Manifest:
        """The committed manifest (raises IndexNotFoundError when there is no index yet)."""
        return read_manifest(self.path)

    def tokenizer(self) -> Tokenizer:
        """BM25 tokenizer with the index's own settings (so queries match how chunks were indexed)."""
        with self._lock:
            if self._tokenizer is None:
                try:
                    settings = read_manifest(self.path).bm25
                    self._tokenizer = Tokenizer(settings.get("chinese", "bigram"), settings.get("stem", True))
                except IndexNotFoundError:
                    self._tokenizer = Tokenizer(self.config.bm25.chinese, self.config.bm25.stem)
            return self._tokenizer

    def reranker(self) -> Reranker:
        """The configured second stage."""
        with self._lock:
            if self._reranker is None:
                rc = self.config.rerank
                if rc.kind == "sentence":
                    self._reranker = SentenceReranker(self.tokenizer(), rc.candidates)
                elif rc.kind == "cross-encoder":
                    self._reranker = CrossEncoderReranker(rc.model or "", self.tokenizer(), rc.candidates, self.config.threads,
                                                         policy=self.config.models)
                elif rc.kind == "http":
                    self._reranker = HttpReranker(rc, self.tokenizer())
                else:
                    self._reranker = FusionOnly(self.tokenizer())
            return self._reranker

    def min_score(self, language: str = "en") -> float | None:
        """Refusal threshold on the best rerank score (None: never refuse before asking the model)."""
        if self.config.rerank.min_score is not None:
            return self.config.rerank.min_score
        if isinstance(self.reranker(), SentenceReranker):
            return CALIBRATED_MIN_SCORE.get(self.embedder.name, {}).get(language)
        return None

    # -- ingest -------------------------------------------------------------------------------

    def ingest(self, paths: Sequence[str | Path], rebuild: bool = False, wait: bool = True,
               progress: Callable[[str, str, int, int], None] | None = None,
               on_message: Callable[[str], None] | None = None) -> IngestReport:
        """Add, update and remove documents under `paths`; only changed files are re-embedded."""
        from ingest.pipeline import run

        check_index_folder(self.path)  # before anything reads a manifest.json that may not be ragapp's
        report = run(self.path, paths, self.embedder, self.tokenizer() if not rebuild else Tokenizer(self.config.bm25.chinese, self.config.bm25.stem),
                     self.config, rebuild=rebuild, wait=wait, progress=progress, on_message=on_message)
        with self._lock:
            self._tokenizer = None
            self._reranker = self._custom_reranker
        return report

    def remove(self, sources: Sequence[str], wait: bool = True) -> IngestReport:
        """Drop documents (by the source path the index records) from the chunk store, FAISS and BM25."""
        from ingest.pipeline import run

        if not sources:
            raise ValueError("no documents given to remove")
        return run(self.path, [], self.embedder, self.tokenizer(), self.config, wait=wait, remove=list(sources))

    def documents(self) -> list[dict]:
        """The indexed documents: source, chunks, size, sha256 and ingest time (epoch seconds); [] without an index."""
        try:
            files = self.manifest().files
        except IndexNotFoundError:
            return []
        return [{"source": s, "chunks": r.chunks, "size": r.size, "sha256": r.sha256, "ingested_at": r.ingested_at}
                for s, r in files.items()]

    @property
    def ready(self) -> bool:
        """True once the embedder and the generator are loaded (the first question loads them)."""
        return all(getattr(m, "loaded", True) for m in (self.embedder, self.generator))

    def warm_up(self) -> None:
        """Load the embedder and the generator now instead of on the first question."""
        for model in (self.embedder, self.generator):
            if hasattr(model, "warm_up"):
                model.warm_up()

    # -- query --------------------------------------------------------------------------------

    def _query(self, text: str, timings: dict[str, float]) -> Query:
        t0 = time.perf_counter()
        with self._model_lock:
            vector = self.embedder.embed_queries([text])[0]
        timings["embed_ms"] = (time.perf_counter() - t0) * 1000
        return Query(text=text, language=detect_language(text), terms=tuple(self.tokenizer()(text)), vector=vector)

    def _search(self, text: str, top_k: int, timings: dict[str, float]) -> list[Hit]:
        if not text.strip():
            return []
        index = self.index()
        query = self._query(text, timings)
        t0 = time.perf_counter()
        hits = hybrid_search(index, query, self.config.retrieve)
        timings["retrieve_ms"] = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        with self._model_lock:
            hits = self.reranker().rerank(query, hits, index)
        timings["rerank_ms"] = (time.perf_counter() - t0) * 1000
        return hits[:top_k]

    def search(self, query: str, top_k: int | None = None) -> list[Hit]:
        """Ranked chunks after fusion and reranking, with every stage's score. No LLM call."""
        return self._search(query, self._top_k(top_k), {})

    def _top_k(self, top_k: int | None) -> int:
        """The configured top_k for None; anything else must be a positive int (0 is not "the default")."""
        if top_k is None:
            return self.config.retrieve.top_k
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0:
            raise ValueError(f"top_k must be greater than 0. Currently, the top_k is {top_k!r}")
        return top_k

    def ask(self, question: str, top_k: int | None = None, language: str | None = None,
            history: Sequence[Turn] = ()) -> Answer:
        """A grounded answer with citations, or the fallback sentence with answered=False.

        `language` forces the answer language ("en"/"zh"; default: the question's). `history` holds
        the earlier turns of a conversation, so a follow-up like "and who succeeded him?" searches
        together with the previous question (the searched text is `Answer.query`)."""
        stream = self.ask_stream(question, top_k, language, history)
        for _ in stream:
            pass
        assert stream.answer is not None
        return stream.answer

    def ask_stream(self, question: str, top_k: int | None = None, language: str | None = None,
                   history: Sequence[Turn] = ()) -> AnswerStream:
        """Like `ask`, but yields the answer text as it is generated; the Answer is on `.answer` at the end."""
        top_k = self._top_k(top_k)  # checked here, where the call enters, not when the stream is read
        if language not in (None, "auto", "en", "zh"):
            raise ValueError(f"language must be 'en', 'zh', 'auto' or None. Currently, the language is {language!r}")
        stream = AnswerStream(iter(()))
        stream._pieces = self._answer_pieces(question, top_k, language, tuple(history), stream)
        return stream

    def _answer_pieces(self, question: str, top_k: int | None, language: str | None, history: tuple[Turn, ...],
                       stream: AnswerStream) -> Iterator[str]:
        started = time.perf_counter()
        timings: dict[str, float] = {}
        lang = language if language in ("en", "zh") else detect_language(question)
        query = standalone_question(question, history)
        earlier = None
        if query != question.strip():
            last = history[-1]
            earlier = (last.question, last.answer if last.answer and not is_refusal(last.answer) else "-")
        hits = self._search(query, max(top_k, self.config.prompt.max_chunks), timings)
        threshold = self.min_score(lang)
        best = final_score(hits[0]) if hits else None

        def refuse(reason: str, model: str = "") -> Iterator[str]:
            text = fallback(lang)
            timings["total_ms"] = (time.perf_counter() - started) * 1000
            stream.answer = Answer(text=text, answered=False, language=lang, citations=[], hits=hits[:top_k], timings_ms=timings, reason=reason,
                                   query=query, model=model)
            yield text

        if not hits:
            yield from refuse("no matching passages")
            return
        if threshold is not None and best is not None and best < threshold:
            yield from refuse(f"best passage scored {best:.3f}, below the threshold {threshold:.3f}")
            return
        pc = self.config.prompt
        special = self.generator.special_tokens() if hasattr(self.generator, "special_tokens") else ()
        context = prompt_passages(hits, threshold) if pc.drop_below_threshold else hits
        prompt = build_prompt(question, context, lang, pc.max_context_tokens, pc.max_chunks, self.embedder.count_tokens, earlier,
                              pc.window, special)
        t0 = time.perf_counter()
        pieces: list[str] = []
        emitted = 0
        first_token = None
        for piece in self.generator.stream(prompt.messages):
            if first_token is None:
                first_token = time.perf_counter()
            pieces.append(piece)
            text = "".join(pieces)
            # Hold back output while it could still turn out to be a refusal, so a stream never
            # shows half a hallucinated sentence before the fallback replaces it.
            if len(text) >= 24 and not is_refusal(text):
                yield text[emitted:]
                emitted = len(text)
        timings["generate_ms"] = (time.perf_counter() - t0) * 1000
        if first_token is not None:
            timings["first_token_ms"] = (first_token - started) * 1000
            timings["model_first_token_ms"] = (first_token - t0) * 1000  # the model's own prefill time
        text = "".join(pieces).strip()
        if is_refusal(text):
            if emitted:
                yield "\n"
            yield from refuse("the model found no answer in the passages", self.model_label)
            return
        if len(text) > emitted:
            yield text[emitted:]
        index = self.index()
        citations = cite(text, query, prompt.hits, self.tokenizer(), index.bm25.term_idf)
        timings["total_ms"] = (time.perf_counter() - started) * 1000
        stream.answer = Answer(text=text, answered=True, language=lang, citations=citations, hits=hits[:top_k], timings_ms=timings,
                              query=query, model=self.model_label)

    # -- inspection ----------------------------------------------------------------------------

    @property
    def model_label(self) -> str:
        """Which backend and chat model answer, e.g. "openai: glm4 @ http://127.0.0.1:9997/v1"."""
        gen = self.generator
        where = f" @ {gen.url}" if getattr(gen, "url", "") else ""
        return f"{getattr(gen, 'backend', type(gen).__name__)}: {gen.name}{where}"

    def info(self) -> dict:
        """Documents, chunks, models and settings the index was built with."""
        m = self.manifest()
        return {
            "index": str(self.path), "generation": m.generation, "schema_version": m.schema_version,
            "ragapp_version": m.ragapp_version, "documents": len(m.files), "chunks": m.chunks, "sentences": m.sentences,
            "embedding": m.embedding, "split": m.split, "bm25": m.bm25,
            "generator": self.model_label, "reranker": self.config.rerank.kind,
            "min_score": {lang: self.min_score(lang) for lang in ("en", "zh")},
            "created_at": m.created_at, "updated_at": m.updated_at,
            "files": {s: {"chunks": r.chunks, "sha256": r.sha256, "size": r.size, "ingested_at": r.ingested_at} for s, r in m.files.items()},
        }
