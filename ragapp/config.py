"""One configuration for the whole pipeline: dataclasses with defaults, an optional TOML file, overrides on top."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from ragapp.config_serve import ServeConfig
from ragapp.config_serve import check as _check
from ragapp.config_teams import AuditConfig, AuthConfig
from ragapp.errors import ConfigError


@dataclass(frozen=True)
class IngestConfig:
    """Which files ingest reads, and what parsing one file may take (the sandbox child gets these as they are)."""

    # PDF and HTML files are parsed whole, so larger ones are reported, not read. Text and Markdown
    # files are streamed and have no limit (memory stays bounded; time grows with the text).
    max_file_mb: float = 100.0
    # A symlinked file whose target lies outside the folder being ingested is skipped and reported
    # unless this is on (`ragapp ingest --follow-symlinks`). Symlinked folders are never followed.
    follow_symlinks: bool = False
    # Untrusted files are parsed in a child process with these limits, so a hostile file cannot take the
    # machine: wall time, address space, pages and extracted characters per file. The memory limit leaves
    # OCR of a large page room (docs/configuration.md, "Measured defaults").
    pdf_timeout_s: float = 300.0
    pdf_memory_mb: int = 3072
    pdf_max_pages: int = 10_000
    pdf_max_chars: int = 50_000_000
    # The same child parses every other format (Office, EPUB, e-mail, CSV, images): the limits above apply.
    # Images, and PDF pages without a usable text layer, are read by OCR; each page gets ocr_page_timeout_s
    # (a slower page is skipped and reported) and is rendered at no more than render_max_pixels.
    ocr: bool = True
    ocr_page_timeout_s: float = 120.0
    ocr_threads: int = 2
    render_max_pixels: int = 25_000_000
    # Office and EPUB files are zip archives: past these they are refused as zip bombs.
    unzip_max_mb: int = 1024
    zip_max_entries: int = 10_000

    def __post_init__(self) -> None:
        _check(self.max_file_mb > 0, f"max_file_mb must be greater than 0. Currently, it is {self.max_file_mb}")
        _check(self.pdf_timeout_s > 0, f"pdf_timeout_s must be greater than 0. Currently, it is {self.pdf_timeout_s}")
        _check(self.pdf_memory_mb >= 256, f"pdf_memory_mb must be at least 256. Currently, it is {self.pdf_memory_mb}")
        _check(self.pdf_max_pages > 0 and self.pdf_max_chars > 0,
               f"pdf_max_pages and pdf_max_chars must be greater than 0. Currently, they are {self.pdf_max_pages}, {self.pdf_max_chars}")
        _check(self.ocr_page_timeout_s > 0 and self.ocr_threads >= 1,
               f"ocr_page_timeout_s must be > 0 and ocr_threads >= 1. Currently, they are {self.ocr_page_timeout_s}, {self.ocr_threads}")
        _check(self.render_max_pixels >= 1_000_000, f"render_max_pixels must be at least 1000000. Currently, it is {self.render_max_pixels}")
        _check(self.unzip_max_mb > 0 and self.zip_max_entries > 0,
               f"unzip_max_mb and zip_max_entries must be greater than 0. Currently, they are {self.unzip_max_mb}, {self.zip_max_entries}")


@dataclass(frozen=True)
class SplitConfig:
    """How documents are cut into chunks. Sizes count tokens of the embedding model's tokenizer."""

    chunk_size: int = 200
    chunk_overlap: int = 30

    def __post_init__(self) -> None:
        _check(self.chunk_size >= 16, f"chunk_size must be at least 16 tokens. Currently, it is {self.chunk_size}")
        _check(0 <= self.chunk_overlap < self.chunk_size,
               f"chunk_overlap must be >= 0 and < chunk_size ({self.chunk_size}). Currently, it is {self.chunk_overlap}")


