"""Which acks the gateway publishes: per station the newest prefix, one in flight at a time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.gateway.acks import AckBook

K03, K04 = ("T01", "K03"), ("T01", "K04")


def test_one_ack_in_flight_per_station_and_the_newest_prefix_next() -> None:
    book = AckBook()
    book.stored({K03: 10, K04: 3})
    assert sorted(book.due()) == [(K03, 10), (K04, 3)]
    book.stored({K03: 20})
    book.stored({K03: 30})  # stored while the first ack is in flight: no second publish yet
    assert book.due() == []
    book.answered(K03, 10, ok=True, retry=False)
    assert book.due() == [(K03, 30)]  # only the newest
    book.answered(K03, 30, ok=True, retry=False)
    book.answered(K04, 3, ok=True, retry=False)
    assert (book.due(), len(book)) == ([], 0)


def test_a_repeat_says_the_same_prefix_again() -> None:
    book = AckBook()
    book.stored({K03: 5})
    book.answered(*book.due()[0], ok=True, retry=False)
    book.stored({K03: 5})  # a repeat: the station may have missed the last ack
    assert book.due() == [(K03, 5)]


def test_acks_lost_with_the_link_go_again() -> None:
    book = AckBook()
    book.stored({K03: 7, K04: 2})
    book.due()
    book.stored({K04: 4})
    book.link_lost()
    assert sorted(book.due()) == [(K03, 7), (K04, 4)]
    # Asked for while the link was down: wanted again; refused by the broker: not retried.
    book.answered(K03, 7, ok=False, retry=True)
    book.answered(K04, 4, ok=False, retry=False)
    assert book.due() == [(K03, 7)]


@given(st.lists(st.tuples(st.sampled_from([K03, K04]), st.integers(0, 50)), max_size=40))
def test_the_last_ack_of_each_station_says_its_highest_prefix(
    batches: list[tuple[tuple[str, str], int]],
) -> None:
    book, said = AckBook(), {}
    for key, through in batches:
        book.stored({key: through})
        for k, t in book.due():
            said[k] = t
            book.answered(k, t, ok=True, retry=False)
    for k, t in book.due():
        said[k] = t
    highest: dict[tuple[str, str], int] = {}
    for key, through in batches:
        highest[key] = max(through, highest.get(key, through))
    assert said == highest
