"""`ragapp serve`: a real uvicorn server on 127.0.0.1, the official openai client for chat and models,
httpx for the knowledge-base endpoints, the real embedder and the packaged chat model."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import SAMPLES
from helpers.api_server import ApiServer, no_server_paths, upload, wait_for_job

pytestmark = pytest.mark.integration

KEY = "test-key-7f3a-0c91d2e4"
FALLBACK = "I cannot answer from the given information."


@pytest.fixture(scope="module")
def api(tmp_path_factory, cache_dir):
    root = tmp_path_factory.mktemp("kbs")
    server = ApiServer(root, KEY, root.parent / "serve.log", cache_dir)
    client = httpx.Client(base_url=server.url, headers=server.headers, timeout=300,
                          event_hooks={"response": [no_server_paths(root)]})
    assert client.post("/v1/knowledge_bases", json={"name": "notes"}).status_code == 201
    state = upload(client, "notes", sorted(p for p in SAMPLES.rglob("*") if p.is_file()))
    assert state["status"] == "done" and state["report"]["failed"] == [], state
    yield server, client
    client.close()
    server.stop()


@pytest.fixture(scope="module")
def openai_client(api):
    import openai

    server, _ = api
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=300)


def test_models_are_knowledge_bases_and_documents_are_listed(api, openai_client):
    _, client = api
    assert "notes" in [m.id for m in openai_client.models.list().data]
    names = sorted(d["source"] for d in client.get("/v1/knowledge_bases/notes/documents").json()["data"])
    assert names == sorted(p.name for p in SAMPLES.rglob("*") if p.is_file())


def test_chat_answer_carries_citations(openai_client):
    reply = openai_client.chat.completions.create(model="notes", messages=[{"role": "user", "content": "Who discovered Neptune?"}])
    assert "Galle" in reply.choices[0].message.content and reply.model_extra["answered"] is True
    assert 0.0 < reply.model_extra["confidence"] <= 1.0 and reply.model_extra["draft"] == ""
    citation = reply.model_extra["citations"][0]
    assert citation["source"].endswith("solar_system.md") and "Galle" in citation["quote"]
    assert {"page", "start", "end", "score"} <= set(citation)


def test_a_pdf_citation_carries_its_boxes_and_its_page_is_drawn_with_them(api, openai_client):
    from helpers.boxes import highlight_share

    _, client = api
    reply = openai_client.chat.completions.create(model="notes", messages=[{"role": "user", "content": "Where does the Calvin cycle take place?"}])
    cited = [c for c in reply.model_extra["citations"] if c["source"].endswith("photosynthesis.pdf")]
    assert cited and cited[0]["page"] == 2 and cited[0]["boxes"], reply.model_extra["citations"]
    c, box = cited[0], cited[0]["boxes"][0]
    assert c["page_image"] == f"/v1/knowledge_bases/notes/documents/photosynthesis.pdf/pages/2.png?highlight={c['start']}-{c['end']}"
    page = client.get(c["page_image"] + "&width=700")
    assert page.status_code == 200 and page.headers["content-type"] == "image/png" and "x-ragapp-notice" not in page.headers
    assert highlight_share(page.content, (box["x0"], box["y0"], box["x1"], box["y1"])) > 0.4
    hit = client.post("/v1/search", json={"knowledge_base": "notes", "query": "Which enzyme fixes carbon dioxide?",
                                          "top_k": 1}).json()["data"][0]
    assert hit["source"] == "photosynthesis.pdf" and hit["boxes"] and "/pages/2.png?highlight=" in hit["page_image"]
    assert client.get("/v1/knowledge_bases/notes/documents/photosynthesis.pdf/pages/2.png?highlight=9-x").status_code == 400
    assert client.get("/v1/knowledge_bases/notes/documents/solar_system.md/pages/1.png").status_code == 404
    assert client.get("/v1/knowledge_bases/notes/documents/..%2F..%2Fetc%2Fpasswd/pages/1.png").status_code == 404


def test_chat_streams_like_openai_and_ends_with_citations(openai_client):
    stream = openai_client.chat.completions.create(model="notes", stream=True,
                                                   messages=[{"role": "user", "content": "长城的总长度是多少？"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "21196.18" in text and len(chunks) >= 3
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop" and last.model_extra["answered"] is True
    assert last.model_extra["citations"][0]["source"].endswith("长城.txt") and 0.0 < last.model_extra["confidence"] <= 1.0


def test_refusal_is_the_exact_fallback(openai_client):
    reply = openai_client.chat.completions.create(model="notes", messages=[
        {"role": "user", "content": "What is the boiling point of liquid nitrogen at sea level?"}])
    assert reply.choices[0].message.content == FALLBACK and reply.model_extra["answered"] is False
    assert reply.model_extra["citations"] == []


def test_earlier_turns_are_the_history_of_a_follow_up(openai_client):
    reply = openai_client.chat.completions.create(model="notes", messages=[
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "Who discovered Neptune?"},
        {"role": "assistant", "content": "Johann Galle discovered Neptune."},
        {"role": "user", "content": "And in which year?"}])
    assert "1846" in reply.choices[0].message.content and reply.model_extra["answered"] is True


def test_search_upload_delete_and_gone(api, tmp_path):
    _, client = api
    note = tmp_path / "otters.md"
    note.write_text("Sea otters hold hands while they sleep so they do not drift apart.\n", encoding="utf-8")
    assert upload(client, "notes", [note])["report"]["added"]
    hits = client.post("/v1/search", json={"knowledge_base": "notes", "query": "Why do otters hold hands?", "top_k": 3}).json()["data"]
    assert hits[0]["source"].endswith("otters.md") and "rerank_score" in hits[0]
    assert client.delete("/v1/knowledge_bases/notes/documents/otters.md").json() == {"deleted": "otters.md"}
    hits = client.post("/v1/search", json={"knowledge_base": "notes", "query": "Why do otters hold hands?", "top_k": 3}).json()["data"]
    assert not any(h["source"].endswith("otters.md") for h in hits)


def test_feedback_lands_in_the_test_set_and_an_eval_job_runs_it(api):
    """The chat app's verdict buttons through HTTP, then `ragapp eval` as a job with the packaged model."""
    _, client = api
    kept = client.post("/v1/knowledge_bases/notes/feedback", json={
        "question": "What is the capital of Mars?", "answer": "Olympus Mons", "verdict": "should_refuse"})
    assert kept.status_code == 201 and kept.json()["expect"] == "refuse"
    assert client.post("/v1/knowledge_bases/notes/feedback", json={"question": "Q?", "verdict": "great"}).status_code == 422
    assert client.get("/v1/knowledge_bases/nowhere/eval").status_code == 404
    job = client.post("/v1/knowledge_bases/notes/eval", json={"questions": 4, "seed": 3})
    assert job.status_code == 202
    state = wait_for_job(client, job.json()["job"])
    assert state["status"] == "done" and state["kind"] == "eval", state
    report = state["report"]
    mine = [r for r in report["results"] if r["question"] == "What is the capital of Mars?"]
    assert mine and mine[0]["expect"] == "refuse" and mine[0]["origin"] == "feedback"  # run with the written ones
    assert report["writer"].startswith("llama-cpp") and report["set_path"] == "notes/eval/testset.jsonl"
    assert "too_small" in report and report["figures"]["all"]["global"]["probes"] >= 1
    assert client.get("/v1/knowledge_bases/notes/eval").json()["results"] == report["results"]


