"""Weak verification tokens flagged in REST answers (issue 23, item 8): accepted, with a
``warnings`` entry (Magento's routes: only when there is one), the token never quoted."""

from __future__ import annotations

from tests.api.conftest import TOKEN, Api

STRONG = TOKEN  # a whsec_ key of 32 bytes
HOOK = "http://127.0.0.1:9/hook"


def test_rest_answers_carry_the_warning(api: Api) -> None:
    weak = "hunter2"
    created = api.client.post("/v1/subscriptions", headers=api.auth(), json={
        "event_name": "shop.order.created", "recipient": HOOK, "verification_token": weak})
    assert created.status_code == 201, created.text
    (warning,) = created.json()["warnings"]
    assert warning.startswith("weak verification token: it is shorter than 16")
    assert weak not in created.text
    sub_id = created.json()["id"]
    patched = api.client.patch(f"/v1/subscriptions/{sub_id}", headers=api.auth(),
                               json={"verification_token": "x" * 20})
    assert "only 1 different characters" in patched.json()["warnings"][0]
    rotated = api.client.post(f"/v1/subscriptions/{sub_id}/rotate-token", headers=api.auth(),
                              json={"verification_token": weak, "grace": "0"})
    assert rotated.status_code == 200 and len(rotated.json()["warnings"]) == 1
    fine = api.client.patch(f"/v1/subscriptions/{sub_id}", headers=api.auth(),
                            json={"verification_token": STRONG})
    assert fine.json()["warnings"] == []
    untouched = api.client.patch(f"/v1/subscriptions/{sub_id}", headers=api.auth(),
                                 json={"active": False})
    assert untouched.json()["warnings"] == []


def test_magento_answers_carry_the_warning_only_when_weak(api: Api) -> None:
    for token, warned in (("supersecret", True), (STRONG, False)):
        saved = api.client.post("/V1/async_event", headers=api.auth(), json={"asyncEvent": {
            "event_name": "shop.order.created", "recipient_url": HOOK,
            "verification_token": token}})
        assert saved.status_code == 200, saved.text
        assert ("warnings" in saved.json()) is warned  # else Magento's shape, exactly
        assert token not in saved.text
