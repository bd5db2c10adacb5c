"""A dead letter is always sendable: cut to the producer's limit, saying what was cut."""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.producer.producer import AIOKafkaProducer
from hypothesis import given
from hypothesis import strategies as st

from streams.worker.batching import DeadLetter

FAUST_LIMIT = 1_000_000
"""Faust's default producer_max_request_size."""


class _Record(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _record(value: bytes | None, key: bytes | None = b"deal-1") -> _Record:
    return _Record("touches", 3, 41, key, value)


def _fits_the_producer(letter: DeadLetter, limit: int) -> bool:
    """Whether aiokafka's own size check (what raised in the report) lets the letter through."""
    producer = AIOKafkaProducer.__new__(AIOKafkaProducer)
    producer._key_serializer = producer._value_serializer = None
    producer._max_request_size = limit
    try:
        producer._serialize(letter.key, letter.value, list(letter.headers.items()))
    except MessageSizeTooLargeError:
        return False
    return True


def test_a_dead_letter_that_fits_goes_whole_with_where_it_came_from() -> None:
    letter = DeadLetter.of(_record(b"not json"), "not valid JSON", FAUST_LIMIT)

    assert (letter.key, letter.value) == (b"deal-1", b"not json")
    assert letter.headers == {
        "reason": b"not valid JSON",
        "source.topic": b"touches",
        "source.partition": b"3",
        "source.offset": b"41",
    }
    assert letter.truncated is None


def test_the_record_of_the_report_is_cut_to_fit_with_its_size_and_sha256() -> None:
    huge = b"x" * 1_048_450
    assert not _fits_the_producer(DeadLetter(b"deal-1", huge, {}), FAUST_LIMIT)  # the report

    letter = DeadLetter.of(_record(huge), "over the 65536 limit", FAUST_LIMIT)

    assert _fits_the_producer(letter, FAUST_LIMIT)
    assert letter.value is not None and huge.startswith(letter.value)
    assert len(letter.value) > FAUST_LIMIT - 1000  # cut no more than needed
    assert letter.truncated == "value"
    assert letter.headers["original.size"] == b"1048450"
    assert letter.headers["original.sha256"] == hashlib.sha256(huge).hexdigest().encode()
    assert letter.headers["reason"] == b"over the 65536 limit"
    assert letter.headers["source.offset"] == b"41"


@given(
    key_size=st.one_of(st.none(), st.integers(0, 1_100_000)),
    value_size=st.integers(0, 1_100_000),
    limit=st.integers(8_192, 1_100_000),
    reason=st.text(max_size=300),
)
def test_every_dead_letter_fits_the_producer_and_keeps_the_first_bytes(
    key_size: int | None, value_size: int, limit: int, reason: str
) -> None:
    key = (
        None
        if key_size is None
        else bytes(range(256)) * (key_size // 256) + b"k" * (key_size % 256)
    )
    value = b"v" * value_size

    letter = DeadLetter.of(_record(value, key), reason, limit)

    assert _fits_the_producer(letter, limit)
    assert (letter.value or b"") == value[: len(letter.value or b"")]
    assert (letter.key or b"") == (key or b"")[: len(letter.key or b"")]
    cut = (letter.value or b"") != value or letter.key != key
    assert (letter.truncated is not None) == cut
    if cut:
        assert letter.headers["original.size"] == str(value_size).encode()
        assert letter.headers["original.sha256"] == hashlib.sha256(value).hexdigest().encode()
    if letter.key != key:
        assert letter.truncated == "key,value"
        assert letter.headers["original.key.size"] == str(key_size).encode()
