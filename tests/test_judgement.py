from harness.cell import Cell
from harness.judgement import judge
from harness.outcome import Observation, Outcome


def cell(expected=None, source="001 case 7"):
    return Cell(scenario="A", server_on="win-vm", bind="loopback", client_on="hv-host",
                target="server", port=19000, expected=expected, label="A7", source=source)


def test_documented_x_observed_x_passes():
    v = judge(cell(Outcome.X), Observation(Outcome.X, errno_name="WSAECONNREFUSED", elapsed_ms=3))
    assert v.kind == "pass" and "X WSAECONNREFUSED 3ms" in v.message


def test_mismatch_fails_naming_both_and_the_source():
    v = judge(cell(Outcome.X), Observation(Outcome.O, elapsed_ms=2, reply="Hello: World!"))
    assert v.kind == "fail"
    assert v.message == "expected X, observed O 2ms [001 case 7]"


def test_e_is_never_accepted_as_x_it_is_an_error():
    v = judge(cell(Outcome.X), Observation(Outcome.E, detail="node hv-host unreachable"))
    assert v.kind == "error" and v.message.startswith("E (harness or lab failure")


def test_e_that_flipped_is_still_an_error_and_says_so():
    v = judge(cell(Outcome.O), Observation(Outcome.E, detail="lab down"), Observation(Outcome.O))
    assert v.kind == "error" and "O->E" in v.message and v.message.endswith("lab down")


def test_unknown_expectation_records_and_passes():
    v = judge(cell(None), Observation(Outcome.X, errno_name="ETIMEDOUT", elapsed_ms=2100))
    assert v.kind == "pass" and "no documented expectation" in v.message


def test_flip_fails_even_when_expected_matches():
    v = judge(cell(Outcome.O), Observation(Outcome.O, elapsed_ms=1), Observation(Outcome.X))
    assert v.kind == "fail" and "X->O" in v.message


def test_na_skips_unless_something_else_was_documented():
    obs = Observation(Outcome.NA, detail="vsock has no equivalent of HV_GUID_CHILDREN")
    assert judge(cell(None), obs).kind == "skip"
    assert judge(cell(Outcome.O), obs).kind == "fail"


def test_bind_failure_is_its_own_result():
    obs = Observation(Outcome.B, bind_errno_name="EADDRNOTAVAIL", bind_errno=99)
    assert judge(cell(Outcome.B), obs).kind == "pass"
    assert judge(cell(Outcome.X), obs).message == "expected X, observed B EADDRNOTAVAIL [001 case 7]"


def test_keys_flip_exactly_where_observations_do():
    """A history of `X ECONNREFUSED` keys (harness/report/history.py) uses the same rule as a run."""
    from itertools import product

    from harness.judgement import flip_between, flip_between_keys, outcome_key

    observations = [Observation(Outcome.O), Observation(Outcome.X), Observation(Outcome.X, errno_name="ECONNREFUSED"),
                    Observation(Outcome.X, errno_name="ETIMEDOUT"), Observation(Outcome.B, bind_errno_name="EADDRINUSE"),
                    Observation(Outcome.B), Observation(Outcome.E), Observation(Outcome.NA)]
    for a, b in product(observations, repeat=2):
        assert flip_between_keys(outcome_key(a), outcome_key(b)) == flip_between(a, b), (a, b)
