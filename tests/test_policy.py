"""Per-recipient policy end to end (issue 20): `sluice policy
get|set|unset|explain|simulate` against a sluice's record, beside the
running server, and `GET/PUT/DELETE /v1/policies/{scope}` with API keys:
values checked (422 naming the key), the unsure band never above the spam
threshold at any scope, and each key seeing its own tenant's rows only.
The configuration's `[policy]` is the `config` level under `global`.
`SLUICE_TEST_DATABASE=postgres` runs it all on PostgreSQL."""

import json
import time
import urllib.parse

from test_outbound import api, create_key

DAY = 86_400_000


def policy(sl, *args, check=True):
    cmd = ["policy", *args, "--data", sl.data]
    if sl.config_path:
        cmd += ["--config", sl.config_path]
    return sl.cli(*cmd, check=check)


def out(p):
    return p.stdout.decode()


def test_cli_sets_explains_and_unsets_each_level(sluice_factory):
    sl = sluice_factory(config={"policy": {"unsure_threshold": 2.5, "retention_days.Spam": 20}})

    policy(sl, "set", "global", "spam_threshold", "5.5")
    policy(sl, "set", "Example.NET", "spam_threshold", "6")
    policy(sl, "set", "ann@example.net", "block_senders", "*@*.bulk.test, bad@spam.test")
    policy(sl, "set", "ann@example.net", "unsure_action", "quarantine")

    got = out(policy(sl, "get", "example.net")).splitlines()
    assert got == ["spam_threshold 6.0"], got
    assert out(policy(sl, "get", "ann@example.net", "unsure_action")).strip() == "unsure_action quarantine"

    lines = out(policy(sl, "explain", "ann@example.net")).splitlines()
    for want in [
        "spam_threshold 6.0 from domain example.net, overriding global 5.5",
        "unsure_threshold 2.5 from config, overriding default 3.0",
        "unsure_action quarantine from user ann@example.net, overriding default tag",
        "spam_action quarantine from default",
        "retention_days.Spam 20 from config, overriding default 30",
        "block_senders [*@*.bulk.test, bad@spam.test] from user ann@example.net, overriding default []",
        "scan_failure tempfail from default",
    ]:
        assert want in lines, (want, lines)
    doc = json.loads(out(policy(sl, "explain", "bob@example.net", "--json")))
    assert doc["spam_threshold"] == {"value": 6.0, "from": "domain example.net",
                                     "overriding": {"from": "global", "value": 5.5}}, doc
    assert doc["block_senders"]["value"] == [] and doc["unsure_action"]["value"] == "tag", doc

    # Bad input names what is wrong, and stores nothing.
    for args, words in [
        (("set", "global", "spam_acton", "reject"), "unknown key"),
        (("set", "global", "spam_action", "bounce"), "spam_action"),
        (("set", "global", "retention_days.Nowhere", "3"), "no folder"),
        (("set", "not-a-scope", "archive", "true"), "scope"),
        (("set", "example.net", "unsure_threshold", "6.5"), "would be above spam_threshold"),
    ]:
        p = policy(sl, *args, check=False)
        assert p.returncode != 0 and words in p.stderr.decode(), (args, p.stderr)
    assert out(policy(sl, "get", "global")).splitlines() == ["spam_threshold 5.5"]

    # Unset: the level below applies again.
    policy(sl, "unset", "example.net", "spam_threshold")
    lines = out(policy(sl, "explain", "ann@example.net")).splitlines()
    assert "spam_threshold 5.5 from global, overriding default 5.0" in lines, lines
    p = policy(sl, "unset", "example.net", "spam_threshold", check=False)
    assert p.returncode == 1 and "not set" in p.stderr.decode(), p.stderr
    p = policy(sl, "get", "example.net", "spam_threshold", check=False)
    assert p.returncode == 1 and "effective: 5.5 from global" in p.stderr.decode(), p.stderr

    # Another tenant's policy is its own.
    policy(sl, "set", "global", "spam_action", "reject", "--tenant", "other")
    assert out(policy(sl, "get", "global", "--tenant", "other")).splitlines() == ["spam_action reject"]
    assert "spam_action quarantine from default" in out(policy(sl, "explain", "ann@example.net")).splitlines()


def test_simulate_counts_changes_of_fate_by_direction(sluice_factory):
    sl = sluice_factory()
    # The tenant exists once a key is made; filter mode's `filtered` events
    # (one per recipient) are written as it writes them.
    create_key(sl, "default")
    tenant = sl.rows("SELECT id FROM tenants WHERE name = 'default'")[0][0]
    now = int(time.time() * 1000)
    recorded = [("ann@example.net", 5.5, "spam", "quarantine", 1), ("bob@example.net", 5.2, "spam", "quarantine", 2),
                ("ann@example.net", 8.0, "spam", "quarantine", 2), ("carl@example.org", 5.5, "spam", "quarantine", 1),
                ("dan@example.net", 1.0, "ham", "deliver", 1), ("old@example.net", 5.5, "spam", "quarantine", 30)]
    for i, (addr, score, cls, action, ago) in enumerate(recorded):
        detail = json.dumps({"score": score, "class": cls, "action": action, "level": "default",
                             "sender": "x@sender.test"})
        sl.rows("INSERT INTO events (tenant_id, message, idx, address, type, at, reason, detail) "
                "VALUES (?, ?, 0, ?, 'filtered', ?, ?, ?)", tenant, f"q{i}", addr, now - ago * DAY, action, detail)

    text = out(policy(sl, "simulate", "example.net", "spam_threshold", "6", "--days", "7")).splitlines()
    assert "quarantine → tag: 2" in text, text
    assert "changed: 2 of 5 (4 in scope)" in text, text
    doc = json.loads(out(policy(sl, "simulate", "global", "spam_action", "reject", "--days", "7", "--json")))
    assert doc["total"] == 5 and doc["changed"] == 4, doc
    assert doc["directions"] == [{"from": "quarantine", "to": "reject", "count": 4}], doc
    # Nothing was stored by a simulation.
    assert out(policy(sl, "get", "global")) == ""