@dataclass(frozen=True)
class EmbedConfig:
    """Which embedding model and how to run it."""

    # A packaged name (multilingual-e5-small, all-MiniLM-L6-v2), a sentence-transformers folder or a hub id.
    model: str = "multilingual-e5-small"
    batch_size: int = 16
    # In-process: "int8" (linear layers in int8, activations scaled per token), "float32", or "bfloat16"
    # (fast only with AMX or on AMD Zen 4). Speed and quality: docs/benchmarks.md, "Ingest and scale".
    dtype: str = "int8"
    # Sentence vectors for the reranker: "separate" (each sentence encoded on its own, a second pass) or
    # "pooled" from the chunk's own token embeddings in the same pass: a faster ingest but a weaker
    # refusal signal, so not the default (docs/benchmarks.md). Shapes the index (recorded in the manifest).
    sentence_vectors: str = "separate"
    max_seq_length: int = 512
    # Questions of BERT-shaped models without torch: "auto" (numpy, then onnxruntime from a process's second
    # question), "numpy", or "torch" (as dtype bfloat16 does: sentence-transformers). benchmarks.md, "Cold start".
    query_runtime: str = "auto"
    # "sentence-transformers" runs the model here; "openai" asks the /v1/embeddings API of the user's server
    # (TEI, infinity, vLLM, Ollama, llama.cpp); ragapp adds e5's prefixes either way. Recorded in the manifest.
    backend: str = "sentence-transformers"
    base_url: str = ""
    api_key_env: str = ""
    timeout_s: float = 60.0
    max_retries: int = 2

    def __post_init__(self) -> None:
        _check(self.backend in ("sentence-transformers", "openai"),
               f"embed backend must be sentence-transformers or openai, not {self.backend!r}")
        _check(self.backend != "openai" or self.base_url.startswith(("http://", "https://")),
               f"embed backend 'openai' needs base_url = 'http://HOST:PORT/v1'. Currently, it is {self.base_url!r}")
        _check(self.batch_size > 0, f"embed batch_size must be greater than 0. Currently, it is {self.batch_size}")
        _check(self.dtype in ("float32", "bfloat16", "int8"), f"embed dtype must be int8, float32 or bfloat16, not {self.dtype!r}")
        _check(self.query_runtime in ("auto", "numpy", "torch"), f"embed query_runtime must be auto, numpy or torch, not {self.query_runtime!r}")
        _check(self.sentence_vectors in ("pooled", "separate"),
               f"embed sentence_vectors must be pooled or separate, not {self.sentence_vectors!r}")


@dataclass(frozen=True)
class BM25Config:
    """BM25Okapi parameters (rank-bm25 semantics) and tokenisation."""

    k1: float = 0.9
    b: float = 0.4
    epsilon: float = 0.25
    # Chinese tokenisation: "jieba" words or character "bigram"s (bench/quality.py compares them).
    chinese: str = "bigram"
    stem: bool = True

    def __post_init__(self) -> None:
        _check(self.k1 >= 0 and 0 <= self.b <= 1, f"BM25 needs k1 >= 0 and 0 <= b <= 1. Currently, k1={self.k1}, b={self.b}")
        _check(self.chinese in ("jieba", "bigram"), f"bm25 chinese must be 'jieba' or 'bigram', not {self.chinese!r}")


@dataclass(frozen=True)
class RetrieveConfig:
    """Hybrid retrieval: BM25 top-n and dense top-n, fused."""

    candidates: int = 50
    fusion: str = "rrf"
    rrf_k: int = 60
    bm25_weight: float = 1.0
    dense_weight: float = 1.0
    top_k: int = 5

    def __post_init__(self) -> None:
        _check(self.fusion in ("rrf", "weighted"), f"fusion must be 'rrf' or 'weighted', not {self.fusion!r}")
        _check(self.top_k > 0, f"top_k must be greater than 0. Currently, the top_k is {self.top_k}")
        _check(self.candidates >= self.top_k, f"candidates ({self.candidates}) must be >= top_k ({self.top_k})")


