"""ragapp eval: a test set written from a knowledge base, run through the real pipeline (real embedder,
FAISS, BM25, sentence reranker), saved, run again and compared; the threshold fitted and applied.
The question writer and answerer here is a deterministic chat model (FactModel): the packaged one takes
minutes to write a set, and its run is the slow test at the end."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from ragapp import RAG
from ragapp.cli import main
from ragapp.evaluate import MIN_FIT_QUESTIONS, add_feedback, fit_threshold, read_set, set_path
from ragapp.evaluate.scoring import token_f1
from ragapp.evaluate.write import check_written
from ragapp.generate import Generator
from ragapp.query.threshold import FittedThreshold, read_fitted, threshold_path, write_fitted

pytestmark = pytest.mark.integration

SUBJECTS = ["Alder", "Birch", "Cedar", "Dogwood", "Elm", "Fir", "Ginkgo", "Hazel", "Ironwood", "Juniper", "Kapok",
            "Larch", "Maple", "Nutmeg", "Oak", "Pine", "Quince", "Rowan", "Spruce", "Teak", "Upas", "Vine", "Walnut",
            "Yew", "Zelkova", "Acacia", "Baobab", "Cypress", "Date", "Ebony"]
FACTS = [("harbour", "a lighthouse built by {name} Quarry"), ("festival", "the {name} lantern parade held each spring"),
         ("river", "a ferry that carries about {n} passengers a day")]


def write_corpus(folder):
    """Thirty towns, three facts each, one file per town."""
    folder.mkdir()
    for n, name in enumerate(SUBJECTS):
        lines = [f"The {attr} of {name}ville is {value.format(name=name, n=120 + 7 * n)}." for attr, value in FACTS]
        (folder / f"{name.lower()}ville.txt").write_text(f"{name}ville\n\n" + " ".join(lines) + "\n", encoding="utf-8")
    return folder


class FactModel(Generator):
    """Writes "What <attr> does <town> have?" for a fact sentence it is shown; answers a question with the
    passage sentence about that town and attribute, or the fallback sentence. `garbage`: replies nonsense."""

    name = "fact-model"

    def __init__(self, garbage: bool = False) -> None:
        self.garbage = garbage

    def generate(self, messages):
        return "".join(self.stream(messages))

    def stream(self, messages):
        user = messages[-1]["content"]
        if self.garbage:
            yield "lorem ipsum dolor"
            return
        written = re.search(r"Sentence: The (\w+) of (\w+) is (.+)\.", user)
        if written:
            yield f"Question: What {written.group(1)} does {written.group(2)} have?\nAnswer: {written.group(3)}"
            return
        asked = re.search(r"What (\w+) does (\w+) have\?", user)
        if asked:
            found = re.search(rf"The {asked.group(1)} of {asked.group(2)} is [^.]+\.", user)
            if found:
                yield found.group(0)
                return
        yield "I cannot answer from the given information."


@pytest.fixture(scope="module")
def towns(tmp_path_factory, config, embedder):
    root = tmp_path_factory.mktemp("towns")
    rag = RAG(root / "index", config, embedder=embedder, generator=FactModel())
    rag.ingest([write_corpus(root / "docs")])
    return rag


def test_a_written_set_is_run_saved_run_again_and_compared(towns):
    report = towns.evaluate(40, seed=1)
    saved = read_set(set_path(towns.path))
    assert report.questions == {"answerable": 30, "probes": 10, "hidden_run": 40}
    assert len(saved.items) == 40 and len(saved.hidden) == 6  # a fifth of 30 documents hidden for the probes
    probe = next(i for i in saved.items if i.expect == "refuse")
    assert probe.source in saved.hidden and re.fullmatch(r"What \w+ does \w+ have\?", probe.question)
    answerable = [i for i in saved.items if i.expect == "answer"]
    assert all(i.source not in saved.hidden and i.answers[0] in i.sentence for i in answerable)
    figures = report.figures["all"]["fitted"]
    # Every answerable question finds its town's passage first; every probe's town is hidden, so the model refuses.
    assert figures["hit@1"] == 1.0 and figures["probe_refusals"] == 1.0
    assert figures["citations_right"] == 1.0
    scores = [r["best"] for r in report.results if r["expect"] == "answer"]
    assert report.thresholds["en"]["fitted"] == pytest.approx(fit_threshold(scores), abs=1e-4)
    assert figures["false_refusals"] == pytest.approx(sum(s < report.thresholds["en"]["fitted"] for s in scores) / 30, abs=1e-3)
    assert {"all", "language en", "type .txt"} <= set(report.figures)
    again = towns.evaluate(set_path=set_path(towns.path))
    assert again.previous == report.figures["all"]["global"]  # compared with the last run of the same set

    def timeless(figures):
        return {g: {p: {k: v for k, v in f.items() if k != "median_ms"} for p, f in points.items()} for g, points in figures.items()}

    assert timeless(again.figures) == timeless(report.figures)  # the same questions, the same index: the same figures


def test_apply_puts_the_fitted_threshold_in_force_and_says_so(towns, tmp_path):
    before = towns.threshold("en")
    assert before.origin.startswith("global")
    report = towns.evaluate(40, seed=1, apply=True)
    try:
        fitted = report.thresholds["en"]["fitted"]
        assert report.applied and towns.min_score("en") == fitted
        # Every answer the model wrote is right: nothing to recalibrate the confidence on, and it says so.
        assert report.recalibrated["note"].startswith("30 answers written, 20 with right and wrong ones needed")
        assert not (towns.path / "eval" / "confidence.json").exists()
        info = CliRunner().invoke(main, ["info", "--index", str(towns.path), "--json"])
        data = json.loads(info.output)
        assert data["min_score"]["en"] == fitted and "fitted on this knowledge base" in data["min_score_origin"]["en"]
        refused = towns.ask("What volcano does Atlantisville have?")
        assert not refused.answered
        if "below the threshold" in refused.reason:
            assert "fitted on this knowledge base" in refused.reason
        below = towns.ask("What harbour does Alderville have?", min_score=5.0)  # above any score: the notice names its origin
        assert "below the threshold 5.000 (asked for this question)" in below.reason
        # Another embedding model's index ignores it (a threshold is a property of the model's scores).
        assert read_fitted(towns.path, "another-model", "sentence") is None
    finally:
        threshold_path(towns.path).unlink()
    assert towns.threshold("en").origin == before.origin


def test_a_writer_that_writes_garbage_gives_a_report_that_says_the_set_is_too_small(tmp_path, config, embedder):
    rag = RAG(tmp_path / "index", config, embedder=embedder, generator=FactModel(garbage=True))
    rag.ingest([write_corpus(tmp_path / "docs")])
    report = rag.evaluate(20, apply=True)
    assert report.questions["answerable"] == 0 and report.written["dropped"] == {"unreadable": report.written["tries"]}
    assert report.written["tries"] == 60 and report.written["dropped_share"] == 1.0  # 3 tries a question, then it stops
    assert f"0 answerable en questions, {MIN_FIT_QUESTIONS} needed to fit a threshold" in report.too_small
    assert report.thresholds["en"]["fitted"] is None and not report.applied
    assert not threshold_path(rag.path).exists() and rag.threshold("en").origin.startswith("global")


def test_feedback_lands_in_the_set_and_is_run_with_it(towns, tmp_path):
    folder = tmp_path / "kb"
    folder.mkdir()
    add_feedback(folder, "What harbour does Alderville have?", "a lighthouse built by Alder Quarry", "good")
    add_feedback(folder, "What is the capital of Mars?", "Olympus", "should_refuse")
    items = read_set(set_path(folder)).items
    assert [(i.expect, i.verdict, i.origin) for i in items] == [("answer", "good", "feedback"), ("refuse", "should_refuse", "feedback")]
    report = towns.evaluate(set_path=set_path(folder))
    good, refuse = report.results
    assert good["right"] is True and good["answered"]
    assert refuse["expect"] == "refuse" and not refuse["answered"]


@pytest.mark.unit
def test_the_writer_rules_drop_what_a_model_botched():
    sentence = "The harbour of Alderville is a lighthouse built by Alder Quarry."
    assert check_written("Question: What harbour does Alderville have?\nAnswer: a lighthouse", sentence, "en", set())[2] == ""
    assert check_written("What harbour?", sentence, "en", set())[2] == "unreadable"
    assert check_written("问题：奥尔德维尔有什么港口？\n答案：lighthouse", sentence, "en", set())[2] == "wrong language"
    assert check_written("Question: Harbour?\nAnswer: a lighthouse", sentence, "en", set())[2] == "not a question"
    assert check_written("Question: What does Alderville have?\nAnswer: a castle", sentence, "en", set())[2] == "answer not in its sentence"
    assert check_written("Question: Is a lighthouse in Alderville?\nAnswer: a lighthouse", sentence, "en", set())[2] == \
        "answer in the question"
    assert check_written("Question: The harbour of Alderville is a lighthouse built by whom?\nAnswer: Alder Quarry", sentence,
                         "en", set())[2] == "copy of the sentence"
    seen: set[str] = set()
    check_written("Question: What harbour does Alderville have?\nAnswer: a lighthouse", sentence, "en", seen)
    assert check_written("Question: What harbour does Alderville have?\nAnswer: a lighthouse", sentence, "en", seen)[2] == "duplicate"
    assert check_written("Question: What harbour does the Eiffel Tower have?\nAnswer: a lighthouse", sentence, "en", set(),
                         passage=sentence)[2] == "copied the example"


@pytest.mark.unit
def test_a_set_line_that_is_not_a_test_item_is_named_and_a_threshold_file_that_is_not_ragapp_s_is_ignored(tmp_path):
    bad = tmp_path / "mine.jsonl"
    bad.write_text('{"question": "What is ragapp?", "answer": "a local RAG app"}\n{"question": 3}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"mine\.jsonl, line 2: not an object with a 'question' string"):
        read_set(bad)
    bad.write_text('{"question": "Q?", "expect": "maybe"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: expect must be 'answer' or 'refuse'"):
        read_set(bad)
    threshold_path(tmp_path).parent.mkdir(exist_ok=True)
    for text in ("not json", '{"values": {"en": "x"}}', '{"values": {"en": NaN}, "embedding_model": "m", "reranker": "sentence", '
                 '"fitted_at": 0}'):
        threshold_path(tmp_path).write_text(text, encoding="utf-8")
        assert read_fitted(tmp_path, "m", "sentence") is None
    write_fitted(tmp_path, FittedThreshold(values={"en": 0.9}, embedding_model="m", reranker="sentence", fitted_at=0))
    assert read_fitted(tmp_path, "m", "sentence").values == {"en": 0.9}
    assert token_f1("built in 1875", ["1875"]) == pytest.approx(0.5) and token_f1("长城很长", ["长城"]) == pytest.approx(2 / 3)


@pytest.mark.slow
def test_ragapp_eval_with_the_packaged_model_writes_runs_and_compares(tmp_path, docs):
    """The command a user runs: the packaged chat model writes the questions and answers them."""
    index = tmp_path / "index"
    run = [sys.executable, "-c", "from ragapp.cli import main; main()"]
    subprocess.run(run + ["ingest", str(docs), "--index", str(index)], check=True, capture_output=True)
    first = json.loads(subprocess.run(run + ["eval", "--index", str(index), "--questions", "8", "--json"],
                                      check=True, capture_output=True, text=True).stdout)
    from ragapp.config import Config
    from ragapp.evaluate.write import best_writer
    from ragapp.models.names import QWEN15_NAME, QWEN_NAME, parts_installed

    # The default (1.5B) writes and answers; a 0.5B answerer gets the 1.5B as its writer (the 0.5B botches more).
    assert first["writer"] == first["answerer"] == "llama-cpp: " + QWEN15_NAME
    assert first["written"]["tries"] >= first["written"]["kept"]
    assert parts_installed(QWEN15_NAME)
    small = RAG(index, Config.load(None, generate__model=QWEN_NAME))
    assert best_writer(small.generator, small.config).name == QWEN15_NAME
    assert len(first["results"]) == first["written"]["kept"] == len(read_set(set_path(index)).items)
    assert "20 needed to fit a threshold" in first["too_small"]  # 8 questions never fit a threshold
    again = subprocess.run(run + ["eval", "--index", str(index), "--set", str(set_path(index)), "--compare"],
                           check=True, capture_output=True, text=True).stdout
    assert "compared with the last run" in again and "hit@5:" in again


@pytest.mark.unit
def test_feedback_is_bounded_appended_and_never_makes_a_set_its_reader_refuses(tmp_path, monkeypatch):
    from ragapp.evaluate import testset
    from ragapp.evaluate.testset import MAX_FIELD_CHARS

    folder = tmp_path / "kb"
    for n in range(20):  # a 1 MB source and answer each time: 20.8 MB and a broken eval before (issue 43)
        add_feedback(folder, f"Question {n}?", "a" * 1_000_000, "bad", ("s" * 1_000_000,))
    path = set_path(folder)
    assert path.stat().st_size < 20 * 3 * MAX_FIELD_CHARS
    items = read_set(path).items
    assert [i.question for i in items] == [f"Question {n}?" for n in range(20)]
    assert all(len(i.source) == len(i.reference) == MAX_FIELD_CHARS for i in items)

    lines = path.read_text(encoding="utf-8").splitlines()
    add_feedback(folder, "One more?", "", "good")
    assert path.read_text(encoding="utf-8").splitlines()[:-1] == lines  # appended, the rest untouched

    monkeypatch.setattr(testset, "MAX_FEEDBACK", 10)
    add_feedback(folder, "The newest?", "", "should_refuse")
    kept = [i.question for i in read_set(path).items]
    assert kept == [f"Question {n}?" for n in range(12, 20)] + ["One more?", "The newest?"]  # the oldest went

    with pytest.raises(ValueError, match="'source' may have at most"):
        testset.TestItem(question="Q?", source="x" * (MAX_FIELD_CHARS + 1))


@pytest.mark.unit
def test_a_written_item_that_is_not_a_question_is_dropped():
    """Issue 44: a "question" that was a copied sentence under a Markdown heading reached the test set."""
    sentence = "The harbour of Alderville is a lighthouse built by Alder Quarry in 1874."
    for reply in ("Question: # Alderville harbour The harbour of Alderville is a lighthouse\nAnswer: Alder Quarry",
                  "Question: The harbour of Alderville was built in a year.\nAnswer: 1874",
                  "Question: **Alderville** harbour built by whom?\nAnswer: Alder Quarry"):
        assert check_written(reply, sentence, "en", set())[2] == "not a question", reply
    assert check_written("Question: Who built the lighthouse of Alderville?\nAnswer: Alder Quarry", sentence, "en", set())[2] == ""
    assert check_written("Question: In which year was the Alderville lighthouse built\nAnswer: 1874", sentence, "en", set())[2] == ""
    zh = "奥尔德维尔的灯塔由奥尔德采石场于1874年建成。"
    assert check_written("问题：## 奥尔德维尔灯塔 奥尔德维尔的灯塔建成\n答案：1874年", zh, "zh", set())[2] == "not a question"
    assert check_written("问题：奥尔德维尔的灯塔是哪一年建成的？\n答案：1874年", zh, "zh", set())[2] == ""
