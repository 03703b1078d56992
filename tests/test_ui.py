"""The Streamlit page through Streamlit's AppTest: real index, real embedder, real default LLM (Qwen2.5-Coder-1.5B)."""

import shutil
from pathlib import Path

import pytest

from ragapp.query.prompt import FALLBACK
from ui.markdown import plain_markdown

pytestmark = pytest.mark.integration

APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")


@pytest.fixture(scope="module")
def kb_root(tmp_path_factory, cache_dir):
    """A knowledge-base root whose default index holds the bundled samples; settings via RAGAPP_CONFIG."""
    from conftest import SAMPLES

    from ragapp import RAG
    from ragapp.config import Config

    root = tmp_path_factory.mktemp("kbs")
    shutil.copytree(SAMPLES, root / "samples")
    cfg = root / "ragapp.toml"
    cfg.write_text(f'cache_dir = "{cache_dir}"\n[ui]\nknowledge_root = "{root}"\nmax_upload_mb = 1\n', encoding="utf-8")
    RAG(root / "index", Config.load(cfg)).ingest([root / "samples"])
    return root


@pytest.fixture
def app(kb_root, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("RAGAPP_INDEX", str(kb_root / "index"))
    monkeypatch.setenv("RAGAPP_CONFIG", str(kb_root / "ragapp.toml"))
    at = AppTest.from_file(APP, default_timeout=600)
    at.run()
    assert not at.exception
    return at


def ask(at, question):
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at


def documents_listed(at) -> list[str]:
    frames = at.sidebar.dataframe
    return list(frames[0].value.iloc[:, 0]) if frames else []


def until(at, done, timeout: float = 300):
    """Rerun the page until `done(at)` holds (a background job's result shows on a later run)."""
    import time

    deadline = time.monotonic() + timeout
    while not done(at):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)
        at.run()
        assert not at.exception, at.exception
    return at


def test_answer_streams_with_citations(app):
    ask(app, "How long does Mars take to orbit the Sun?")
    texts = [m.value for m in app.markdown]
    assert any("687" in t for t in texts)
    labels = [e.label for e in app.expander]
    assert labels and labels[0].startswith("[1] solar\\_system\\.md")  # escaped: labels render Markdown
    quote = next(t for t in texts if t.startswith('<div class="ragapp-quote">'))
    assert "<mark>" in quote and "687" in quote.split("<mark>")[1].split("</mark>")[0]  # supporting sentence highlighted
    shown = [c.value for c in app.chat_message[-1].caption if c.value.startswith("confidence ")]
    assert len(shown) == 1 and 0 < int(shown[0].removeprefix("confidence ").rstrip("%")) <= 100
    assert not app.error


