"""Pagination's Link: under the configured public base URL, else relative; never the Host."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request

from api.pagination import next_page_url
from infrastructure.settings import ApiSettings


def _request(base: str) -> Request:
    app = Starlette()
    app.state.public_base_url = ApiSettings(public_base_url=base).public_base_url
    scope = {
        "type": "http",
        "app": app,
        "method": "GET",
        "scheme": "http",
        "server": ("10.0.0.5", 8000),
        "path": "/api/drivers",
        "raw_path": b"/api/drivers",
        "root_path": "",
        "query_string": b"status=active",
        "headers": [(b"host", b"evil.example")],
    }
    return Request(scope)


def test_relative_without_a_public_base_url() -> None:
    url = next_page_url(_request(""), "abc", 50)
    assert url == "/api/drivers?status=active&cursor=abc&limit=50"


def test_under_the_public_base_url_when_configured() -> None:
    url = next_page_url(_request("https://fleet.example.com/tracking/"), "abc", 50)
    assert url == "https://fleet.example.com/tracking/api/drivers?status=active&cursor=abc&limit=50"


@pytest.mark.parametrize(
    "bad", ["fleet.example.com", "ftp://fleet.example.com", "https://", "https://h/?a=1"]
)
def test_a_public_base_url_must_be_an_http_url(bad: str) -> None:
    with pytest.raises(ValidationError):
        ApiSettings(public_base_url=bad)