def test_office_upload_is_searchable_with_its_slide(api, tmp_path):
    from helpers.officefiles import write_pptx

    _, client = api
    deck = write_pptx(tmp_path / "review.pptx")
    assert upload(client, "notes", [deck])["report"]["added"]
    hits = client.post("/v1/search", json={"knowledge_base": "notes", "query": "Where does the Hangzhou warehouse move?",
                                           "top_k": 3}).json()["data"]
    assert hits[0]["source"].endswith("review.pptx") and hits[0]["page"] == 2 and hits[0]["place"] == "slide 2"
    assert client.delete("/v1/knowledge_bases/notes/documents/review.pptx").json() == {"deleted": "review.pptx"}


def test_a_table_question_is_answered_by_a_query_shown_in_the_reply(api, openai_client, tmp_path):
    from helpers.officefiles import SALES_CSV

    _, client = api
    sheet = tmp_path / "sales.csv"
    sheet.write_text(SALES_CSV, encoding="utf-8")
    assert upload(client, "notes", [sheet])["report"]["added"]
    reply = openai_client.chat.completions.create(model="notes", messages=[
        {"role": "user", "content": "How many rows have growth above 5%?"}])
    query = reply.model_extra["table_query"]
    assert reply.choices[0].message.content.startswith("The answer is 3,") and query["source"] == "sales.csv"
    assert query["sql"].startswith("SELECT COUNT(*)") and query["rows"] == [2, 4, 8]
    assert reply.model_extra["citations"][0]["quote"].startswith("row 2: Quarter: 2023 Q1")
    assert client.delete("/v1/knowledge_bases/notes/documents/sales.csv").json() == {"deleted": "sales.csv"}


