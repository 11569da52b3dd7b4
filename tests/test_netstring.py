"""The incremental netstring parser, fed whole streams and one byte at a time."""

from __future__ import annotations

import pytest

from lookupd.netstring import (
    MAX_QUERY_BYTES,
    NetstringError,
    NetstringParser,
    NetstringTooLong,
    encode_netstring,
)

PAYLOADS = [b"domains example.com", b"", b"a,b:c 1:x,", bytes(range(256)), b"x" * 1000]
STREAM = b"".join(encode_netstring(payload) for payload in PAYLOADS)


def feed_bytewise(parser: NetstringParser, data: bytes) -> list[bytes]:
    payloads: list[bytes] = []
    for index in range(len(data)):
        payloads.extend(parser.feed(data[index : index + 1]))
    return payloads


def test_encode() -> None:
    assert encode_netstring(b"OK alice@example.com") == b"20:OK alice@example.com,"
    assert encode_netstring(b"") == b"0:,"


def test_whole_stream_in_one_chunk() -> None:
    parser = NetstringParser()
    assert parser.feed(STREAM) == PAYLOADS
    assert parser.pending == 0


def test_one_byte_at_a_time() -> None:
    parser = NetstringParser()
    assert feed_bytewise(parser, STREAM) == PAYLOADS
    assert parser.pending == 0


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 999])
def test_arbitrary_chunks(size: int) -> None:
    parser = NetstringParser()
    payloads: list[bytes] = []
    for start in range(0, len(STREAM), size):
        payloads.extend(parser.feed(STREAM[start : start + size]))
    assert payloads == PAYLOADS


def test_payload_completes_only_with_its_comma() -> None:
    parser = NetstringParser()
    assert parser.feed(b"3:") == []
    assert parser.pending == 2
    assert parser.feed(b"abc") == []
    assert parser.pending == 5
    assert parser.feed(b",3:d") == [b"abc"]
    assert parser.feed(b"ef,") == [b"def"]


def test_leading_zeros_within_the_digit_budget() -> None:
    assert NetstringParser().feed(b"00005:hello,") == [b"hello"]


def test_largest_payload_accepted() -> None:
    payload = b"k" * MAX_QUERY_BYTES
    assert feed_bytewise(NetstringParser(), encode_netstring(payload)) == [payload]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"x", NetstringError),  # a leading non-digit, rejected before anything else arrives
        (b":", NetstringError),  # no length at all
        (b"1a", NetstringError),
        (b" ", NetstringError),
        (b"-", NetstringError),
        (b"5:hello!", NetstringError),  # not terminated by a comma
        (b"5:hello\n", NetstringError),
        (b"000000", NetstringTooLong),  # more digits than the limit needs, no colon needed
        (b"10001", NetstringTooLong),  # above the limit before the colon arrives
        (b"99999", NetstringTooLong),
    ],
)
def test_malformed_input_raises_as_soon_as_it_is_visible(
    data: bytes, error: type[Exception]
) -> None:
    # Fed one byte at a time, the error must come with the last byte given here, not later.
    parser = NetstringParser()
    with pytest.raises(error):
        for index in range(len(data)):
            parser.feed(data[index : index + 1])
    assert index == len(data) - 1


def test_error_after_good_netstrings() -> None:
    parser = NetstringParser()
    assert parser.feed(b"1:a,") == [b"a"]
    with pytest.raises(NetstringError):
        parser.feed(b"1:bX")


def test_too_long_is_a_netstring_error() -> None:
    # The server closes the connection on either; one except clause must catch both.
    assert issubclass(NetstringTooLong, NetstringError)


def test_custom_limit() -> None:
    parser = NetstringParser(max_payload=5)
    assert parser.feed(b"5:hello,") == [b"hello"]
    with pytest.raises(NetstringTooLong):
        parser.feed(b"6")
    with pytest.raises(NetstringTooLong):
        NetstringParser(max_payload=5).feed(b"00")  # 2 digits where 1 is enough


def test_partial_prefix_is_pending() -> None:
    parser = NetstringParser()
    assert parser.feed(b"12") == []
    assert parser.pending == 2
    assert parser.feed(b":" + b"z" * 12 + b",") == [b"z" * 12]
