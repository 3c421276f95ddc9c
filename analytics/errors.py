"""The analytics package's errors (the api maps them to 4xx; they never mention HTTP)."""

from __future__ import annotations


class AnalyticsError(Exception):
    """Base of the analytics errors."""


class InvalidQuery(AnalyticsError, ValueError):
    """A query's parameters are wrong: window, bbox, resolution, metric, format."""
