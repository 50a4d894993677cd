"""The reliability measure: collapses (spikes) and whether a run stayed solved."""

import math

from hypothesis import given
from hypothesis import strategies as st

from ntm.training.reliability import collapses, reliability


def _records(costs, every=50, batch=32):
    return [{"step": every * (i + 1), "sequences": every * batch * (i + 1),
             "seconds": 2.0 * (i + 1), "val_cost": cost} for i, cost in enumerate(costs)]


def test_collapses_by_hand():
    # The first is 85 bits, so a collapse needs a best under 17 first: 0.2 at index 2. Then
    # 27.1 and 60 are one collapse (more than 10.2 bits), 10.2 a second (above 0.1 + 10).
    costs = [85.0, 40.0, 0.2, 27.1, 60.0, 0.1, 10.0, 10.2, 0.05]
    assert collapses(costs) == [3, 7]
    assert collapses(costs, rise=30.0) == [4]
    assert collapses(costs, fall=0.001) == []  # the best never fell under 0.085


def test_exactly_ten_bits_above_is_not_a_collapse_and_nan_is():
    assert collapses([100.0, 5.0, 15.0]) == []
    assert collapses([100.0, 5.0, 15.000001]) == [2]
    assert collapses([100.0, 5.0, math.nan, 6.0, math.nan]) == [2, 4]
    assert collapses([]) == []


def test_a_run_that_never_learned_never_collapses():
    assert collapses([85.0, 84.0, 120.0, 85.0, 200.0]) == []


@given(st.lists(st.floats(0.0, 200.0), max_size=40))
def test_collapse_invariants(costs):
    starts = collapses(costs)
    assert starts == sorted(set(starts)) and all(0 < i < len(costs) for i in starts)
    # A cost that never rises never collapses; each start is above the best before it.
    assert collapses(sorted(costs, reverse=True)) == []
    for i in starts:
        assert costs[i] > min(costs[:i]) + 10.0


def test_reliability_of_a_run_that_collapsed_and_recovered():
    result = reliability(_records([85.0, 0.05, 40.0, 0.02]), target=0.1)
    assert result.solved and result.collapses == 1 and result.collapse_steps == (150,)
    assert result.first_solved_sequences == 3200 and result.first_solved_seconds == 4.0
    assert (result.best_val_cost, result.last_val_cost, result.validations) == (0.02, 0.02, 4)


def test_a_run_that_ends_collapsed_is_not_solved():
    result = reliability(_records([85.0, 0.05, 0.01, 70.0]), target=0.1)
    assert not result.solved and result.first_solved_sequences == 3200
    assert result.collapses == 1 and result.last_val_cost == 70.0


def test_records_without_validation_are_skipped_and_none_gives_an_empty_result():
    records = [{"step": 1, "sequences": 32, "seconds": 0.1, "cost": 80.0},
               *_records([80.0, 0.01])]
    assert reliability(records, target=0.1).validations == 2
    empty = reliability([{"step": 1, "sequences": 32, "seconds": 0.1, "cost": 1.0}], 0.1)
    assert (empty.solved, empty.collapses, empty.best_val_cost, empty.validations) == (
        False, 0, None, 0)


def test_collapses_in_an_opening_are_counted_apart_by_the_sequences_of_their_start():
    # Validations every 1,600 sequences; collapses start at indices 3 (6,400) and 7 (12,800).
    records = _records([85.0, 40.0, 0.2, 27.1, 60.0, 0.1, 10.0, 10.2, 0.05])
    assert reliability(records, 0.1).collapses_in_opening == 0  # no opening
    assert reliability(records, 0.1, opening=6400).collapses_in_opening == 1  # at its end: in
    assert reliability(records, 0.1, opening=6399).collapses_in_opening == 0
    both = reliability(records, 0.1, opening=12_800)
    assert (both.collapses, both.collapses_in_opening) == (2, 2)


def test_each_attempt_after_a_restart_opens_again():
    # Validations every 1,600 sequences. The first attempt never falls under 17 bits (20% of
    # 85) and ends at 4,800 sequences (index 2); the second falls to 5 and collapses at 9,600
    # (index 5, the end of its opening of 4,800) and at 12,800 (index 7, after it).
    records = _records([85.0, 60.0, 50.0, 90.0, 5.0, 30.0, 0.05, 40.0, 0.05])
    records[2]["restart"] = 1
    result = reliability(records, 0.1, opening=4800)
    assert (result.restarts, result.collapse_steps) == (1, (300, 400))
    assert result.collapses_in_opening == 1
    assert reliability(records, 0.1, opening=4799).collapses_in_opening == 0
    # Without the restart, only the run's first opening (to 4,800) would count.
    del records[2]["restart"]
    assert reliability(records, 0.1, opening=4800).collapses_in_opening == 0