def test_bad_input_gets_one_json_error_shape(api):
    server, client = api
    anonymous = httpx.Client(base_url=server.url, timeout=30)
    cases = [
        (anonymous.get("/v1/models"), 401),
        (anonymous.get("/v1/models", headers={"Authorization": "Bearer wrong"}), 401),
        (client.post("/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"}), 422),
        (client.post("/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]}), 404),
        (client.post("/v1/chat/completions", json={"model": "../notes", "messages": [{"role": "user", "content": "hi"}]}), 404),
        (client.post("/v1/chat/completions", json={"model": "notes", "messages": [{"role": "user", "content": "x" * 100_000}]}), 413),
        (client.post("/v1/search", json={"knowledge_base": "notes", "query": "q" * 2_000_000}), 413),
        (client.post("/v1/search", content=(b"x" * 65536 for _ in range(32)),  # chunked: no Content-Length
                     headers={"Content-Type": "application/json"}), 413),
        (client.post("/v1/knowledge_bases/notes/documents", files=[("files", ("tool.exe", b"MZ", "application/octet-stream"))]), 400),
        (client.post("/v1/knowledge_bases", json={"name": "../escape"}), 400),
        (client.get("/v1/jobs/job-999"), 404),
        (client.delete("/v1/knowledge_bases/notes/documents/.env"), 404),
        (client.delete("/v1/knowledge_bases/notes/documents/..%2F..%2Fserve.log"), 404),
    ]
    for response, status in cases:
        assert response.status_code == status, (response.request.url, response.text)
        body = response.json()
        assert set(body["error"]) == {"message", "type", "code"} and body["error"]["code"] == status
    assert not (server.root / "escape").exists() and not (server.root.parent / "escape").exists()
    anonymous.close()


def test_a_key_does_not_let_a_foreign_host_or_page_in(api):
    """With keys too: a request sent to another Host name, or from another site's page, is refused."""
    server, client = api
    search = {"knowledge_base": "notes", "query": "Who discovered Neptune?"}
    assert client.post("/v1/search", json=search).status_code == 200
    for headers in ({"Host": f"rebind.attacker.example:{server.port}"}, {"Origin": "http://evil.example"}):
        assert client.post("/v1/search", json=search, headers=headers).status_code == 403
        assert client.delete("/v1/knowledge_bases/notes/documents/solar_system.md", headers=headers).status_code == 403
        r = client.post("/v1/knowledge_bases/notes/documents", headers=headers, files=[("files", ("x.md", b"x"))])
        assert r.status_code == 403
    assert "solar_system.md" in [d["source"] for d in client.get("/v1/knowledge_bases/notes/documents").json()["data"]]


def test_non_loopback_without_keys_refuses_to_start(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ragapp.cli", "serve", "--host", "0.0.0.0", "--knowledge-root", str(tmp_path)],
                       capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert r.returncode != 0 and "set API keys in RAGAPP_API_KEYS" in r.stderr and "Traceback" not in r.stderr


def test_ragapp_ask_through_the_server(api):
    server, _ = api
    r = subprocess.run([sys.executable, "-m", "ragapp.cli", "ask", "Who discovered Neptune?", "--server", server.url,
                        "--index", str(server.root / "notes")], capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "RAGAPP_API_KEYS": KEY})
    assert r.returncode == 0, r.stderr
    assert "Galle" in r.stdout and "Sources:" in r.stdout and "solar_system.md" in r.stdout
    confidence = float(r.stdout.split("Confidence: ")[1].split()[0])
    assert 0.0 < confidence <= 1.0


def test_clients_at_once_while_an_ingest_runs(api, tmp_path):
    """8 client threads, 24 requests (asks and searches) while an ingest job runs: no errors, no lost
    documents; bounded in count, and each request in time."""
    server, client = api
    before = {d["source"] for d in client.get("/v1/knowledge_bases/notes/documents").json()["data"]}
    extra = tmp_path / "kelp.md"
    extra.write_text("Kelp forests shelter sea otters and hundreds of fish species.\n" * 40, encoding="utf-8")
    files = [("files", (extra.name, extra.read_bytes(), "text/markdown"))]
    job = client.post("/v1/knowledge_bases/notes/documents", files=files).json()["job"]
    questions = ["Who discovered Neptune?", "西湖龙井属于哪一类茶？", "How long does Mars take to orbit the Sun?"]
    errors, latencies = [], []

    def worker(n: int) -> None:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=300) as c:
            for i in range(3):
                q = questions[(n + i) % 3]
                t0 = time.perf_counter()
                if (n + i) % 2:
                    r = c.post("/v1/search", json={"knowledge_base": "notes", "query": q, "top_k": 3})
                else:
                    r = c.post("/v1/chat/completions", json={"model": "notes", "messages": [{"role": "user", "content": q}]})
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors.append(r.text)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert wait_for_job(client, job)["status"] == "done"
    after = {d["source"] for d in client.get("/v1/knowledge_bases/notes/documents").json()["data"]}
    assert not errors and len(latencies) == 24 and before <= after and any(s.endswith("kelp.md") for s in after)
    print(json.dumps({"requests": 24, "errors": 0, "p50_s": sorted(latencies)[12], "max_s": max(latencies)}))


