"""Tests for detectors.templates: which parts of a log line are variables and which stay."""

from __future__ import annotations

import pytest

from detectors.templates import MAX_TEMPLATE_CHARS, mask_line, mask_lines


@pytest.mark.parametrize(
    ("line", "template"),
    [
        ("2026-03-04T10:15:02Z INFO start", "<TS> INFO start"),
        ("2026-03-04T10:15:02.123+02:00 INFO start", "<TS> INFO start"),
        ("2026-03-04 10:15:02,123 WARN slow", "<TS> WARN slow"),
        ("2005-06-03-15.42.50.675872 RAS KERNEL INFO", "<TS> RAS KERNEL INFO"),
        ("2005.06.03 RAS KERNEL INFO", "<TS> RAS KERNEL INFO"),
        ("2026/03/04 started", "<TS> started"),
        ("at 12:01:02 ok", "at <TS> ok"),
        ("at 12:01:02.250 ok", "at <TS> ok"),
    ],
)
def test_timestamps_are_masked_whole(line: str, template: str) -> None:
    assert mask_line(line) == template


@pytest.mark.parametrize(
    ("line", "template"),
    [
        ("connect to 10.0.0.7 failed", "connect to <IP> failed"),
        ("connect to 10.0.0.7:8080 failed", "connect to <IP> failed"),
        ("src: /10.250.19.102:54106 dest: /10.250.19.102:50010", "src: /<IP> dest: /<IP>"),
    ],
)
def test_ipv4_addresses_are_masked_with_their_port(line: str, template: str) -> None:
    assert mask_line(line) == template


def test_a_uuid_is_one_token_not_a_run_of_numbers_and_ids() -> None:
    assert mask_line("trace 123e4567-e89b-12d3-a456-426614174000 done") == "trace <UUID> done"
    assert mask_line("trace 123E4567-E89B-12D3-A456-426614174000 done") == "trace <UUID> done"


@pytest.mark.parametrize(
    ("line", "template"),
    [
        ("addr 0x7f3a2b flags 0XFF", "addr <HEX> flags <HEX>"),
        ("container 3f2a9c1b7d4e ready", "container <HEX> ready"),
        ("commit a1b2c3d4e5f6a7b8c9d0 pushed", "commit <HEX> pushed"),
    ],
)
def test_hex_literals_and_long_hex_ids_are_masked(line: str, template: str) -> None:
    assert mask_line(line) == template


@pytest.mark.parametrize(
    ("line", "template"),
    [
        ("Receiving block blk_-1608999687919862906", "Receiving block <BLK>"),
        ("Served block blk_38865049064139660 to client", "Served block <BLK> to client"),
    ],
)
def test_hdfs_block_ids_with_either_sign_are_masked(line: str, template: str) -> None:
    assert mask_line(line) == template


@pytest.mark.parametrize(
    ("line", "template"),
    [
        ("open /var/log/app.log failed", "open <PATH> failed"),
        ("rm /mnt/hadoop/dfs/data/current/subdir5/blk_388 done", "rm <PATH> done"),
        ("cwd /srv/app-1/ ok", "cwd <PATH> ok"),
    ],
)
def test_paths_are_masked_as_one_token(line: str, template: str) -> None:
    assert mask_line(line) == template


@pytest.mark.parametrize(
    "identifier", ["req-8f3a21", "user_1042", "R02-M1-N0-C:J12-U11", "node7.rack2", "v2.0.1"]
)
def test_identifiers_holding_a_digit_are_masked(identifier: str) -> None:
    assert mask_line(f"handled {identifier} ok") == "handled <ID> ok"


@pytest.mark.parametrize(
    ("line", "template"),
    [
        ("allocated 512MB in 123ms", "allocated <NUM> in <NUM>"),
        ("cpu at 45% after 3 retries", "cpu at <NUM> after <NUM> retries"),
        ("delta -12 and +3.5", "delta <NUM> and <NUM>"),
        ("took -12 ms", "took <NUM> ms"),
        ("running version 1.2.3", "running version <NUM>"),
        ("exit code 137", "exit code <NUM>"),
    ],
)
def test_numbers_with_units_signs_and_versions_are_masked(line: str, template: str) -> None:
    assert mask_line(line) == template


@pytest.mark.parametrize(
    "line",
    [
        "ERROR order-service connection refused",
        "order-service: connection refused",
        "deadbeef cafebabe facade",
        "WARN [api] upstream timed out; retrying",
        "RAS KERNEL FATAL data TLB error interrupt",
    ],
)
def test_lines_made_only_of_words_are_their_own_template(line: str) -> None:
    assert mask_line(line) == line


def test_the_documented_example_masks_every_kind_of_variable_in_one_line() -> None:
    line = "2026-03-04T10:15:02Z INFO [api] req-8f3a21 from 10.0.0.7 took 123ms"
    assert mask_line(line) == "<TS> INFO [api] <ID> from <IP> took <NUM>"


def test_a_full_bgl_line_keeps_its_words_and_masks_everything_else() -> None:
    line = (
        "- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 "
        "R02-M1-N0-C:J12-U11 RAS KERNEL INFO instruction cache parity error corrected"
    )
    assert mask_line(line) == (
        "- <NUM> <TS> <ID> <TS> <ID> RAS KERNEL INFO instruction cache parity error corrected"
    )


def test_lines_differing_only_in_variables_share_a_template() -> None:
    first = "2026-03-04T10:15:02Z ERROR req-8f3a21 to 10.0.0.7:8080 failed after 120ms (blk_-42)"
    second = "2027-11-30T23:59:59Z ERROR req-77aa00 to 192.168.100.250:443 failed after 9ms (blk_991)"
    assert mask_line(first) == mask_line(second)
    assert mask_line(first) != mask_line(second.replace("ERROR", "WARN"))


def test_whitespace_is_collapsed_and_trimmed() -> None:
    assert mask_line("  many\t\tspaces   here \n") == "many spaces here"


def test_a_template_is_cut_to_the_maximum_length() -> None:
    template = mask_line("word " * 400)
    assert len(template) == MAX_TEMPLATE_CHARS
    assert template == ("word " * 400).strip()[:MAX_TEMPLATE_CHARS]


def test_mask_lines_equals_masking_each_line_in_order() -> None:
    lines = [
        "2026-03-04T10:15:02Z INFO start",
        "connect to 10.0.0.7:8080 failed",
        "2026-03-04T10:15:02Z INFO start",
        "",
        "allocated 512MB",
    ]
    assert mask_lines(lines) == [mask_line(line) for line in lines]
    assert mask_lines(tuple(lines)) == mask_lines(lines)
    assert mask_lines([]) == []
