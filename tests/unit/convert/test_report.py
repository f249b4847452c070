"""The report's shared reading of numbers: a bad one is an error that names its field."""

from __future__ import annotations

import pytest

from stratus.convert.report import UnsupportedInput, whole


def test_a_whole_number_is_read_from_yaml_ints_and_strings() -> None:
    assert (whole(3, "a"), whole("4", "b"), whole(" 5 ", "c")) == (3, 4, 5)


@pytest.mark.parametrize("value", ["half", True, 2.5, None, "1e3"])
def test_anything_else_names_the_field(value: object) -> None:
    with pytest.raises(UnsupportedInput, match=r"^spec\.replicas: not a whole number: "):
        whole(value, "spec.replicas")