@dataclass(frozen=True)
class RerankConfig:
    """Second stage. kind: "sentence" (offline default), "cross-encoder" (needs `model`) or "none"."""

    kind: str = "sentence"
    model: str | None = None
    candidates: int = 30
    # kind "http": the /rerank API of a server (TEI, infinity, Xinference, vLLM): query + documents → scores.
    base_url: str = ""
    api_key_env: str = ""
    timeout_s: float = 60.0
    max_retries: int = 2
    # Refuse without calling the LLM when the best rerank score is below this. None: the value
    # calibrated for the embedding model in use (ragapp/query/refusal.py), or no threshold when none is known.
    min_score: float | None = None

    def __post_init__(self) -> None:
        _check(self.kind in ("sentence", "cross-encoder", "http", "none"),
               f"rerank kind must be sentence, cross-encoder, http or none, not {self.kind!r}")
        _check(self.kind != "http" or (self.base_url.startswith(("http://", "https://")) and bool(self.model)),
               "rerank kind 'http' needs base_url = 'http://HOST:PORT/v1' and the server's model name")
        _check(self.kind != "cross-encoder" or bool(self.model), "rerank kind 'cross-encoder' needs rerank model (a folder or hub id)")


@dataclass(frozen=True)
class PromptConfig:
    """How much retrieved text goes into the prompt."""

    # A small model answers more questions right from two short passages than from four long ones, in
    # half the time (docs/benchmarks.md, "Prompt size against answer quality").
    max_context_tokens: int = 350
    max_chunks: int = 2
    # Sentences either side of each passage's supporting sentence to show the model; 0 = the whole chunk.
    window: int = 0
    # Passages after the first under the refusal threshold (by its calibration they lack the answer) stay out.
    drop_below_threshold: bool = True


GENERATE_BACKENDS = ("auto", "transformers", "llama-cpp", "xllamacpp", "openai")


@dataclass(frozen=True)
class GenerateConfig:
    """Which chat model answers, and how.

    backend "transformers" and "llama-cpp" run the model in this process; "openai" asks any
    OpenAI-compatible server the user runs (Ollama, llama.cpp server, vLLM, Xinference, ...)."""

    # "auto": for a GGUF model, llama-cpp when llama-cpp-python is installed (faster and lighter: docs/benchmarks.md,
    # "Chat backends"), else xllamacpp (prebuilt, slower here: "Generation speed") when it is; else transformers.
    backend: str = "auto"
    # transformers: a packaged name (qwen2.5-coder-0.5b-instruct, qwen2.5-coder-1.5b-instruct, smollm2-135m-instruct), a model folder,
    # a .gguf file or a hub id; llama-cpp, xllamacpp: a packaged name or a .gguf file; openai: the server's model name.
    # The 1.5B by the rule in docs/models.md (right 13-20 points more often than the 0.5B at better refusal, cold
    # ask 2.8 s): "qwen2.5-coder-0.5b-instruct" answers in about 60 % of its time.
    model: str = "qwen2.5-coder-1.5b-instruct"
    max_new_tokens: int = 128
    dtype: str = "bfloat16"
    temperature: float = 0.0
    # openai: the server's base URL (ending in /v1), the NAME of the environment variable that holds
    # its API key (the key itself never sits in a file), the timeout of one request and its retries.
    base_url: str = ""
    api_key_env: str = ""
    timeout_s: float = 120.0
    max_retries: int = 2
    # llama-cpp: context window in tokens.
    n_ctx: int = 4096
    # In-process chat model: 2 threads prefill and decode nearly twice as fast as 1 here ("Chat backends").
    threads: int = 2

    def __post_init__(self) -> None:
        _check(self.backend in GENERATE_BACKENDS,
               f"generate backend must be one of {', '.join(GENERATE_BACKENDS)}, not {self.backend!r}")
        _check(self.max_new_tokens > 0, f"max_new_tokens must be greater than 0. Currently, it is {self.max_new_tokens}")
        _check(self.dtype in ("float32", "bfloat16"), f"generate dtype must be float32 or bfloat16, not {self.dtype!r}")
        _check(self.timeout_s > 0 and self.max_retries >= 0,
               f"timeout_s must be > 0 and max_retries >= 0. Currently, {self.timeout_s} and {self.max_retries}")
        _check(self.n_ctx >= 512, f"n_ctx must be at least 512. Currently, it is {self.n_ctx}")
        _check(self.threads > 0, f"generate threads must be greater than 0. Currently, it is {self.threads}")
        _check(self.backend != "openai" or self.base_url.startswith(("http://", "https://")),
               f"generate backend 'openai' needs base_url = 'http://HOST:PORT/v1'. Currently, it is {self.base_url!r}")
        _check(not self.api_key_env or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env) is not None,
               "api_key_env is the NAME of an environment variable that holds the key (e.g. OPENAI_API_KEY), not the key")


