"""HTTP API: `ragapp serve` (FastAPI + uvicorn). OpenAI-compatible chat over a knowledge base, with
citations; search; knowledge-base management with background ingest jobs. Models load once per process."""

from ragapp.serve.app import create_app
from ragapp.serve.keys import api_keys

__all__ = ["api_keys", "create_app"]
