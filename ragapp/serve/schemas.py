"""Request bodies of the HTTP API (responses are plain JSON built from ragapp's typed results)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ChatMessage(BaseModel):
    """One message in the OpenAI chat schema (text content)."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict] | None = None

    def text(self) -> str:
        """The message's text (the text parts of a multi-part content)."""
        if isinstance(self.content, list):
            return "".join(part.get("text", "") for part in self.content if isinstance(part, dict))
        return self.content or ""


class ChatRequest(BaseModel):
    """POST /v1/chat/completions: `model` names a knowledge base; the last user message is the question."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    top_k: int | None = Field(default=None, ge=1, le=100)
    # On a shared server the answer is kept in the caller's conversation of this id (a new one when
    # absent); the reply names it.
    conversation: str | None = Field(default=None, max_length=64)


class SearchRequest(BaseModel):
    """POST /v1/search: ranked passages, no LLM."""

    knowledge_base: str
    query: str
    top_k: int = Field(default=10, ge=1, le=100)


class CreateKnowledgeBase(BaseModel):
    """POST /v1/knowledge_bases."""

    name: str