def test_an_answer_under_the_confidence_threshold_is_withheld_with_its_draft_one_click_away(kb_root, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    strict = tmp_path / "strict.toml"  # the same knowledge base; every answer under 0.99 is withheld
    strict.write_text((kb_root / "ragapp.toml").read_text(encoding="utf-8") + "[answer]\nmin_confidence = 0.99\n", encoding="utf-8")
    monkeypatch.setenv("RAGAPP_INDEX", str(kb_root / "index"))
    monkeypatch.setenv("RAGAPP_CONFIG", str(strict))
    at = AppTest.from_file(APP, default_timeout=600)
    at.run()
    ask(at, "How long does Mars take to orbit the Sun?")
    assert [i.value for i in at.info] == [FALLBACK["en"]]
    drafts = [e for e in at.chat_message[-1].expander if e.label.startswith("Withheld draft (confidence ")]
    assert len(drafts) == 1 and any("687" in m.value for m in drafts[0].markdown)
    details = [e for e in at.chat_message[-1].expander if e.label == "Details"]
    assert plain_markdown("below the threshold 0.99 ([answer] min_confidence;") in details[0].caption[0].value


def test_unanswerable_question_is_a_calm_notice_with_closest_passages(app):
    ask(app, "What is the population of Lisbon?")
    assert [i.value for i in app.info] == [FALLBACK["en"]]
    assert not app.error
    assert any(e.label.startswith("Closest:") for e in app.expander)


def test_follow_up_question_searches_with_the_previous_turn(app):
    ask(app, "Who discovered Neptune?")
    assert any("Galle" in m.value for m in app.markdown)
    ask(app, "And in which year?")
    assert [c.value for c in app.caption if c.value.startswith("Searched for:")] == \
        ["Searched for: Who discovered Neptune? And in which year?"]
    answer = [m.value for m in app.chat_message[-1].markdown]
    assert any("1846" in t for t in answer)


def test_upload_ingest_list_delete(app):
    note = b"# Kestrel project\n\nThe Kestrel project's budget for 2025 is 4.2 million euros.\n"
    app.sidebar.file_uploader[0].set_value([("kestrel.md", note, "text/markdown"),
                                            ("../../escape.txt", b"outside", "text/plain"),
                                            ("big.txt", b"x " * 600_000, "text/plain"),
                                            ("broken.pdf", b"%PDF-1.4\nnot really a pdf", "application/pdf")])
    app.run()
    app.sidebar.button(key="ingest").click().run()
    assert not app.exception
    until(app, lambda at: any("Indexed:" in m.value for m in at.sidebar.markdown))
    summary = " ".join(m.value for m in app.sidebar.markdown)
    assert "Indexed: 1 added" in summary and "1 failed" in summary, summary  # broken.pdf failed in the ingest
    # Names and reasons are shown escaped (they render as Markdown): compare with what the page renders from.
    assert "not saved " + plain_markdown("../../escape.txt: not an acceptable file name") in summary
    assert plain_markdown("over the upload limit of 1 MB") in summary and plain_markdown("broken.pdf:") in summary
    kb = Path(app.session_state["kb"])
    assert (kb / "documents" / "kestrel.md").exists() and not (kb.parent / "escape.txt").exists()
    assert "kestrel.md" in documents_listed(app)
    # broken.pdf sits in documents/ but not in the index: tried once more by itself, then said so, with a button.
    until(app, lambda at: any("not in the index yet" in w.value and plain_markdown("broken.pdf") in w.value
                              for w in at.sidebar.warning))

    ask(app, "What is the budget of the Kestrel project for 2025?")
    assert any("4.2" in m.value for m in app.markdown)

    app.sidebar.selectbox(key="delete_choice").set_value(str(kb / "documents" / "kestrel.md")).run()
    app.sidebar.button(key="delete").click().run()
    assert not app.exception
    assert "kestrel.md" not in documents_listed(app)
    from ragapp import RAG

    hits = RAG(kb).search("Kestrel project budget", top_k=5)
    assert all(not h.chunk.source.endswith("kestrel.md") for h in hits)
    (kb / "documents" / "broken.pdf").unlink()


def test_a_question_asked_while_an_upload_is_read_waits_for_it_and_loses_nothing(app):
    note = b"The Ostrava depot stores 7,300 spare rail sleepers for the northern line.\n" * 40
    app.sidebar.file_uploader[0].set_value([("depot.md", note, "text/markdown")])
    app.run()
    app.sidebar.button(key="ingest").click().run()
    ask(app, "How many spare rail sleepers does the Ostrava depot store?")  # at once: a rerun while it is read
    assert any("7,300" in m.value or "7300" in m.value for m in app.chat_message[-1].markdown)
    until(app, lambda at: "depot.md" in documents_listed(at))
    kb = Path(app.session_state["kb"])
    from ragapp import RAG

    assert str((kb / "documents" / "depot.md").resolve()) in {d.source for d in RAG(kb).documents()}
    app.sidebar.selectbox(key="delete_choice").set_value(str(kb / "documents" / "depot.md")).run()
    app.sidebar.button(key="delete").click().run()


def test_new_knowledge_base_without_documents_explains_itself(app):
    app.sidebar.text_input(key="kb_new_name").set_value("empty kb").run()
    app.sidebar.button(key="kb_create").click().run()
    assert app.session_state["kb"].endswith("empty kb")
    assert any("no documents yet" in i.value for i in app.info)
    ask(app, "Anything there?")
    assert len(app.error) == 1 and "no index at" in app.error[0].value and "ragapp ingest" in app.error[0].value


@pytest.mark.parametrize("name, expected", [
    ("report.pdf", "report.pdf"), ("../../x.txt", None), ("..\\..\\x.txt", None), ("a/b/c.md", "c.md"),
    (".hidden.md", None), ("..", None), ("名字 with 'quotes'.md", "名字 with 'quotes'.md"), ("bad\x00name.txt", "bad_name.txt"),
])
def test_upload_names_cannot_escape(name, expected, tmp_path):
    from ragapp.knowledge import safe_name, save_upload

    if expected is None:
        with pytest.raises(ValueError):
            save_upload(tmp_path, name, b"text", 1000)
        return
    assert safe_name(name) == expected
    saved = save_upload(tmp_path / "kb", name, b"text", 1000)
    assert saved.parent == tmp_path / "kb" / "documents" and saved.read_bytes() == b"text"


def test_the_page_cannot_send_an_environment_variable_to_a_server_it_names(app, monkeypatch):
    """The settings take a server URL but no key variable: a URL the config does not pair with a key
    gets none (before, any variable, AWS_SECRET_ACCESS_KEY or RAGAPP_UI_PASSWORD, went to any URL typed in)."""
    from helpers.openai_stub import Stub

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    server = Stub(needle="687")
    try:
        app.sidebar.selectbox(key="llm_backend").set_value("openai").run()
        assert "llm_key_env" not in [t.key for t in app.sidebar.text_input]
        app.sidebar.text_input(key="llm_url").set_value(server.url).run()
        ask(app, "How long does Mars take to orbit the Sun?")
        assert server.requests and all(r["auth"] in (None, "Bearer none") for r in server.requests)
        assert any("No API key is sent" in c.value for c in app.sidebar.caption)
    finally:
        server.close()


def test_chat_model_chosen_in_the_settings_answers_and_is_named(app):
    from helpers.openai_stub import Stub

    server = Stub(needle="687")
    try:
        app.sidebar.selectbox(key="llm_backend").set_value("openai").run()
        app.sidebar.text_input(key="llm_url").set_value(server.url).run()
        app.sidebar.text_input(key="llm_model").set_value("glm4").run()
        ask(app, "How long does Mars take to orbit the Sun?")
        assert any("687" in m.value for m in app.markdown)
        assert server.requests and server.requests[-1]["body"]["model"] == "glm4"
        assert any(c.value.startswith(plain_markdown(f"openai: glm4 @ {server.url}") + " · ") for c in app.caption)
    finally:
        server.close()


def test_the_sidebar_shows_a_watched_folder_with_its_state_and_failures(app, kb_root, embedder):
    import time

    from ragapp import RAG, FolderWatcher
    from ragapp.config import Config

    folder = kb_root / "field notes"
    folder.mkdir()
    (folder / "gulls.md").write_text("The lighthouse keeper counted 412 gulls.\n", encoding="utf-8")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really a pdf")
    kb = kb_root / "watched"
    watcher = FolderWatcher(RAG(kb, Config.load(kb_root / "ragapp.toml"), embedder=embedder), [folder])
    watcher.start()
    try:
        deadline = time.monotonic() + 120
        while watcher.status().state != "idle":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        app.run()
        app.sidebar.selectbox(key="kb").set_value(str(kb)).run()
        assert not app.exception
        assert "Watched folders" in [h.value for h in app.sidebar.subheader]
        assert any("field notes" in m.value for m in app.sidebar.markdown)
        caption = " ".join(c.value for c in app.sidebar.caption)
        assert "idle" in caption and "last sync" in caption and "0 change(s) pending" in caption
        assert any(plain_markdown("broken.pdf") in w.value for w in app.sidebar.warning)
    finally:
        watcher.stop()
    app.run()
    assert "stopped" in " ".join(c.value for c in app.sidebar.caption)


def test_a_table_answer_shows_its_query_and_rows(app, kb_root, embedder):
    from helpers.officefiles import SALES_CSV

    from ragapp import RAG
    from ragapp.config import Config

    kb = kb_root / "sheets"
    (kb / "documents").mkdir(parents=True)
    (kb / "documents" / "sales.csv").write_text(SALES_CSV, encoding="utf-8")
    RAG(kb, Config.load(kb_root / "ragapp.toml"), embedder=embedder).ingest([kb / "documents"])
    app.run()
    app.sidebar.selectbox(key="kb").set_value(str(kb)).run()
    ask(app, "How many rows have growth above 5%?")
    assert any(m.value.startswith("The answer is 3,") for m in app.markdown)
    assert [c.value for c in app.code] and app.code[0].value.startswith("SELECT COUNT(*)")
    assert any(c.value.startswith("Query over the table in") and c.value.endswith("rows 2, 4, 8") for c in app.caption)
    assert app.expander[0].label.startswith("[1] sales\\.csv")


def test_verdicts_under_an_answer_and_a_refusal_mean_what_they_say(app, kb_root):
    from ragapp.evaluate import read_set, set_path

    ask(app, "How long does Mars take to orbit the Sun?")
    assert [b.label for b in app.main.button if b.key.startswith("verdict-")] == ["👍 Right", "👎 Wrong", "Should have refused"]
    app.button(key=f"verdict-good-{kb_root / 'index'}-0").click().run()
    assert not app.exception
    assert any(c.value.startswith("Kept as a test case (👍 Right)") for c in app.caption)
    ask(app, "Who won the 2022 FIFA World Cup?")  # refused, rightly
    assert [b.label for b in app.main.button if b.key.startswith("verdict-")] == ["👍 Right to refuse", "👎 It is in the documents"]
    app.button(key=f"verdict-right_refusal-{kb_root / 'index'}-1").click().run()
    ask(app, "What is the population of Lisbon?")
    app.button(key=f"verdict-should_answer-{kb_root / 'index'}-2").click().run()
    items = read_set(set_path(kb_root / "index")).items[-3:]
    assert [(i.question, i.verdict, i.expect) for i in items] == [
        ("How long does Mars take to orbit the Sun?", "good", "answer"),
        ("Who won the 2022 FIFA World Cup?", "right_refusal", "refuse"),  # was kept as "expect: answer" before
        ("What is the population of Lisbon?", "should_answer", "answer")]
    assert "687" in items[0].reference and items[0].source.endswith("solar_system.md") and items[1].reference == ""


def test_the_page_speaks_chinese_and_explains_a_refusal_in_the_questions_language(app):
    app.sidebar.segmented_control(key="ui_language").set_value("zh").run()
    assert not app.exception
    assert app.sidebar.header[0].value == "知识库" and app.chat_input[0].placeholder == "就你的文档提问"
    assert app.sidebar.radio(key="page").options == ["问答", "检查知识库"]
    ask(app, "长城是哪一年建成的火星基地？")
    assert [i.value for i in app.info] == [FALLBACK["zh"]]
    assert any(c.value == "最接近的段落没有提供足够的信息来回答。" for c in app.caption)
    assert any(e.label.startswith("最接近：") for e in app.expander)
    ask(app, "What is the population of Lisbon?")  # an English question on the Chinese page: explained in English
    assert any(c.value == "The closest passages did not say enough to answer." for c in app.chat_message[-1].caption)
    details = [e for e in app.chat_message[-1].expander if e.label == "Details"]
    assert details and "threshold" in details[0].caption[0].value  # the figures, one click away
    every, inside = [c.value for c in app.chat_message[-1].caption], [c.value for c in details[0].caption]
    assert [v for v in every if "threshold" in v] == [v for v in inside if "threshold" in v]  # only under Details


def test_the_check_page_shows_the_scores_with_both_thresholds_and_applies_the_fitted_one(app, kb_root, embedder, echo_generator,
                                                                                       tmp_path):
    import json

    from ragapp import RAG
    from ragapp.config import Config
    from ragapp.evaluate import evaluate
    from ragapp.query.threshold import threshold_path
    from ragapp.text import sentence_spans

    kb = kb_root / "checked"
    rag = RAG(kb, Config.load(kb_root / "ragapp.toml"), embedder=embedder, generator=echo_generator(needle=" "))
    rag.ingest([kb_root / "samples" / "en"])
    # A user's own set: a question about each sentence of the English samples, its first long word the answer.
    rows = []
    for doc in rag.documents():
        text = rag.index().chunk(0).text if doc.source.endswith(".pdf") else Path(doc.source).read_text(encoding="utf-8")
        for a, b in sentence_spans(text):
            words = [w.strip(".,;:()") for w in text[a:b].split() if len(w) > 6]
            if words:
                rows.append({"question": f"What does the text say about {' '.join(text[a:b].split()[:6])}?", "answer": words[0]})
    mine = tmp_path / "mine.jsonl"
    mine.write_text("\n".join(json.dumps(r) for r in rows[:30]), encoding="utf-8")
    report = evaluate(rag, set_path=mine)
    assert report.thresholds["en"]["fitted"] is not None, report.too_small
    app.run()
    app.sidebar.selectbox(key="kb").set_value(str(kb)).run()
    app.sidebar.radio(key="page").set_value("check").run()
    assert not app.exception
    assert app.title[0].value == "Check this knowledge base"
    chart = json.loads(app.get("vega_lite_chart")[0].proto.spec)
    assert [layer["mark"]["type"] for layer in chart["layer"]] == ["bar", "rule"]  # the scores, and a line per threshold
    assert any(c.value.startswith("en: the threshold in force is 0.884 (global") for c in app.caption)
    app.button(key="eval_apply").click().run()
    assert threshold_path(kb).exists()
    assert any(c.value.startswith(f"en: the threshold in force is {report.thresholds['en']['fitted']} (fitted on this knowledge base")
               for c in app.caption)


def test_a_file_saved_but_never_indexed_is_indexed_when_the_page_opens(app, kb_root):
    """What an ingest stopped half way leaves (the app closed while an upload was read): a file in documents/
    that the index does not hold. The page indexes it by itself, once, and lists it (issue 44)."""
    kb = kb_root / "interrupted"
    (kb / "documents").mkdir(parents=True)
    (kb / "documents" / "orphan.md").write_text("The Vilnius archive keeps 412 maps of the old town.\n", encoding="utf-8")
    app.run()
    app.sidebar.selectbox(key="kb").set_value(str(kb)).run()
    until(app, lambda at: "orphan.md" in documents_listed(at))
    assert not any("not in the index yet" in w.value for w in app.sidebar.warning)
