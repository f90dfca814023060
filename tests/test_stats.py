"""Statistics end to end: two tenants send through a real `sluice serve`
to the aiosmtpd sink, with open and click tracking; a Postfix DSN comes
back to one recipient's VERP address; a person opens, Google's image proxy
opens, a link scanner clicks. `GET /v1/stats` (each key sees its own
tenant's numbers only) and `sluice stats` (a table, or JSON lines) count
every one of them, grouped or not; a bad window or grouping is a 422 that
names the field. `SLUICE_TEST_DATABASE=postgres` runs it all on
PostgreSQL."""

import json
import re

import pytest

from helpers.procs import to_toml, wait_until
from test_outbound import BOUNCE_DOMAIN, RFC3339_MS, api, create_key, delivered_to, feed, fixture, message, wait_status
from test_tracking import get, html_of

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
HTML = '<html><body><p>Hello, <a href="https://shop.example/offer">the offer</a>.</p></body></html>'


@pytest.fixture
def tracked(sink, sluice_factory):
    config = {
        "queue": {"retry_initial_secs": 1, "retry_max_secs": 2},
        "outbound": {"bounce_domain": BOUNCE_DOMAIN},
        "outbound.mx_override": {"*": sink.addr},
    }
    sl = sluice_factory(start=False, config=config)
    config["tracking"] = {"base_url": sl.http + "/"}
    with open(sl.config_path, "w") as f:
        f.write(to_toml(config))
    keys = {"acme": create_key(sl, "acme"), "other": create_key(sl, "other")}
    sl.start()
    return sl, sink, keys


def send(sl, key, to, tags, **fields):
    body = {"from": "app@acme.test", "to": to, "subject": "offer", "text": "Hello.\n", "tags": tags, **fields}
    status, sent, _ = api(sl, "POST", "/v1/messages", key, body)
    assert status == 202, sent
    return sent["id"]


def stats(sl, key, query=""):
    status, body, _ = api(sl, "GET", "/v1/stats" + (f"?{query}" if query else ""), key)
    assert status == 200, body
    return body


def counts(sent=0, delivered=0, deferred=0, bounces=None, complained=0, unsubscribed=0, opened=(0, 0, 0, 0),
           clicked=(0, 0, 0, 0)):
    """The API's counts of a group (rates left out), written out."""
    def engagement(t):
        return dict(zip(("total", "unique", "human", "unique_human"), t))
    bounces = bounces or {}
    return {"sent": sent, "delivered": delivered, "deferred": deferred, "bounced": sum(bounces.values()),
            "bounced_by_reason": bounces, "complained": complained, "unsubscribed": unsubscribed,
            "opened": engagement(opened), "clicked": engagement(clicked)}


def without_rates(c):
    return {k: v for k, v in c.items() if k not in ("rates", "key", "start")}


def scene(sl, sink, keys):
    """acme: a news message to ann and bob (tracked), a promo to carol;
    other: one message to zed. Bob's bounces back; ann's pixel is loaded by
    her browser and by Google's proxy; a scanner clicks her link at once."""
    news = send(sl, keys["acme"], ["ann@dest.test", "bob@other.test"], ["news"], html=HTML,
                track_opens=True, track_clicks=True)
    send(sl, keys["acme"], ["carol@dest.test"], ["promo"])
    send(sl, keys["other"], ["zed@dest.test"], ["news"])
    got = {a: delivered_to(sink, a) for a in ("ann@dest.test", "bob@other.test", "carol@dest.test", "zed@dest.test")}
    for address in ("ann@dest.test", "bob@other.test"):
        wait_status(sl, keys["acme"], news, address, "delivered")
    mid = message(sl, keys["acme"], news)["message_id"]
    dsn = fixture("bounces", "lhost-postfix-05.eml",
                  {"kijitora@example.org": "bob@other.test", "FFFFFFFF.0000000@example.co.jp": mid})
    feed(sl, got["bob@other.test"].mail_from, dsn)
    wait_status(sl, keys["acme"], news, "bob@other.test", "bounced")

    html, _ = html_of(got["ann@dest.test"].content)
    link = re.findall(r'(' + re.escape(sl.http) + r'/t/c/[A-Za-z0-9_-]+)', html)[0]
    pixel = re.findall(r'(' + re.escape(sl.http) + r'/t/o/[A-Za-z0-9_-]+)', html)[0]
    assert get(link, ua="Mozilla/5.0 (compatible; scanner)")[0] == 302
    assert get(pixel, ua=BROWSER)[0] == 200
    assert get(pixel, ua=PROXY)[0] == 200

    # Opens and clicks reach the record through the tracking's journal, a
    # moment after the answer.
    def recorded(kind, n):
        status, page, _ = api(sl, "GET", f"/v1/events?message={news}&type={kind}", keys["acme"])
        return status == 200 and len(page["events"]) == n
    wait_until(lambda: recorded("opened", 2) and recorded("clicked", 1), 20, what="the opens and the click")
    return news