@dataclass(frozen=True)
class AnswerConfig:
    """When a written answer is given: its confidence (ragapp/query/confidence.py) must reach `min_confidence`,
    else the refusal sentence is given, with the confidence, the threshold and the withheld draft beside it."""

    # 0 gives every answer the model writes (its confidence still shown). Chosen on the shared extracts at
    # about 0.10 false refusals in all (docs/benchmarks.md, "Answer confidence").
    min_confidence: float = 0.0
    # A second call asks the chat model whether the passages support each sentence of its answer; those
    # it says are not are dropped (ragapp/query/review.py). Doubles the model's work: meant for a server model.
    review: bool = False

    def __post_init__(self) -> None:
        _check(0.0 <= self.min_confidence < 1.0, f"min_confidence must be in [0, 1). Currently, it is {self.min_confidence}")


@dataclass(frozen=True)
class TablesConfig:
    """Tables kept as SQL tables at ingest (ragapp.tables), and questions over them answered by a query
    the chat model writes: checked, read-only, bounded in time and rows."""

    enabled: bool = True
    # The tables of the retrieval's best `hits` hits are candidates; the model sees `sample_rows` rows.
    hits: int = 3
    sample_rows: int = 3
    timeout_s: float = 2.0
    max_rows: int = 20
    # Tries at a valid query (the second is told why the first failed).
    attempts: int = 2

    def __post_init__(self) -> None:
        _check(self.hits > 0 and self.sample_rows >= 0 and self.max_rows > 0 and self.attempts > 0,
               "tables hits, max_rows and attempts must be greater than 0, sample_rows 0 or more")
        _check(self.timeout_s > 0, f"tables timeout_s must be greater than 0. Currently, it is {self.timeout_s}")


@dataclass(frozen=True)
class IndexConfig:
    """Where the index lives: "local" (FAISS + BM25 files in the index folder) or "milvus" (a Milvus
    collection: Milvus Lite when `uri` is a file ending in .db, a Milvus server or cluster at
    http(s)://HOST:19530, its token read from the environment variable `token_env`)."""

    backend: str = "local"
    uri: str = ""
    # The collection; "" names it after the index folder and a hash of its path (data/index ->
    # "index_1b2e…"), so two folders never share one. Name it to share one index between machines.
    collection: str = ""
    token_env: str = "MILVUS_TOKEN"
    # Milvus's vector index: HNSW (its usual choice; M 16, efConstruction 200), FLAT (exact), IVF_FLAT,
    # IVF_SQ8 (a quarter of the memory), DISKANN (vectors on local disk; a server only), AUTOINDEX.
    dense_index: str = "HNSW"
    # What Milvus's BM25 counts: "ragapp" (ragapp's terms: English stemmed, Chinese bigrams; SciFact
    # nDCG@10 as the local index) or "jieba" (Milvus's jieba analyzer on the text; docs/milvus.md).
    bm25_terms: str = "ragapp"
    timeout_s: float = 10.0
    # A file claimed by a writer on another machine is left to it for this long (docs/milvus.md).
    claim_timeout_s: float = 900.0

    def __post_init__(self) -> None:
        _check(self.backend in ("local", "milvus"), f"index backend must be local or milvus, not {self.backend!r}")
        _check(self.backend != "milvus" or self.uri.startswith(("http://", "https://")) or self.uri.endswith(".db"),
               f"index backend milvus needs uri = 'PATH.db' (Milvus Lite) or 'http://HOST:19530'. Currently, it is {self.uri!r}")
        _check(self.timeout_s > 0 and self.claim_timeout_s > 0, "index timeout_s and claim_timeout_s must be greater than 0")
        _check(self.bm25_terms in ("ragapp", "jieba"), f"index bm25_terms must be ragapp or jieba, not {self.bm25_terms!r}")


