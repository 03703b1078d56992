"""A Streamlit page that renders one hostile answer with ui.app's own render_answer: the answer text,
the cited document's name and text try to load a remote image and show live links (to PIXEL_URL)."""

import os
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ragapp.records import Answer, Chunk, Citation, Hit  # noqa: E402
from ui.app import render_answer  # noqa: E402

url = os.environ["PIXEL_URL"]
text = (f"ANSWER-START The keeper was Ada. ![pixel]({url}/answer.png) [click me]({url}/answer-link) "
        f"<img src=\"{url}/answer-html.png\"> visit {url}/bare or www.example.com or mail keeper@example.com ANSWER-END")
body = f"The keeper was Ada. ![doc]({url}/doc.png) [doc link]({url}/doc-link)"
name = f"notes ![n]({url.replace('/', '%2F')}n.png) [n](javascript:alert(1)).md"
chunk = Chunk("c1", body, "/docs/" + name, 2, 0, len(body), ((0, 19), (20, len(body))))
citation = Citation("/docs/" + name, 2, 0, 19, 0.9, "c1", body[:19], body, (0, 19))
answer = Answer(text, True, "en", [citation], [Hit(chunk, 0.9)], query=f"who ![q]({url}/query.png)")
render_answer("who was the keeper?", answer, show_scores=False)
st.caption("PAGE-RENDERED")
