"""How the run page shows payloads and outputs: pretty JSON, cut when long."""

from __future__ import annotations

import json

from durakube.dashboard import reading


def test_a_small_value_is_shown_whole_and_pretty() -> None:
    shown = reading.JsonValue.of({"month": "2026-10", "żółć": [1, 2]})
    assert not shown.truncated
    assert shown.text == json.dumps({"month": "2026-10", "żółć": [1, 2]}, indent=2,
                                    ensure_ascii=False)


def test_a_large_value_is_cut_and_says_how_large_it_was() -> None:
    value = {"rows": ["x" * 100] * 1000}
    whole = json.dumps(value, indent=2)
    shown = reading.JsonValue.of(value)
    assert shown.truncated and shown.size == len(whole)
    assert shown.text == whole[:reading.SHOWN_JSON_CHARS] + "\n…"


def test_tokens_in_step_results_are_cut_to_their_first_characters() -> None:
    token = "wpt_" + "A1b2C3d4E5f6G7h8I9j0K1l2"
    assert reading.hide_tokens(token) == "wpt_A1…"
    assert reading.hide_tokens({"tokens": [token, "wpt_short"], "n": 1}) == {
        "tokens": ["wpt_A1…", "wpt_short"], "n": 1}