@pytest.mark.slow
def test_load_then_kill_9_during_an_ingest_job(tmp_path, cache_dir):
    """8 client threads ask 100 questions in all while an ingest job runs: 0 errors, 0 lost documents.
    Then the server is killed with SIGKILL in the middle of another ingest job: restarted, its index is
    the old or the new one, and it answers."""
    root = tmp_path / "kbs"
    root.mkdir()
    server = ApiServer(root, KEY, tmp_path / "serve.log", cache_dir)
    client = httpx.Client(base_url=server.url, headers=server.headers, timeout=600)
    client.post("/v1/knowledge_bases", json={"name": "load"}).raise_for_status()
    assert upload(client, "load", sorted(p for p in SAMPLES.rglob("*") if p.is_file()))["status"] == "done"
    big = tmp_path / "ledger.md"
    big.write_text("".join(f"Shipment {i} carried {i % 97} crates of copper wire to the harbour.\n" for i in range(3000)))
    job = client.post("/v1/knowledge_bases/load/documents", files=[("files", (big.name, big.read_bytes()))]).json()["job"]
    questions = ["Who discovered Neptune?", "长城的总长度是多少？", "Which planet is the hottest?", "西湖龙井属于哪一类茶？"]
    latencies, errors, counter, lock = [], [], iter(range(100)), threading.Lock()

    def worker() -> None:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=600) as c:
            while (n := next(counter, None)) is not None:
                t0 = time.perf_counter()
                r = c.post("/v1/chat/completions", json={"model": "load", "messages": [{"role": "user", "content": questions[n % 4]}]})
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    if r.status_code != 200 or not r.json()["choices"][0]["message"]["content"]:
                        errors.append(r.text)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=1800)
    assert wait_for_job(client, job)["status"] == "done"
    latencies.sort()
    print(json.dumps({"questions": len(latencies), "errors": len(errors), "p50_s": round(latencies[49], 2),
                      "p95_s": round(latencies[94], 2)}))
    assert not errors and len(latencies) == 100
    before = {d["source"] for d in client.get("/v1/knowledge_bases/load/documents").json()["data"]}

    more = tmp_path / "kelp.md"
    more.write_text("".join(f"Kelp bed {i} shelters {i % 13} sea otters.\n" for i in range(3000)))
    job = client.post("/v1/knowledge_bases/load/documents", files=[("files", (more.name, more.read_bytes()))]).json()["job"]
    while client.get(f"/v1/jobs/{job}").json()["status"] != "running":
        time.sleep(0.2)
    time.sleep(3)
    client.close()
    server.stop(hard=True)
    server = ApiServer(root, KEY, tmp_path / "serve2.log", cache_dir)
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=600) as c:
        after = {d["source"] for d in c.get("/v1/knowledge_bases/load/documents").json()["data"]}
        assert after in (before, before | {"kelp.md"})
        hits = c.post("/v1/search", json={"knowledge_base": "load", "query": "Who discovered Neptune?"}).json()["data"]
        assert hits[0]["source"].endswith("solar_system.md")
    server.stop()


def test_oversized_feedback_is_refused_and_the_test_set_stays_readable(api):
    from ragapp.evaluate import read_set, set_path

    server, client = api
    for _ in range(20):  # 20 of these made the set 20.8 MB and every later feedback and eval fail (issue 43)
        r = client.post("/v1/knowledge_bases/notes/feedback", json={
            "question": "Why do otters hold hands?", "answer": "x", "verdict": "bad", "sources": ["s" * 1_000_000]})
        assert r.status_code in (413, 422), r.text
    r = client.post("/v1/knowledge_bases/notes/feedback", json={
        "question": "Why do otters hold hands?", "answer": "x" * 19_000, "verdict": "bad", "sources": ["otters.md"]})
    assert r.status_code == 201, r.text
    path = set_path(server.root / "notes")
    assert path.stat().st_size < 100_000
    assert [i for i in read_set(path).items if i.reference == "x" * 2000 and i.source == "otters.md"]


