import pytest

from tidal.config import VersionPolicy, parse_config_text


@pytest.mark.parametrize(
    ("policy", "available", "selected"),
    [
        (VersionPolicy(), [1, 2, 3], [3]),
        (VersionPolicy(), [3, 1, 2], [3]),
        (VersionPolicy(), [], []),
        (VersionPolicy(num_versions=2), [1, 2, 3], [2, 3]),
        (VersionPolicy(num_versions=5), [7, 2], [2, 7]),
        (VersionPolicy(num_versions=0), [1, 2], []),
        (VersionPolicy(kind="all"), [3, 1, 2], [1, 2, 3]),
        (VersionPolicy(kind="all"), [], []),
        (VersionPolicy(kind="specific", versions=(1, 3)), [3, 2, 1], [1, 3]),
        (VersionPolicy(kind="specific", versions=(4,)), [1, 2, 3], []),
        (VersionPolicy(kind="specific", versions=(2, 9)), [2, 3], [2]),
        (VersionPolicy(kind="specific", versions=()), [1], []),
    ],
)
def test_select(policy, available, selected):
    assert policy.select(available) == selected


def test_select_ignores_duplicates_and_takes_any_iterable():
    assert VersionPolicy(kind="all").select(iter([2, 2, 1])) == [1, 2]
    assert VersionPolicy(num_versions=2).select({5: "a", 1: "b", 9: "c"}) == [5, 9]


def test_version_zero_is_a_version():
    assert VersionPolicy(kind="all").select([0, 1]) == [0, 1]
    assert VersionPolicy(num_versions=2).select([0, 1, 2]) == [1, 2]


def test_default_policy_is_latest_one():
    assert VersionPolicy() == VersionPolicy(kind="latest", num_versions=1, versions=())


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("", VersionPolicy()),
        ("version_policy: { }", VersionPolicy()),
        ("version_policy: { latest: { } }", VersionPolicy(num_versions=0)),
        ("version_policy: { latest: { num_versions: 2 } }", VersionPolicy(num_versions=2)),
        ("version_policy: { all: { } }", VersionPolicy(kind="all")),
        (
            "version_policy: { specific: { versions: [ 4, 1 ] } }",
            VersionPolicy(kind="specific", versions=(4, 1)),
        ),
    ],
)
def test_policy_from_config_text(text, policy):
    assert parse_config_text(text, model_name="m").version_policy == policy
