"""Fixtures of the scheduler tests: a running lab for the tests of a module."""

from tests.scheduler.lab import lab

__all__ = ["lab"]
