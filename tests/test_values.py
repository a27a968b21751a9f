"""The value parsers both halves share (coordinator/values.py): each refusal says what is wrong and the fix."""

from __future__ import annotations

import time

import pytest

from coordinator.values import (
    MAX_EXEC_STRING_BYTES,
    MAX_JSON_DEPTH,
    ValueProblem,
    ascii_digits,
    blank_is_unset,
    docker_text_problem,
    load_json,
    parse_fleet_id,
    parse_image,
    parse_int,
    parse_list,
    parse_network,
    parse_repository,
    parse_seconds,
    parse_url,
)


@pytest.mark.parametrize(("raw", "expected"), [(None, None), ("", None), ("   ", None), ("\t\n", None), (" a ", "a")])
def test_blank_is_unset(raw: str | None, expected: str | None) -> None:
    assert blank_is_unset(raw) == expected


@pytest.mark.parametrize(
    ("raw", "result"),
    [
        ("0", 0),
        ("42", 42),
        ("100", 100),
        ("-1", "is less than 0"),
        ("101", "is more than 100"),
        ("lots", "is not a whole number"),
        ("4.0", "is not a whole number"),
        ("1e3", "is not a whole number"),
        ("\u0664\u0662", "is not a whole number"),  # Arabic-Indic 42: int() reads them, a setting must not
        ("1_000", "is not a whole number"),
        ("9" * 19, "has more than 18 digits"),
        ("9" * 5000, "has more than 18 digits"),  # int() would refuse it with its own ValueError
    ],
)
def test_parse_int(raw: str, result: int | str) -> None:
    if isinstance(result, int):
        assert parse_int(raw, minimum=0, maximum=100, example=5) == result
    else:
        with pytest.raises(ValueProblem) as refused:
            parse_int(raw, minimum=0, maximum=100, example=5)
        assert refused.value.reason == result


@pytest.mark.parametrize(
    ("raw", "result"),
    [
        ("10", 10.0),
        ("2.5", 2.5),
        ("0.001", 0.001),
        ("300", 300.0),
        ("0", "is not more than 0 seconds"),
        ("-3", "is not more than 0 seconds"),
        ("0.0001", "is not a number of seconds"),  # four decimals: "%.3f" would hand on 0.000
        ("301", "is more than 300 seconds"),
        ("inf", "is not a finite number of seconds"),
        ("Infinity", "is not a finite number of seconds"),
        ("nan", "is not a finite number of seconds"),
        ("1e400", "is not a finite number of seconds"),
        ("1e2", "is not a number of seconds"),
        ("soon", "is not a number of seconds"),
        ("\u0661\u0660", "is not a number of seconds"),  # Arabic-Indic 10
    ],
)
def test_parse_seconds(raw: str, result: float | str) -> None:
    if isinstance(result, float):
        assert parse_seconds(raw, maximum=300, example="10") == result
    else:
        with pytest.raises(ValueProblem) as refused:
            parse_seconds(raw, maximum=300, example="10")
        assert refused.value.reason == result


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("https://example.com/healthz", None),
        ("http://127.0.0.1:8080/api/v3", None),
        ("https://user:pw@example.com/x?y=1", None),  # valid; error messages and logs never show the parts
        ("example.com/healthz", "does not start with http:// or https://"),
        ("htps://example.com", "does not start with http:// or https://"),
        ("https://", "has no host"),
        ("https:///path", "has no host"),
        ("https://example.com:99999/", "is not a URL"),
        ("https://exa mple.com/", "is not a URL: it holds a space"),
        ("https://bücher.example/", "is not a URL: it holds a space, a control character or a non-ASCII character"),
    ],
)
def test_parse_url(raw: str, reason: str | None) -> None:
    if reason is None:
        assert parse_url(raw, example="https://example.com/healthz") == raw
    else:
        with pytest.raises(ValueProblem) as refused:
            parse_url(raw, example="https://example.com/healthz")
        assert refused.value.reason.startswith(reason)


