"""The application object: ingest, search and ask over one index."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragapp.components import checked
from ragapp.config import Config
from ragapp.embed import Embedder, build_embedder, embedding_record
from ragapp.errors import IndexNotFoundError
from ragapp.generate import Generator, build_generator
from ragapp.generate.base import TokenScores, timed_stream, token_usage
from ragapp.index import IndexBackend, IndexReader, Manifest, check_settings, index_settings, open_backend
from ragapp.ingestion import bm25_settings, run
from ragapp.query import recalibrate
from ragapp.query.answer import cite, support_share
from ragapp.query.confidence import Assessed, assess, table_confidence, withheld
from ragapp.query.conversation import Turn, earlier_exchange, standalone_question
from ragapp.query.prompt import Prompt, build_prompt
from ragapp.query.refusal import HeldBack, fallback, is_refusal, prompt_passages, refusal_before_model, refusal_by_model, refusal_threshold
from ragapp.query.retrieve import hybrid_search
from ragapp.query.review import review, unsupported
from ragapp.query.threshold import Threshold, read_fitted
from ragapp.records import Answer, AnswerStream, Box, Citation, DocumentInfo, Hit, IndexInfo, IngestReport, Query, TableQuery
from ragapp.rerank import Reranker, build_reranker
from ragapp.runtime import set_faiss_threads
from ragapp.show.store import has_pages
from ragapp.tables import TableQA, sentence
from ragapp.terms import Tokenizer
from ragapp.text import detect_language

if TYPE_CHECKING:
    from ragapp.evaluate import EvalReport
    from ragapp.show import PageImage, PageView
    from ragapp.watch import FolderWatcher


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

    def __init__(self, index: str | Path | IndexBackend = "data/index", config: Config | None = None, *,
                 embedder: Embedder | None = None, reranker: Reranker | None = None,
                 generator: Generator | None = None) -> None:
        self.config = config or Config()
        # The index folder: a local index's files, or (Milvus) where the app keeps a knowledge base's uploads.
        if isinstance(index, (str, Path)):
            self.store: IndexBackend = open_backend(index, self.config.index)
            self.path = Path(index)
        else:
            self.store, self.path = index, Path(index.location)
        # Tables are kept beside the index in its folder (ragapp.tables); a backend passed in has none.
        self._tables = TableQA(self.path, self.config.tables) if isinstance(index, (str, Path)) and self.config.tables.enabled \
            else None
        # Where pages' characters sit (ragapp.show) is kept in the same folder, for either backend.
        self._pages = self.path if isinstance(index, (str, Path)) else None
        self._view: PageView | None = None
        self.embedder = checked(embedder, Embedder, "embedder") or build_embedder(self.config)
        self.generator = checked(generator, Generator, "generator") or build_generator(self.config.generate, self.config.cache_dir,
                                                                                       self.config.models)
        self._custom_reranker = reranker
        self._reranker: Reranker | None = reranker
        self._tokenizer = Tokenizer(self.config.bm25.chinese, self.config.bm25.stem)
        self._index: IndexReader | None = None
        self._index_stamp: Hashable | None = None
        self._lock = threading.RLock()
        self._model_lock = threading.Lock()
        # BM25 runs here while the question is embedded (numba and torch both release the GIL).
        self._lexical = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ragapp-bm25")

    # -- index --------------------------------------------------------------------------------

    def settings(self) -> dict[str, dict]:
        """Every setting that shapes the index, from this RAG's config and embedder."""
        return index_settings(embedding_record(self.embedder), asdict(self.config.split),
                              bm25_settings(self.config.bm25, self._tokenizer))

    def index(self) -> IndexReader:
        """The last committed index; reopened when another process or thread commits a new generation.
        An index built with other settings (embedding model, split, BM25) is refused."""
        with self._lock:
            stamp = self.store.stamp()
            if stamp is None:
                raise IndexNotFoundError(f"no index at {self.store.location} (run: ragapp ingest PATH --index {self.path})")
            if self._index is None or stamp != self._index_stamp:
                index = self.store.open()
                wanted = self.settings()
                # How sentence vectors were made matters to an ingest adding to the index, not to a query.
                wanted["embedding"].pop("sentence_vectors")
                check_settings(index.manifest, wanted, self.store.location)
                set_faiss_threads(self.config.threads)
                self._index, self._index_stamp = index, stamp
            return self._index

    def manifest(self) -> Manifest:
        """The committed manifest (raises IndexNotFoundError when there is no index yet)."""
        return self.store.manifest()

    def tokenizer(self) -> Tokenizer:
        """The BM25 tokenizer (the index is checked to have been built with the same settings)."""
        return self._tokenizer

    def reranker(self) -> Reranker:
        """The configured second stage."""
        with self._lock:
            if self._reranker is None:
                self._reranker = build_reranker(self.config.rerank, self._tokenizer, self.config.threads, self.config.models)
            return self._reranker

    def threshold(self, language: str = "en") -> Threshold:
        """The refusal threshold on the best rerank score in force for `language`, and where it came
        from (configured, fitted on this knowledge base by `ragapp eval --apply`, or global)."""
        fitted = read_fitted(self._pages, self.embedder.name, self.config.rerank.kind)
        return refusal_threshold(self.config.rerank, self.reranker(), self.embedder.name, language, fitted)

    def min_score(self, language: str = "en") -> float | None:
        """Refusal threshold on the best rerank score (None: never refuse before asking the model)."""
        return self.threshold(language).value

    def evaluate(self, questions: int = 50, **options) -> EvalReport:
        """How far to trust this knowledge base's answers: a test set written from its documents (or
        `set_path`'s), run, and the refusal threshold fitted on it (ragapp.evaluate.evaluate's options)."""
        from ragapp.evaluate import evaluate

        return evaluate(self, questions, **options)

    # -- ingest -------------------------------------------------------------------------------

    def ingest(self, paths: Sequence[str | Path], rebuild: bool = False, wait: bool = True,
               progress: Callable[[str, str, int, int], None] | None = None,
               on_message: Callable[[str], None] | None = None, *, hold: Collection[str] = (),
               rehash: Collection[str] = ()) -> IngestReport:
        """Add, update and remove documents under `paths`; only changed files are re-embedded. Files in
        `hold` (paths still being written) are left as they are this time; files in `rehash` are hashed
        even when their size, mtime, ctime and inode are as recorded."""
        self.store.check_writable()  # before anything reads a manifest.json that may not be ragapp's
        return run(self.store, paths, self.embedder, self._tokenizer, self.config, rebuild=rebuild, wait=wait,
                   progress=progress, on_message=on_message, hold=hold, rehash=rehash,
                   tables=self.path if self._tables is not None else None, pages=self._pages)

    def remove(self, sources: Sequence[str], wait: bool = True) -> IngestReport:
        """Drop documents (by the source path the index records) from the chunk store, FAISS and BM25."""
        if not sources:
            raise ValueError("no documents given to remove")
        return run(self.store, [], self.embedder, self._tokenizer, self.config, wait=wait, remove=list(sources),
                   tables=self.path if self._tables is not None else None, pages=self._pages)

    def watch(self, folders: Sequence[str | Path], **options) -> FolderWatcher:
        """A watcher that keeps this index in step with `folders` (ragapp.watch.FolderWatcher; options:
        settle, max_wait, on_batch): call its `start()` (background thread) or `run()`."""
        from ragapp.watch import FolderWatcher

        return FolderWatcher(self, folders, **options)

    def documents(self) -> list[DocumentInfo]:
        """The indexed documents: source, chunks, size, sha256 and ingest time; [] without an index."""
        try:
            return self.manifest().documents()
        except IndexNotFoundError:
            return []

    @property
    def ready(self) -> bool:
        """True once the embedder and the generator are loaded (the first question loads them)."""
        return self.embedder.loaded and self.generator.loaded

    def warm_up(self) -> None:
        """Load the embedder and the generator now instead of on the first question."""
        self.embedder.warm_up()
        self.generator.warm_up()

    # -- query --------------------------------------------------------------------------------

    def _embed(self, text: str) -> np.ndarray:
        with self._model_lock:
            return self.embedder.embed_queries([text])[0]

    def _query(self, text: str, terms: tuple[str, ...], timings: dict[str, float]) -> Query:
        t0 = time.perf_counter()
        vector = self._embed(text)
        timings["embed_ms"] = (time.perf_counter() - t0) * 1000
        return Query(text=text, language=detect_language(text), terms=terms, vector=vector)

    def _search(self, index: IndexReader, text: str, top_k: int, timings: dict[str, float], exclude: Collection[str] = ()) -> list[Hit]:
        if not text.strip():
            return []
        terms = tuple(self.tokenizer()(text))
        # Passages of excluded documents are dropped from each list, which is read deeper to make up for them.
        n = self.config.retrieve.candidates * (2 if exclude else 1)
        bm25 = self._lexical.submit(index.bm25_top_n, terms, n, text)
        query = self._query(text, terms, timings)
        t0 = time.perf_counter()
        hits = hybrid_search(index, query, self.config.retrieve, candidates=n, bm25=bm25.result(),
                             limit=max(top_k, self.config.rerank.candidates),  # what any reranker reads
                             keep=(lambda row: index.chunk(row).source not in exclude) if exclude else None)
        timings["retrieve_ms"] = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        with self._model_lock:
            hits = self.reranker().rerank(query, hits, index)
        timings["rerank_ms"] = (time.perf_counter() - t0) * 1000
        return hits[:top_k]

    def search(self, query: str, top_k: int | None = None, *, exclude: Collection[str] = ()) -> list[Hit]:
        """Ranked chunks after fusion and reranking, with every stage's score. No LLM call. `exclude`:
        sources to leave out of this search (nothing is removed from the index)."""
        return self._search(self.index(), query, self._top_k(top_k), {}, frozenset(exclude))

    def _top_k(self, top_k: int | None) -> int:
        """The configured top_k for None; anything else must be a positive int (0 is not "the default")."""
        if top_k is None:
            return self.config.retrieve.top_k
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0:
            raise ValueError(f"top_k must be greater than 0. Currently, the top_k is {top_k!r}")
        return top_k

    def ask(self, question: str, top_k: int | None = None, language: str | None = None,
            history: Sequence[Turn] = (), **options) -> Answer:
        """A grounded answer with citations, or the fallback sentence with answered=False.

        `language` forces the answer language ("en"/"zh"; default: the question's). `history` holds
        the earlier turns of a conversation, so a follow-up like "and who succeeded him?" searches
        together with the previous question (the searched text is `Answer.query`). Options as `ask_stream`'s."""
        stream = self.ask_stream(question, top_k, language, history, **options)
        for _ in stream:
            pass
        assert stream.answer is not None
        return stream.answer

    def ask_stream(self, question: str, top_k: int | None = None, language: str | None = None,
                   history: Sequence[Turn] = (), *, exclude: Collection[str] = (),
                   min_score: float | None = None) -> AnswerStream:
        """Like `ask`, but yields the answer text as it is generated; the Answer is on `.answer` at the end.
        `exclude`: sources this question's search leaves out; `min_score`: a refusal threshold for this
        question only (None: the one in force, `threshold()`)."""
        top_k = self._top_k(top_k)  # checked here, where the call enters, not when the stream is read
        if language not in (None, "auto", "en", "zh"):
            raise ValueError(f"language must be 'en', 'zh', 'auto' or None. Currently, the language is {language!r}")
        stream = AnswerStream(iter(()))
        stream._pieces = self._answer_pieces(question, top_k, language, tuple(history), stream, frozenset(exclude), min_score)
        return stream

    def _answer_pieces(self, question: str, top_k: int, language: str | None, history: tuple[Turn, ...],
                       stream: AnswerStream, exclude: frozenset[str], min_score: float | None) -> Iterator[str]:
        started, timings = time.perf_counter(), dict[str, float]()
        if not self.generator.loaded:  # the chat model loads while the question is searched (errors show when it is used)
            self._lexical.submit(self.generator.warm_up)
        lang = language if language in ("en", "zh") else detect_language(question)
        query = standalone_question(question, history)
        index = self.index()  # for the whole answer: a sync may commit another generation while the model writes
        hits = self._search(index, query, max(top_k, self.config.prompt.max_chunks), timings, exclude)

        usage = {"prompt_tokens": 0, "completion_tokens": 0}

        def finish(text: str, answered: bool, reason: str = "", model: str = "", citations=(), table=None, **more) -> None:
            citations = [self._placed(c) for c in citations]
            timings["total_ms"] = (time.perf_counter() - started) * 1000
            stream.answer = Answer(text=text, answered=answered, language=lang, citations=citations, hits=hits[:top_k],
                                   timings_ms=timings, reason=reason, query=query, model=model, table=table, usage=usage, **more)

        table = self._table_answer(index, query, hits, timings)
        if table is not None:
            text = sentence(table, lang)
            finish(text, True, model=self.model_label, citations=[table.citation()], table=table, confidence=table_confidence(self.generator.name))
            yield text
            return

        gate = self.threshold(lang) if min_score is None else Threshold(min_score, "asked for this question")
        threshold = gate.value
        if reason := refusal_before_model(hits, threshold, gate.origin):
            finish(fallback(lang), False, reason)
            yield fallback(lang)
            return
        prompt = self._prompt(question, hits, lang, threshold, earlier_exchange(question, query, history, is_refusal))
        settings = self.config.answer
        held, scores = HeldBack(hold_all=settings.min_confidence > 0 or settings.review), TokenScores()
        yield from (shown for piece in timed_stream(self.generator, prompt.messages, scores, timings, started)
                    if (shown := held.feed(piece)))
        usage.update(token_usage(self.generator, prompt.messages, held.text, lambda text: self.embedder.count_tokens([text])[0]))
        if is_refusal(held.text):
            finish(fallback(lang), False, refusal_by_model(hits, threshold, gate.origin), self.model_label)
            yield ("\n" if held.emitted else "") + fallback(lang)
            return
        judged, text, reason = self._judge(index, held.text, query, hits, prompt, lang, scores, timings)
        judgement: dict[str, Any] = {"confidence": judged.confidence, "signals": judged.signals.to_dict()}
        if reason:
            finish(fallback(lang), False, reason, self.model_label, draft=held.text, **judgement)
            yield ("\n" if held.emitted else "") + fallback(lang)
            return
        if len(text) > held.emitted:
            yield text[held.emitted :]
        citations = cite(text, query, prompt.hits, self._tokenizer, index.term_idf)
        finish(text, True, model=self.model_label, citations=citations, **judgement)

    def _judge(self, index: IndexReader, text: str, query: str, hits: list[Hit], prompt: Prompt, lang: str, scores: TokenScores,
               timings: dict[str, float]) -> tuple[Assessed, str, str]:
        """The answer's confidence, its text after the groundedness review (when on), and why it is withheld ("" if not)."""
        t0, settings = time.perf_counter(), self.config.answer
        judged = assess(text, query, hits, prompt.hits, model=self.generator.name, language=lang, logprobs=scores.logprobs,
                        first=scores.first, fallback=fallback(lang), embed=self._embed, sentence_vectors=index.chunk_sentence_vectors,
                        support=lambda a, q, h: support_share(a, q, h, self._tokenizer, index.term_idf),
                        recalibration=recalibrate.read(self._pages, self.generator.name))
        timings["confidence_ms"] = (time.perf_counter() - t0) * 1000
        if judged.confidence < settings.min_confidence:
            return judged, text, withheld(judged.confidence, settings.min_confidence, judged.origin)
        if settings.review:
            t0, checked = time.perf_counter(), review(text, query, prompt, self.generator.generate)
            timings["review_ms"] = (time.perf_counter() - t0) * 1000
            return judged, checked.text, "" if checked.text else unsupported(checked.dropped)
        return judged, text, ""

    def _table_answer(self, index: IndexReader, query: str, hits: list[Hit], timings: dict[str, float]) -> TableQuery | None:
        """The answer of a query over the table the hits come from (ragapp.tables), or None."""
        if self._tables is None or not hits:
            return None
        t0 = time.perf_counter()
        files = {s: r.sha256 for s, r in index.manifest.files.items()}
        found = self._tables.answer(query, hits, files, self.generator.generate)
        timings["table_ms"] = (time.perf_counter() - t0) * 1000
        return found

    def _prompt(self, question: str, hits: list[Hit], lang: str, threshold: float | None,
                earlier: tuple[str, str] | None) -> Prompt:
        pc = self.config.prompt
        special = self.generator.special_tokens()
        context = prompt_passages(hits, threshold) if pc.drop_below_threshold else hits
        return build_prompt(question, context, lang, pc.max_context_tokens, pc.max_chunks, self.embedder.count_tokens,
                            earlier, pc.window, special)

    # -- citations on their pages ---------------------------------------------------------------

    def _page_view(self) -> PageView | None:
        """Where citations are drawn on their pages (None for a backend passed in: it keeps no pages)."""
        from ragapp.show import PageView

        if self._pages is None:
            return None
        if self._view is None:
            self._view = PageView(self._pages, self.config.ingest)
        return self._view

    def _placed(self, citation: Citation) -> Citation:
        """The citation with its boxes on the page, when the index recorded where its text sits."""
        return replace(citation, boxes=self.page_boxes(citation.source, citation.page, citation.start, citation.end))

    def page_boxes(self, source: str, page: int | None, start: int, end: int) -> tuple[Box, ...]:
        """Where characters start..end of an indexed page sit on it, one box per line; () when not known."""
        view = self._page_view()
        if view is None or end <= start:
            return ()
        return view.boxes(source, self.index().manifest.files.get(source), page, start, end)

    def page_image(self, source: str, page: int | None, start: int = 0, end: int = 0, width: int = 900,
                   renders: threading.Semaphore | None = None) -> PageImage:
        """Page `page` of an indexed document as a PNG about `width` pixels wide, with characters start..end
        of its text boxed (a citation's `start`, `end`); LookupError for a document the index does not list.
        With `renders` (a server's pool), BusyError when a new drawing finds no free slot."""
        view = self._page_view()
        if view is None:
            raise LookupError("this index keeps no pages (a backend passed in)")
        return view.image(source, self.index().manifest.files.get(source), page, start, end, width, renders)

    # -- inspection ----------------------------------------------------------------------------

    @property
    def model_label(self) -> str:
        """Which backend and chat model answer, e.g. "openai: glm4 @ http://127.0.0.1:9997/v1"."""
        gen = self.generator
        where = f" @ {gen.url}" if gen.url else ""
        return f"{gen.backend or type(gen).__name__}: {gen.name}{where}"

    def info(self) -> IndexInfo:
        """Documents, chunks, models and settings the index was built with."""
        m = self.manifest()
        return IndexInfo(index=self.store.location, generation=m.generation, schema_version=m.schema_version,
                         ragapp_version=m.ragapp_version, chunks=m.chunks, sentences=m.sentences, embedding=m.embedding,
                         split=m.split, bm25=m.bm25, generator=self.model_label, reranker=self.config.rerank.kind,
                         min_score={lang: self.min_score(lang) for lang in ("en", "zh")},
                         min_score_origin={lang: self.threshold(lang).origin for lang in ("en", "zh")}, created_at=m.created_at,
                         updated_at=m.updated_at, documents=m.documents(),
                         tables=len(self._tables.tables({s: r.sha256 for s, r in m.files.items()})) if self._tables else 0,
                         pages=self._pages is not None and has_pages(self._pages))