def test_one_eval_per_knowledge_base_cancel_and_an_upload_is_not_kept_waiting(api, tmp_path):
    server, client = api
    first = client.post("/v1/knowledge_bases/notes/eval", json={"questions": 2000})
    assert first.status_code == 202
    job = first.json()["job"]
    for _ in range(10):  # 100 of these were all queued before (issue 43)
        r = client.post("/v1/knowledge_bases/notes/eval", json={"questions": 2000})
        assert r.status_code == 409 and job in r.json()["error"]["message"]
    note = tmp_path / "monterey.md"
    note.write_text("Kelp forests shelter sea otters along the coast of Monterey.\n", encoding="utf-8")
    uploaded = client.post("/v1/knowledge_bases/notes/documents", files=[("files", (note.name, note.read_bytes()))])
    assert uploaded.status_code == 202, uploaded.text
    upload_job = uploaded.json()["job"]
    r = client.delete(f"/v1/jobs/{upload_job}")
    assert r.status_code == 409 and "runs to its end" in r.json()["error"]["message"]
    assert client.delete(f"/v1/jobs/{job}").json() == {"id": job, "cancelled": True}
    started = time.monotonic()
    assert wait_for_job(client, upload_job, timeout=120)["status"] == "done"  # not behind 2,000 questions
    assert client.get(f"/v1/jobs/{job}").json()["status"] == "cancelled" and time.monotonic() - started < 120
    assert client.delete(f"/v1/jobs/{job}").status_code == 409  # already cancelled
    assert client.delete("/v1/jobs/job-99999").status_code == 404
    again = client.post("/v1/knowledge_bases/notes/eval", json={"questions": 2000})
    assert again.status_code == 202 and client.delete(f"/v1/jobs/{again.json()['job']}").status_code == 200
    assert client.delete(f"/v1/knowledge_bases/notes/documents/{note.name}").status_code == 200


def test_serve_index_serves_the_index_the_user_built_and_usage_is_filled(tmp_path, cache_dir, config, embedder):
    """The README's index, served as it is (`ragapp serve --index DIR`): listed as a model named after its folder,
    answering with `usage` filled; a model name that is no knowledge base says where they come from (issue 44)."""
    import openai

    from ragapp import RAG

    index = tmp_path / "data" / "index"
    RAG(index, config, embedder=embedder).ingest([SAMPLES])
    (tmp_path / "data" / "other").mkdir()  # beside it: never listed
    log = tmp_path / "serve.log"
    server = ApiServer(tmp_path / "data", KEY, log, cache_dir, index=index)
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=300)
        assert [m.id for m in client.models.list().data] == ["index"]
        reply = client.chat.completions.create(model="index", messages=[{"role": "user",
                                                                         "content": "How long does Mars take to orbit the Sun?"}])
        assert "687" in reply.choices[0].message.content
        assert reply.usage.prompt_tokens > 50 and 0 < reply.usage.completion_tokens < 100
        assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
        refused = client.chat.completions.create(model="index", messages=[{"role": "user", "content": "Who won the 2022 World Cup?"}])
        assert refused.usage.total_tokens == 0  # refused before the chat model was asked
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(model="notes", messages=[{"role": "user", "content": "x"}])
        assert "serves one index, 'index' (--index)" in str(missing.value)
        with httpx.Client(base_url=server.url, headers=server.headers) as http:
            assert http.post("/v1/knowledge_bases", json={"name": "more"}).status_code == 400
    finally:
        server.stop()
    assert "knowledge bases (the model names): index" in log.read_text()


def test_serve_over_an_empty_root_says_how_to_fix_it(tmp_path, cache_dir):
    import openai

    log = tmp_path / "serve.log"
    server = ApiServer(tmp_path / "kbs", KEY, log, cache_dir)
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(model="index", messages=[{"role": "user", "content": "x"}])
        assert "knowledge bases are the index folders directly under" in str(missing.value) and "none yet" in str(missing.value)
    finally:
        server.stop()
    started = log.read_text()
    assert "no knowledge base under" in started and "ragapp serve --index DIR" in started and "ragapp ingest FOLDER --index" in started
    bad = subprocess.run([sys.executable, "-m", "ragapp.cli", "serve", "--index", str(tmp_path)], capture_output=True, text=True,
                         env={**__import__("os").environ, "RAGAPP_CACHE": cache_dir}, timeout=120)
    assert bad.returncode == 2 and "is not a ragapp index" in bad.stderr and "Traceback" not in bad.stderr
