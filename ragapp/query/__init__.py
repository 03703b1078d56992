"""Query pipeline: hybrid retrieval → rerank → refusal gate → grounded prompt → answer with citations and a
confidence.

`RAG.ask` (ragapp/rag.py) drives it; each stage is its own module: `retrieve` (BM25 + dense, fused),
`threshold` and `refusal` (when not to answer), `prompt` (what the model reads), `answer` (citations),
`confidence` (how likely an answer is right) and `recalibrate` (that refitted on a knowledge base's own answers),
`review` (the optional groundedness review), `conversation` (follow-up questions).
"""