@dataclass(frozen=True)
class UIConfig:
    """The Streamlit app: where knowledge bases live (index folders directly under knowledge_root) and
    how large an upload may be."""

    knowledge_root: str = "data"
    max_upload_mb: int = 200

    def __post_init__(self) -> None:
        _check(self.max_upload_mb > 0, f"max_upload_mb must be greater than 0. Currently, it is {self.max_upload_mb}")


@dataclass(frozen=True)
class ModelsConfig:
    """What ragapp may do to get a model. Both off by default: nothing is downloaded and no code
    shipped with a model folder runs."""

    # Download a hub id that is not already on disk (Hugging Face hub). Off: only packaged models,
    # local folders and what is already in the local Hugging Face cache are used.
    allow_downloads: bool = False
    # Load model folders whose configuration names classes outside transformers and
    # sentence-transformers (a transformers `auto_map`, a sentence-transformers module from another
    # package). trust_remote_code stays off even then: code inside a model folder never runs.
    allow_custom_classes: bool = False


def _default_cache_dir() -> str:
    return os.environ.get("RAGAPP_CACHE") or str(Path.home() / ".cache" / "ragapp")


@dataclass(frozen=True)
class Config:
    """Every setting of ragapp. `Config.load(path, **overrides)` reads TOML and applies dotted overrides."""

    ingest: IngestConfig = field(default_factory=IngestConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    bm25: BM25Config = field(default_factory=BM25Config)
    index: IndexConfig = field(default_factory=IndexConfig)
    retrieve: RetrieveConfig = field(default_factory=RetrieveConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    answer: AnswerConfig = field(default_factory=AnswerConfig)
    tables: TablesConfig = field(default_factory=TablesConfig)
    ui: UIConfig = field(default_factory=UIConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    # Threads for torch, FAISS and OpenMP. Two vCPUs do about one core of work, so 1 is fastest here.
    threads: int = 1
    # Threads for batch embedding during ingest, where 2 threads nearly double throughput (unlike single queries).
    ingest_threads: int = 2
    cache_dir: str = field(default_factory=_default_cache_dir)

    def __post_init__(self) -> None:
        _check(self.threads > 0, f"threads must be greater than 0. Currently, it is {self.threads}")
        _check(self.ingest_threads > 0, f"ingest_threads must be greater than 0. Currently, it is {self.ingest_threads}")

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> Config:
        """Defaults, then the TOML file at `path` (if any), then overrides like `retrieve__top_k=3`."""
        data: dict[str, Any] = {}
        if path is not None:
            try:
                data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"cannot read config {path}: {exc}") from exc
        for key, value in overrides.items():
            if value is None:
                continue
            section, _, name = key.partition("__")
            if name:
                data.setdefault(section, {})[name] = value
            else:
                data[section] = value
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Build from nested dicts; unknown keys are an error that names them."""
        sections = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in sections:
                raise ConfigError(f"unknown config section {key!r}; known: {', '.join(sections)}")
            if isinstance(value, dict):
                sub_cls = sections[key].default_factory
                if not (isinstance(sub_cls, type) and is_dataclass(sub_cls)):
                    raise ConfigError(f"config {key!r} is a value, not a section")
                known = {f.name for f in fields(sub_cls)}
                unknown = set(value) - known
                if unknown:
                    raise ConfigError(f"unknown setting(s) in [{key}]: {', '.join(sorted(unknown))}")
                kwargs[key] = sub_cls(**value)
            else:
                kwargs[key] = value
        return cls(**kwargs)

    def with_(self, **changes: Any) -> Config:
        """A copy with some sections or values replaced."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for manifests and `ragapp info`)."""
        return asdict(self)
