from __future__ import annotations

import pytest

from tools import InputLimits, ToolInputError, prepare_lines


def test_blank_input_is_refused_with_a_message_that_says_what_to_send() -> None:
    with pytest.raises(ToolInputError, match="empty or blank"):
        prepare_lines(["", "   ", "\t"], InputLimits())


def test_text_is_split_into_lines_and_blank_lines_are_dropped() -> None:
    assert prepare_lines("a\r\n\nb\rc\n", InputLimits()) == ["a", "b", "c"]


def test_too_many_lines_names_the_limit_and_the_setting() -> None:
    with pytest.raises(ToolInputError, match=r"too many lines: 11 > 10.*LOGTRIAGE_MAX_LINES"):
        prepare_lines(["x"] * 11, InputLimits(max_lines=10))


def test_an_overlong_line_is_named_by_its_number() -> None:
    with pytest.raises(ToolInputError, match=r"line 2 has 101 characters > 100"):
        prepare_lines(["ok", "y" * 101], InputLimits(max_line_chars=100))


def test_total_bytes_are_limited_counting_utf8_bytes() -> None:
    with pytest.raises(ToolInputError, match="over 50 bytes"):
        prepare_lines(["é" * 30], InputLimits(max_total_bytes=50))


def test_control_characters_and_lone_surrogates_are_made_safe() -> None:
    (line,) = prepare_lines(["a\x00b\x1b[31mc \udcff end"], InputLimits())
    assert "\x00" not in line and "\x1b" not in line
    line.encode("utf-8")  # would raise on a lone surrogate


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        InputLimits(max_lines=0)
