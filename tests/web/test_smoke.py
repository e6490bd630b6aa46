"""The dashboard's frame on the demo: sign-in leads to a page with the demo's figures."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.web.conftest import DemoKeys, sign_in


def test_signed_in_overview_shows_the_demo(web: TestClient, demo_keys: DemoKeys) -> None:
    assert web.get("/").status_code == 303
    sign_in(web, demo_keys.admin)
    page = web.get("/")
    assert page.status_code == 200
    assert 'data-kpi="items"' in page.text
