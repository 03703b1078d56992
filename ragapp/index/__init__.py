"""Index stage: the on-disk index (chunk store, FAISS, sentence vectors, BM25) with atomic commits.

Layout of an index directory:

    manifest.json      which generation is current, how it was built, per-file hashes, part checksums
    gen-000007/        one complete generation: chunks.jsonl, dense.faiss, sentences.npy, bm25_*
    .lock              held by the one process that writes

A GenerationWriter streams a new generation folder beside the current one, chunk by chunk (so
memory does not grow with the input), fsyncs every file, then replaces manifest.json by rename. A
crash at any moment leaves the previous manifest pointing at the previous, complete generation;
readers never see a mix. Modules: protocols (the IndexBackend / IndexReader / IndexWriter boundary), backend (which store),
local (LocalIndex), manifest (manifest.json), folder (what a folder may hold), lock, dense
(dense.faiss), chunkstore, reader (LocalReader), writer (GenerationWriter), scope (abort unless
committed, for every writer); the milvus package keeps an index in Milvus instead (`[index] backend =
"milvus"`).
"""

from ragapp.index.backend import open_backend
from ragapp.index.folder import LOCK, UPLOADS, check_index_folder, is_index_folder
from ragapp.index.local import LocalIndex
from ragapp.index.lock import write_lock
from ragapp.index.manifest import (
    MANIFEST,
    PARTS,
    READABLE_SCHEMAS,
    SCHEMA_VERSION,
    FileRecord,
    Manifest,
    check_settings,
    index_settings,
    read_manifest,
    rebuild_hint,
    text_hash,
)
from ragapp.index.protocols import IndexBackend, IndexReader, IndexWriter
from ragapp.index.reader import LocalReader
from ragapp.index.writer import GenerationWriter

__all__ = [
    "GenerationWriter", "LocalReader", "IndexBackend", "IndexReader", "IndexWriter", "LocalIndex", "FileRecord", "Manifest",
    "LOCK", "MANIFEST", "PARTS", "READABLE_SCHEMAS", "SCHEMA_VERSION", "UPLOADS", "check_index_folder",
    "check_settings", "index_settings", "is_index_folder", "open_backend", "read_manifest", "rebuild_hint", "text_hash", "write_lock",
]
