"""`ragapp ask --server`: a question to a running `ragapp serve` through the OpenAI client, streamed,
with the citations the last chunk carries."""

from __future__ import annotations

import json

import click

from ragapp.errors import ModelServerError


def ask_server(url: str, knowledge_base: str, question: str, top_k: int | None, key: str, as_json: bool) -> None:
    """Print the answer as it streams, then its sources (or the whole answer as JSON)."""
    import openai

    from ragapp.display import print_confidence, print_sources

    client = openai.OpenAI(base_url=url.rstrip("/") + "/v1", api_key=key or "none", max_retries=0, timeout=600)
    extra = {"top_k": top_k} if top_k else {}
    try:
        stream = client.chat.completions.create(model=knowledge_base, stream=True, extra_body=extra,
                                                messages=[{"role": "user", "content": question}])
        text, final = [], {}
        for chunk in stream:
            extra_fields = chunk.model_extra or {}
            if "error" in extra_fields:
                raise ModelServerError(f"{url}: {extra_fields['error'].get('message')}")
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
                if not as_json:
                    click.echo(chunk.choices[0].delta.content, nl=False)
            if "citations" in extra_fields:
                final = extra_fields
    except openai.APIStatusError as exc:
        raise ModelServerError(f"{url} answered {exc.status_code}: {_message(exc)}") from exc
    except openai.APIConnectionError as exc:
        raise ModelServerError(f"nothing answers at {url} ({exc}); start it with: ragapp serve") from exc
    if as_json:
        click.echo(json.dumps({"answer": "".join(text), "answered": final.get("answered"), "confidence": final.get("confidence"),
                               "draft": final.get("draft", ""), "citations": final.get("citations", []), "table_query": final.get("table_query")},
                              ensure_ascii=False, indent=1))
        return
    click.echo()
    print_confidence(final.get("answered"), final.get("confidence"), final.get("draft", ""))
    print_sources(final.get("citations", []), final.get("table_query"))


def _message(exc) -> str:
    try:
        return exc.response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return exc.message
