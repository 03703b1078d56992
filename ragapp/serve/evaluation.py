"""A knowledge base's self-test over HTTP: `ragapp eval` as a background job, its last report, and a
verdict on an answer kept as a test case (what the chat app's buttons do)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ragapp.evaluate import add_feedback, last_report
from ragapp.teams.access import EDIT

if TYPE_CHECKING:
    from collections.abc import Callable

    from ragapp.jobs import Jobs
    from ragapp.rag import RAG
    from ragapp.serve.public import PublicPaths


class EvalRequest(BaseModel):
    """POST /v1/knowledge_bases/{name}/eval."""

    questions: int = Field(default=50, ge=4, le=2000)
    apply: bool = False
    seed: int = 0


class Feedback(BaseModel):
    """POST /v1/knowledge_bases/{name}/feedback: a verdict on an answer, kept in the knowledge base's test set."""

    question: str = Field(min_length=1, max_length=2000)
    answer: str = Field(default="", max_length=20000)
    # On an answer: good, bad, should_refuse; on a refusal: right_refusal, should_answer.
    verdict: Literal["good", "bad", "should_refuse", "right_refusal", "should_answer"]
    sources: list[Annotated[str, Field(max_length=1000)]] = Field(default_factory=list, max_length=20)


def eval_routes(app: FastAPI, rag_of: Callable[..., RAG], jobs: Jobs, public: PublicPaths) -> None:
    """The eval job, its last report and feedback, under /v1/knowledge_bases/{name}/."""

    @app.post("/v1/knowledge_bases/{name}/eval", status_code=202)
    async def run_eval(name: str, body: EvalRequest, request: Request) -> dict:
        """Write a test set from the knowledge base, run it and fit its threshold, in a background job
        (GET /v1/jobs/{id} for progress and the report)."""
        rag = rag_of(request, name, EDIT)
        request.scope.setdefault("state", {}).setdefault("audit", {})["apply"] = body.apply  # a threshold change
        running = jobs.active(name, "eval")
        if running is not None:
            raise HTTPException(409, f"{name!r} is already being tested ({running.id}, {running.status}); wait for it "
                                     f"or cancel it with DELETE /v1/jobs/{running.id}")

        def work(progress):
            return rag.evaluate(body.questions, apply=body.apply, seed=body.seed,
                                progress=lambda stage, done, total: progress(stage, "", done, total))

        return {"job": jobs.submit(name, work, kind="eval").id}

    @app.get("/v1/knowledge_bases/{name}/eval")
    async def eval_report(name: str, request: Request) -> dict:
        """The knowledge base's last test report."""
        found = last_report(rag_of(request, name).path)
        if found is None:
            raise HTTPException(404, f"{name!r} has not been tested yet (POST /v1/knowledge_bases/{name}/eval)")
        return public.everywhere(found)

    @app.post("/v1/knowledge_bases/{name}/feedback", status_code=201)
    async def feedback(name: str, body: Feedback, request: Request) -> dict:
        """Keep the question, the answer and the verdict as a test case of the knowledge base."""
        rag = rag_of(request, name)
        item = await run_in_threadpool(add_feedback, rag.path, body.question, body.answer, body.verdict, tuple(body.sources))
        return {"id": item.id, "expect": item.expect, "verdict": item.verdict}