def test_api_get_put_delete_per_tenant(sluice_factory):
    sl = sluice_factory()
    acme, other = create_key(sl, "acme"), create_key(sl, "other")
    ann = "/v1/policies/" + urllib.parse.quote("ann@example.net")

    status, body, _ = api(sl, "PUT", "/v1/policies/global", acme, {"spam_threshold": 5.5, "archive": True})
    assert status == 200, body
    assert body["scope"] == "global" and body["values"] == {"archive": True, "spam_threshold": 5.5}, body
    status, body, _ = api(sl, "PUT", "/v1/policies/example.net", acme,
                          {"spam_threshold": "6", "block_senders": ["*.bulk.test"], "retention_days.Spam": 14})
    assert status == 200, body
    assert body["values"] == {"block_senders": ["*.bulk.test"], "retention_days.Spam": 14, "spam_threshold": 6.0}
    status, body, _ = api(sl, "PUT", ann, acme, {"unsure_action": "quarantine"})
    assert status == 200, body

    status, body, _ = api(sl, "GET", ann + "?effective=true", acme)
    assert status == 200, body
    assert body["values"] == {"unsure_action": "quarantine"}, body
    e = body["effective"]
    assert e["spam_threshold"] == {"value": 6.0, "from": "domain example.net",
                                   "overriding": {"from": "global", "value": 5.5}}, e
    assert e["archive"]["from"] == "global" and e["retention_days.Spam"]["value"] == 14, e
    assert "spam_threshold 6.0 from domain example.net, overriding global 5.5" in body["explain"], body
    status, body, _ = api(sl, "GET", "/v1/policies/example.net", acme)
    assert status == 200 and "effective" not in body and len(body["values"]) == 3, body

    # Bad keys and values: 422 naming the key; nothing stored.
    for scope, fields, field in [
        ("global", {"spam_acton": "reject"}, "spam_acton"),
        ("global", {"spam_action": "bounce"}, "spam_action"),
        ("global", {"spam_threshold": "high"}, "spam_threshold"),
        ("global", {"archive": 3}, "archive"),
        ("global", {"retention_days.Spam": 0}, "retention_days.Spam"),
        ("global", {"allow_senders": ["a@b@c"]}, "allow_senders"),
        ("example.net", {"unsure_threshold": 7}, "unsure_threshold"),
        ("nowhere", {"archive": True}, "scope"),
    ]:
        status, body, _ = api(sl, "PUT", f"/v1/policies/{scope}", acme, fields)
        assert status == 422 and body["error"]["field"] == field, (fields, status, body)
    status, body, _ = api(sl, "PUT", "/v1/policies/global", acme, ["spam_threshold"])
    assert status == 422, body
    status, body, _ = api(sl, "GET", "/v1/policies/global", acme)
    assert body["values"] == {"archive": True, "spam_threshold": 5.5}, body

    # Tenant isolation: the other key sees none of acme's rows, and its own
    # change is its own.
    for path in ("/v1/policies/global", "/v1/policies/example.net", ann):
        status, body, _ = api(sl, "GET", path, other)
        assert status == 200 and body["values"] == {}, (path, body)
    status, body, _ = api(sl, "GET", ann + "?effective=true", other)
    assert body["effective"]["spam_threshold"] == {"value": 5.0, "from": "default"}, body
    assert api(sl, "DELETE", "/v1/policies/global", other)[0] == 204
    status, body, _ = api(sl, "GET", "/v1/policies/global", acme)
    assert len(body["values"]) == 2, body
    assert api(sl, "GET", "/v1/policies/global")[0] == 401

    # DELETE one key (null in a PUT does the same), then the whole scope.
    assert api(sl, "DELETE", "/v1/policies/example.net?key=retention_days.Spam", acme)[0] == 204
    assert api(sl, "DELETE", "/v1/policies/example.net?key=retention_days.Spam", acme)[0] == 404
    assert api(sl, "DELETE", "/v1/policies/example.net?key=nope", acme)[0] == 422
    status, body, _ = api(sl, "PUT", "/v1/policies/example.net", acme, {"block_senders": None})
    assert status == 200 and body["values"] == {"spam_threshold": 6.0}, body
    assert api(sl, "DELETE", "/v1/policies/example.net", acme)[0] == 204
    status, body, _ = api(sl, "GET", ann + "?effective=true", acme)
    assert body["effective"]["spam_threshold"]["from"] == "global", body

    # The CLI and the API read the same rows.
    lines = out(policy(sl, "explain", "ann@example.net", "--tenant", "acme")).splitlines()
    assert "spam_threshold 5.5 from global, overriding default 5.0" in lines, lines
    assert "unsure_action quarantine from user ann@example.net, overriding default tag" in lines, lines
