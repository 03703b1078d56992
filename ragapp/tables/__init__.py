"""Table stage: every table ingest reads is also kept as a typed SQL table (ragapp.tables.store), and a
question over one is answered by a query the chat model writes, checked and run read-only
(ragapp.tables.sql, ragapp.tables.ask). Modules: cells (typed values), store (tables.sqlite),
sql (the query's checks and limits), ask (the question's path)."""

from ragapp.tables.ask import TableQA, sentence
from ragapp.tables.store import TABLES_FILE, TableWriter

__all__ = ["TABLES_FILE", "TableQA", "TableWriter", "sentence"]
