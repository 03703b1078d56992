"""Conversation stage: which questions lean on the previous turn."""

import pytest

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("question, follow_up", [
    ("Who discovered Neptune?", False), ("and who succeeded him?", True), ("What about Venus?", True),
    ("In which year?", True), ("长城的总长度是多少？", False), ("他的继任者是谁？", True), ("那茶呢？", True),
])
def test_follow_up_detection(question, follow_up):
    from ragapp.query.conversation import is_follow_up

    assert is_follow_up(question) is follow_up
