"""Fixtures of the dataset tests."""
import pytest


@pytest.fixture(scope="module")
def bench_root(small_sample):
    """The bundled sample's ``benchmarks/`` folder: one sub-folder per dataset in its release layout."""
    return small_sample / "benchmarks"