@pytest.mark.parametrize(
    ("raw", "ok"),
    [
        ("acme/webapp", True),
        ("a-b/c.d_e", True),
        ("webapp", False),
        ("acme/web/app", False),
        ("-acme/webapp", False),
        ("ac--me/webapp", False),
        ("acme/..", False),
        ("acmé/webapp", False),
        ("acme/webapp\n", False),
        ("a" * 40 + "/x", False),
    ],
)
def test_parse_repository(raw: str, ok: bool) -> None:
    if ok:
        assert parse_repository(raw) == raw
    else:
        with pytest.raises(ValueProblem, match="is not owner/name"):
            parse_repository(raw)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("agent-fleet", None),
        ("t0123abcd", None),
        ("a" * 24, None),
        ("a" * 25, "is 25 characters long, more than 24"),
        ("flëet", "may hold only ASCII letters"),  # str.isalnum() accepts it; Docker does not
        ("fleet\n", "may hold only ASCII letters"),
        ("-fleet", "may hold only ASCII letters"),
        ("bad id!", "may hold only ASCII letters"),
    ],
)
def test_parse_fleet_id(raw: str, reason: str | None) -> None:
    if reason is None:
        assert parse_fleet_id(raw) == raw
    else:
        with pytest.raises(ValueProblem) as refused:
            parse_fleet_id(raw)
        assert refused.value.reason.startswith(reason)


@pytest.mark.parametrize(("raw", "expected"), [("a", ("a",)), (" a , b ,, ", ("a", "b")), (",", None), (",, ,", None)])
def test_parse_list_refuses_a_value_that_names_nothing(raw: str, expected: tuple[str, ...] | None) -> None:
    if expected is not None:
        assert parse_list(raw, what="label", example="a,b") == expected
    else:
        with pytest.raises(ValueProblem, match="names no label; leave it unset for the default"):
            parse_list(raw, what="label", example="a,b")


def test_images_and_networks() -> None:
    assert parse_image("ghcr.io/acme/agent:1@sha256:abc", example="x") == "ghcr.io/acme/agent:1@sha256:abc"
    assert parse_network("container:abc") == "container:abc"
    for bad in ("agent image", "agent\x00", "ägent", ""):
        with pytest.raises(ValueProblem):
            parse_image(bad, example="x")
        with pytest.raises(ValueProblem):
            parse_network(bad)


@pytest.mark.parametrize(("text", "expected"), [("0", 0), ("12", 12), ("\u00b2", None), ("\u0661", None), ("-1", None),
                                                ("", None), ("1" * 19, None), (" 1", None)])
def test_ascii_digits(text: str, expected: int | None) -> None:
    assert ascii_digits(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("fine", None),
        ("a\x00b", "holds a NUL character"),
        ("\ud800", "holds a character that is not valid Unicode"),
        ("x" * (MAX_EXEC_STRING_BYTES + 1), "bytes long"),
    ],
)
def test_docker_text_problem(text: str, problem: str | None) -> None:
    found = docker_text_problem(text)
    assert (found is None) if problem is None else (found is not None and problem in found)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ('{"a": 1, "a": 2}', "has the key 'a' twice in one object"),
        ('{"roles": [{"k": 1, "k": 1}]}', "has the key 'k' twice in one object"),
        ("1" * 19, "has a number of more than 18 digits"),
        ("1" * 5000, "has a number of more than 18 digits"),
        ("1e400", "has a number too large to represent"),
        ("NaN", "has NaN, which is not JSON"),
        ("[-Infinity]", "has -Infinity, which is not JSON"),
        ("[" * 100_000 + "]" * 100_000, "is nested too deeply"),
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "is nested too deeply"),
        ("{", "is not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2)"),
        (b'{"a": "caf\xe9"}', "is not UTF-8: byte 10 is 0xe9"),
        (b"\xff", "is not UTF-8: byte 0 is 0xff"),
        (b" " * 2048, "is 2048 bytes, more than the limit of 1024"),
    ],
)
def test_load_json_is_strict(data: str | bytes, reason: str) -> None:
    with pytest.raises(ValueProblem) as refused:
        load_json(data, max_bytes=1024)
    assert refused.value.reason == reason


def test_load_json_reads_what_is_fine_quickly() -> None:
    assert load_json(b'{"roles": [{"count": 3, "x": -2.5, "s": "caf\xc3\xa9"}]}') == {
        "roles": [{"count": 3, "x": -2.5, "s": "café"}]
    }
    assert load_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    started = time.monotonic()
    with pytest.raises(ValueProblem):
        load_json("[" + "9" * 1_000_000 + "]")
    assert time.monotonic() - started < 1.0