def test_stats_count_every_event_for_its_own_tenant_only(tracked):
    sl, sink, keys = tracked
    scene(sl, sink, keys)

    # Default window: the last 7 days.
    s = stats(sl, keys["acme"])
    assert s["to"] - s["from"] == 7 * 86_400_000 and s["group_by"] is None and s["groups"] == [], s
    whole = counts(3, 3, bounces={"userunknown": 1}, opened=(2, 1, 1, 1), clicked=(1, 1, 0, 0))
    assert without_rates(s["total"]) == whole, s["total"]
    assert s["total"]["rates"] == {"delivered": 1.0, "bounced": 0.3333, "complained": 0.0, "human_open": 0.3333}

    # The other tenant sees its own mail, and nothing of acme's.
    s = stats(sl, keys["other"], "group_by=tag")
    assert without_rates(s["total"]) == counts(1, 1), s
    assert [(g["key"], without_rates(g)) for g in s["groups"]] == [("news", counts(1, 1))], s

    def by(g):
        return [(x["key"], without_rates(x)) for x in stats(sl, keys["acme"], f"group_by={g}")["groups"]]
    news = counts(2, 2, bounces={"userunknown": 1}, opened=(2, 1, 1, 1), clicked=(1, 1, 0, 0))
    assert by("tag") == [("news", news), ("promo", counts(1, 1))]
    ann_and_carol = counts(2, 2, opened=(2, 1, 1, 1), clicked=(1, 1, 0, 0))
    assert by("domain") == [("dest.test", ann_and_carol), ("other.test", counts(1, 1, bounces={"userunknown": 1}))]
    assert by("machine_class") == [
        ("human", counts(opened=(1, 1, 1, 1))),
        ("privacy_proxy", counts(opened=(1, 1, 0, 0))),
        ("scanner", counts(clicked=(1, 1, 0, 0))),
        (None, counts(3, 3, bounces={"userunknown": 1})),
    ]
    assert by("provider") == [("sluice", whole)]
    reasons = dict(by("reason"))
    assert reasons["userunknown"] == counts(bounces={"userunknown": 1}) and reasons["human"]["opened"]["total"] == 1
    days = stats(sl, keys["acme"], "group_by=day")["groups"]
    hours = stats(sl, keys["acme"], "group_by=hour")["groups"]
    for buckets in (days, hours):
        assert buckets and all(g["key"].endswith(":00:00Z") and g["start"] for g in buckets), buckets
        assert sum(g["sent"] for g in buckets) == 3 and sum(g["opened"]["unique"] for g in buckets) == 1

    # A window before any of it: nothing.
    s = stats(sl, keys["acme"], "from=2020-01-01T00:00:00Z&to=1600000000000&group_by=day")
    assert without_rates(s["total"]) == counts() and s["groups"] == [], s


def test_bad_windows_and_groupings_are_422_naming_the_field(tracked):
    sl, _, keys = tracked
    for query, field in [("group_by=week", "group_by"), ("from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z", "from"),
                         ("from=yesterday", "from"), ("to=later", "to")]:
        status, body, _ = api(sl, "GET", f"/v1/stats?{query}", keys["acme"])
        assert status == 422 and body["error"]["field"] == field, (query, body)
    status, body, _ = api(sl, "GET", "/v1/stats")
    assert status == 401, body


def test_sluice_stats_prints_the_api_s_numbers(tracked):
    sl, sink, keys = tracked
    scene(sl, sink, keys)
    api_total = stats(sl, keys["acme"], "from=0&group_by=domain")

    out = sl.cli("stats", "--tenant", "acme", "--from", "0", "--group-by", "domain", "--json", "--data", sl.data)
    lines = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert [x["key"] for x in lines if not x["total"]] == ["dest.test", "other.test"], lines
    total = [x for x in lines if x["total"]]
    assert len(total) == 1 and total[0]["tenant"] == "acme", lines
    head = ("tenant", "from", "to", "from_rfc3339", "to_rfc3339", "group_by", "total")
    assert total[0]["from_rfc3339"] == "1970-01-01T00:00:00.000Z", total[0]
    assert RFC3339_MS.match(total[0]["to_rfc3339"]) and RFC3339_MS.match(api_total["to_rfc3339"]), total[0]
    assert without_rates({k: v for k, v in total[0].items() if k not in head}) \
        == without_rates(api_total["total"])

    out = sl.cli("stats", "--tenant", "acme", "--data", sl.data).stdout.decode()
    # One time format: RFC 3339 UTC, to the millisecond the window has.
    assert re.search(r"^acme from \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z to \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$",
                     out, re.M), out
    assert re.search(r"^total\s+3\s+3\s+0\s+1\s+0\s+0\s+2/1/1/1\s+1/1/0/0\s+100\.00\s+33\.33", out, re.M), out
    assert "bounced by reason: userunknown 1" in out, out
    # Every tenant's, added up.
    out = sl.cli("stats", "--json", "--data", sl.data).stdout.decode()
    everyone = json.loads(out.splitlines()[-1])
    assert everyone["tenant"] is None and everyone["sent"] == 4 and everyone["delivered"] == 4, everyone
    # A tenant the record does not know is an error, not a new tenant.
    p = sl.cli("stats", "--tenant", "nobody", "--data", sl.data, check=False)
    assert p.returncode == 2 and b"no tenant nobody" in p.stderr, p
    p = sl.cli("stats", "--group-by", "week", "--data", sl.data, check=False)
    assert p.returncode == 2 and b"one of hour, day" in p.stderr, p
