"""The TAXII routes in-process: authentication, media types, errors, filters and paging."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from hotline.errors import InputError
from hotline.referrals import taxii
from hotline.referrals.collections import Direction, add_objects, collection_id
from hotline.store import Store

with warnings.catch_warnings():
    # Starlette 1.x announces, on import, that its TestClient will move from httpx to httpx2;
    # the project pins httpx, and this test needs nothing else from that change.
    warnings.filterwarnings(
        "ignore", message="Using `httpx` with `starlette.testclient` is deprecated"
    )
    from fastapi.testclient import TestClient

PASSWORD = "a long enough password"
TAXII = {"accept": taxii.TAXII_MEDIA_TYPE}


def _obj(i: int) -> dict[str, Any]:
    return {
        "type": "indicator" if i % 2 else "malware",
        "spec_version": "2.1",
        "id": f"{'indicator' if i % 2 else 'malware'}--00000000-0000-4000-8000-{i:012d}",
        "created": "2026-11-18T00:00:00.000Z",
        "modified": "2026-11-18T00:00:00.000Z",
    }


@pytest.fixture
def client(tmp_path: Path, store_url) -> Iterator[TestClient]:
    store = Store.open(store_url(tmp_path / "store.sqlite"))
    with store.write() as conn:
        taxii.add_user(conn, "misp", PASSWORD, datetime.now(UTC))
        cid = collection_id("moscow", Direction.RECEIVED)
        for batch in range(3):
            objects = [_obj(batch * 10 + i) for i in range(10)]
            add_objects(conn, cid, "case", objects, 1_000_000 * (batch + 1))
    app = FastAPI()
    app.include_router(taxii.make_router(store, lambda: ["moscow"]))
    with TestClient(app, headers=TAXII) as test_client:
        test_client.auth = ("misp", PASSWORD)
        yield test_client
    store.close()


def _objects_url() -> str:
    return f"/taxii2/hotline/collections/{collection_id('moscow', Direction.RECEIVED)}/objects/"


def test_discovery_root_and_collections(client: TestClient) -> None:
    r = client.get("/taxii2/")
    assert r.status_code == 200
    assert r.headers["content-type"] == taxii.TAXII_MEDIA_TYPE
    assert r.json()["api_roots"] == ["http://testserver/taxii2/hotline/"]
    assert client.get("/taxii2/hotline/").json()["versions"] == [taxii.TAXII_MEDIA_TYPE]
    titles = [c["title"] for c in client.get("/taxii2/hotline/collections/").json()["collections"]]
    assert titles == ["Referrals received from moscow", "Referrals sent to moscow"]


def test_authentication(client: TestClient) -> None:
    anonymous = TestClient(client.app, headers=TAXII)
    attempts = [
        anonymous.get("/taxii2/"),
        anonymous.get("/taxii2/", headers={"authorization": "Basic !!!"}),
        anonymous.get("/taxii2/", headers={"authorization": "Bearer x"}),
        anonymous.get("/taxii2/", auth=("misp", "wrong password!!")),
        anonymous.get("/taxii2/", auth=("nobody", PASSWORD)),
    ]
    for r in attempts:
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        assert r.json()["http_status"] == "401"
    # A remembered login still needs the right password.
    assert anonymous.get("/taxii2/", auth=("misp", PASSWORD)).status_code == 200
    assert anonymous.get("/taxii2/", auth=("misp", PASSWORD + "x")).status_code == 401


def test_media_types(client: TestClient) -> None:
    assert client.get("/taxii2/", headers={"accept": "text/html"}).status_code == 406
    bad_version = {"accept": "application/taxii+json;version=2.0"}
    assert client.get("/taxii2/", headers=bad_version).status_code == 406
    assert client.get("/taxii2/", headers={"accept": "*/*"}).status_code == 200


def test_paging_filters_and_headers(client: TestClient) -> None:
    url = _objects_url()
    first = client.get(url, params={"limit": 12})
    body = first.json()
    assert body["more"] is True and len(body["objects"]) == 12
    assert first.headers["x-taxii-date-added-first"] == "1970-01-01T00:00:01.000000Z"
    second = client.get(url, params={"limit": 12, "next": body["next"]}).json()
    third = client.get(url, params={"limit": 12, "next": second["next"]}).json()
    assert third["more"] is False and "next" not in third
    ids = [o["id"] for page in (body, second, third) for o in page["objects"]]
    assert ids == [_obj(i)["id"] for i in range(30)]

    after = client.get(url, params={"added_after": "1970-01-01T00:00:02Z"}).json()
    assert [o["id"] for o in after["objects"]] == [_obj(i)["id"] for i in range(20, 30)]
    types = client.get(url, params={"match[type]": "malware"}).json()
    assert {o["type"] for o in types["objects"]} == {"malware"}
    one = client.get(url, params={"match[id]": _obj(3)["id"]}).json()
    assert [o["id"] for o in one["objects"]] == [_obj(3)["id"]]
    assert client.get(url, params={"added_after": "2999-01-01T00:00:00Z"}).json() == {"more": False}


def test_manifest_object_and_versions(client: TestClient) -> None:
    base = _objects_url().removesuffix("objects/")
    manifest = client.get(base + "manifest/", params={"limit": 5}).json()
    assert manifest["more"] and manifest["objects"][0] == {
        "id": _obj(0)["id"],
        "date_added": "1970-01-01T00:00:01.000000Z",
        "version": "2026-11-18T00:00:00.000Z",
        "media_type": taxii.STIX_MEDIA_TYPE,
    }
    oid = _obj(4)["id"]
    assert client.get(f"{base}objects/{oid}/").json()["objects"][0]["id"] == oid
    versions = client.get(f"{base}objects/{oid}/versions/").json()
    assert versions == {"more": False, "versions": ["2026-11-18T00:00:00.000Z"]}
    assert client.get(f"{base}objects/indicator--nope/").status_code == 404


def test_errors(client: TestClient) -> None:
    url = _objects_url()
    assert client.get(url, params={"next": "garbage"}).status_code == 400
    assert client.get(url, params={"added_after": "yesterday"}).status_code == 400
    assert client.get(url, params={"limit": 0}).status_code == 422
    missing = "/taxii2/hotline/collections/00000000-0000-4000-8000-000000000000/objects/"
    r = client.get(missing)
    assert r.status_code == 404 and r.json()["title"] == "Not Found"
    assert client.post(url, json={"objects": []}).status_code == 403
    assert client.get("/taxii2/hotline/status/123/").status_code == 404


def test_accounts(tmp_path: Path, store_url) -> None:
    store = Store.open(store_url(tmp_path / "s.sqlite"))
    with store.write() as conn:
        with pytest.raises(InputError):
            taxii.add_user(conn, "misp", "short", datetime.now(UTC))
        taxii.add_user(conn, "misp", PASSWORD, datetime.now(UTC))
        taxii.add_user(conn, "misp", PASSWORD + "2", datetime.now(UTC))
        assert [n for n, _ in taxii.list_users(conn)] == ["misp"]
        taxii.remove_user(conn, "misp")
        assert taxii.list_users(conn) == []
    store.close()
