"""The dashboard's Overview, Suppressions, Webhooks and Policies pages
(issue 21), end to end, against a real sluice and the API beside it.

Mail is sent through the API to the aiosmtpd sink: some delivered, one
bounced back (a Postfix DSN: userunknown), one tracked and opened by a
proxy, clicked by a scanner and then by a person. The Overview shows the
record's statistics with the numbers `GET /v1/stats` gives; in headless
Chromium an operator suppresses an address, finds it, exports the list and
removes it, and makes a webhook endpoint whose secret is shown once and
whose delivery log shows the POSTs a local receiver got; a policy key set
from the page is the effective value with its source, as the API explains
it. An operator granted one tenant never sees another's numbers, list,
endpoints or policies (404). A screenshot of each page is saved
(SLUICE_TEST_ARTIFACTS, else the test's tmp_path)."""

import html as htmllib
import os
import re
import time
import urllib.parse

import pytest

from helpers.procs import to_toml, wait_until
from test_dashboard import PASSWORD, add_operator, login, request, set_cookies, webdriver
from test_outbound import BOUNCE_DOMAIN, api, create_key, delivered_to, feed, fixture, message, send, wait_status
from test_tracking import get, html_of
from test_webhooks_out import receiver  # noqa: F401  (a fixture)


@pytest.fixture
def world(sink, sluice_factory):
    """A sluice sending to the sink, with tracking, webhooks to 127.0.0.1,
    and API keys of two tenants."""
    config = {
        "queue": {"retry_initial_secs": 1, "retry_max_secs": 2},
        "outbound": {"bounce_domain": BOUNCE_DOMAIN},
        "outbound.mx_override": {"*": sink.addr},
        "webhooks": {"retry_schedule_secs": [1, 1, 1], "allow_destinations": ["127.0.0.0/8"]},
    }
    sl = sluice_factory(start=False, config=config)
    config["tracking"] = {"base_url": sl.http + "/"}
    with open(sl.config_path, "w") as f:
        f.write(to_toml(config))
    keys = {"acme": create_key(sl, "acme"), "other": create_key(sl, "other")}
    sl.start()
    return sl, sink, keys


def shots_dir(tmp_path):
    d = os.environ.get("SLUICE_TEST_ARTIFACTS") or str(tmp_path / "artifacts")
    os.makedirs(d, exist_ok=True)
    print(f"dashboard screenshots: {d}")
    return d


def cell(page, table, cls):
    """The text of the first `<td class="cls">` of the table with id `table`."""
    start = page.index(f'id="{table}"')
    m = re.search(r'<td class="' + re.escape(cls) + r'">(.*?)</td>', page[start:], re.S)
    assert m, (table, cls, page[start:start + 2000])
    return htmllib.unescape(re.sub(r"<[^>]+>", "", m.group(1))).strip()


def rows(page, table, cls):
    """Every `<td class="cls">` text of the table with id `table`."""
    if f'id="{table}"' not in page:
        return []
    part = page[page.index(f'id="{table}"'):]
    part = part[:part.index("</table>")]
    return [htmllib.unescape(v).strip() for v in re.findall(r'<td class="' + re.escape(cls) + r'">(.*?)</td>', part)]


def bounce(sl, sink, key, to):
    """Sends to `to` and feeds a Postfix DSN back: bounced, userunknown."""
    sent = send(sl, key, [to])
    got = delivered_to(sink, to)
    wait_status(sl, key, sent["id"], to, "delivered")
    mid = message(sl, key, sent["id"])["message_id"]
    dsn = fixture("bounces", "lhost-postfix-05.eml",
                  {"kijitora@example.org": to, "FFFFFFFF.0000000@example.co.jp": mid})
    feed(sl, got.mail_from, dsn)
    assert wait_status(sl, key, sent["id"], to, "bounced")["reason"] == "userunknown"


def tracked(sl, sink, key, to):
    """A tracked message to `to`: opened by a proxy and clicked by a
    scanner at once, then clicked by a person 11 s after delivery."""
    body = {"from": "app@acme.test", "to": [to], "subject": "offer", "text": "see the offer\n",
            "html": '<p><a href="https://shop.example/offer">the offer</a></p>',
            "track_opens": True, "track_clicks": True}
    status, sent, _ = api(sl, "POST", "/v1/messages", key, body)
    assert status == 202, sent
    page, _ = html_of(delivered_to(sink, to).content)
    click = re.findall(r'href="?(' + re.escape(sl.http) + r'/t/c/[A-Za-z0-9_-]+)', page)[0]
    pixel = re.findall(r'<img src="(' + re.escape(sl.http) + r'/t/o/[A-Za-z0-9_-]+)"', page)[0]
    delivered_at = wait_status(sl, key, sent["id"], to, "delivered")["updated_at"]
    assert get(click, ua="Mozilla/5.0 (compatible; scanner)")[0] == 302
    get(pixel, ua="Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)")
    time.sleep(max(0.0, (delivered_at + 11_000) / 1000 - time.time()))
    assert get(click)[0] == 302
    return sent["id"]


def stats_api(sl, key, **params):
    status, s, _ = api(sl, "GET", "/v1/stats?" + urllib.parse.urlencode(params), key)
    assert status == 200, s
    return s


def test_overview_shows_the_records_numbers_per_tenant(world, tmp_path):
    sl, sink, keys = world
    for to in ("amy@dest.test", "bea@dest.test"):
        send(sl, keys["acme"], [to])
        delivered_to(sink, to)
    bounce(sl, sink, keys["acme"], "carl@far.test")
    mid = tracked(sl, sink, keys["acme"], "dora@dest.test")
    send(sl, keys["other"], ["olga@dest.test"])
    delivered_to(sink, "olga@dest.test")

    def settled():
        s = stats_api(sl, keys["acme"])["total"]
        return s if s["delivered"] == 4 and s["clicked"]["human"] == 1 and s["opened"]["total"] == 1 else None
    api_total = wait_until(settled, 20, interval=0.3, what="the record to have every event")
    add_operator(sl, tmp_path, "ann", "acme")
    add_operator(sl, tmp_path, "root")
    ann, _ = login(sl, "ann")
    status, _, page = request(sl, "GET", "/overview?window=7d", ann)
    assert status == 200, page
    expect = {"sent": 4, "delivered": 4, "bounced": 1, "complained": 0}
    for cls, n in expect.items():
        assert cell(page, "totals", cls) == str(n) == str(api_total[cls]), (cls, page)
    assert cell(page, "totals", "opens") == "0 / 1", "the proxy's open is a machine's"
    assert cell(page, "totals", "clicks") == "1 / 1", "one person, one scanner"
    assert cell(page, "totals", "bounced-rate") == "25.00%"
    assert rows(page, "bounce-reasons", "reason") == ["userunknown"]
    assert rows(page, "domains", "domain") == ["dest.test", "far.test"]
    assert rows(page, "domains", "sent") == ["3", "1"] and rows(page, "domains", "bounced") == ["0", "1"]
    by_domain = stats_api(sl, keys["acme"], group_by="domain")["groups"]
    assert [(g["key"], g["sent"]) for g in by_domain] == [("dest.test", 3), ("far.test", 1)]
    # The charts are SVG drawn on the server, their tooltips escaped text.
    assert page.count("<svg") >= 3 and re.search(r"<title>\d\d-\d\d: 4 delivered</title>", page), page
    assert "<script" not in page
    # 24 hours: hourly bars, the same totals.
    status, _, page = request(sl, "GET", "/overview?window=24h", ann)
    assert status == 200 and cell(page, "totals", "sent") == "4"
    assert re.search(r"<title>\d\d:00: 4 delivered</title>", page), page
    # Another tenant: a 404 for ann; root sees every tenant, added up, or one.
    assert request(sl, "GET", "/overview?tenant=other", ann)[0] == 404
    root, _ = login(sl, "root")
    status, _, page = request(sl, "GET", "/overview", root)
    assert status == 200 and cell(page, "totals", "sent") == "5", "acme's 4 and other's 1"
    status, _, page = request(sl, "GET", "/overview?tenant=other", root)
    assert status == 200 and cell(page, "totals", "sent") == "1" and cell(page, "totals", "bounced") == "0"
    assert message(sl, keys["acme"], mid)["recipients"][0]["status"] == "delivered"


def test_suppressions_and_webhooks_from_the_browser(world, receiver, tmp_path):
    sl, sink, keys = world
    add_operator(sl, tmp_path, "ann", "acme")
    shots = shots_dir(tmp_path)
    driver = webdriver()
    try:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        def loaded():
            WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")

        def click(by, what):
            old = driver.find_element(By.TAG_NAME, "html")
            driver.find_element(by, what).click()
            WebDriverWait(driver, 15).until(lambda d: old != d.find_element(By.TAG_NAME, "html"))
            loaded()

        driver.get(sl.http + "/login")
        driver.find_element(By.ID, "name").send_keys("ann")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        click(By.ID, "login")
        click(By.ID, "nav-suppressions")
        assert driver.current_url.endswith("/suppressions")
        driver.find_element(By.ID, "add-address").send_keys("Sue@Dest.test")
        driver.find_element(By.ID, "add-reason").send_keys("asked us <politely>")
        click(By.ID, "add")
        assert "sue@dest.test suppressed (asked us <politely>)." in driver.find_element(By.ID, "flash").text
        assert "is suppressed: asked us <politely> (manual" in driver.find_element(By.ID, "exact").text
        status, entry, _ = api(sl, "GET", "/v1/suppressions/sue@dest.test", keys["acme"])
        assert status == 200 and entry["reason"] == "asked us <politely>" and entry["source"] == "manual"
        # A bad address is refused as the API refuses it, said on the page.
        driver.find_element(By.ID, "add-address").send_keys("not an address")
        click(By.ID, "add")
        assert "address: not a valid email address" in driver.find_element(By.ID, "flash").text
        api(sl, "POST", "/v1/suppressions", keys["acme"], {"address": "zed@dest.test"})
        q = driver.find_element(By.ID, "q")
        q.clear()
        q.send_keys("su")
        click(By.ID, "search")
        listed = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#suppressions td.address")]
        assert listed == ["sue@dest.test"], listed
        driver.save_screenshot(os.path.join(shots, "suppressions.png"))
        # The export is the API's CSV.
        cookies = {"sluice_session": driver.get_cookie("sluice_session")["value"]}
        status, headers, csv = request(sl, "GET", "/suppressions/export?tenant=acme", cookies)
        assert status == 200 and headers["Content-Disposition"] == 'attachment; filename="suppressions-acme.csv"'
        assert csv == api(sl, "GET", "/v1/suppressions/export", keys["acme"])[1]
        assert csv.splitlines()[1].startswith("sue@dest.test,asked us <politely>,manual,"), csv
        click(By.CSS_SELECTOR, "#suppressions button.remove")
        assert "sue@dest.test removed" in driver.find_element(By.ID, "flash").text
        assert api(sl, "GET", "/v1/suppressions/sue@dest.test", keys["acme"])[0] == 404

        # Webhooks: an endpoint for delivered events only; its secret shown once.
        click(By.ID, "nav-webhooks")
        driver.find_element(By.ID, "url").send_keys(receiver.url)
        driver.find_element(By.ID, "description").send_keys("from the dashboard")
        driver.find_element(By.ID, "event-delivered").click()
        click(By.ID, "create")
        said = driver.find_element(By.ID, "flash").text
        m = re.search(r"Endpoint (ep_[0-9a-f]+) created\. Its signing secret, shown only now: (whsec_\S+)", said)
        assert m, said
        ep, secret = m.group(1), m.group(2)
        receiver.secrets.append(secret)
        status, listed, _ = api(sl, "GET", "/v1/webhook-endpoints", keys["acme"])
        assert [(e["id"], e["events"], e["description"]) for e in listed["endpoints"]] == [
            (ep, ["delivered"], "from the dashboard")]
        driver.refresh()
        loaded()
        assert secret not in driver.page_source, "the secret is shown once"
        sent = send(sl, keys["acme"], ["walt@dest.test"])
        delivered_to(sink, "walt@dest.test")
        wait_until(lambda: receiver.ok_ids(), 30, what="the delivered event's webhook")
        got = receiver.got()
        assert got[0]["verified_by"] == [0], "signed with the secret the page showed"
        event_id = int(got[0]["id"].removeprefix("msg_"))
        click(By.CSS_SELECTOR, "a.endpoint-link")
        outcomes = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#deliveries td.outcome")]
        assert outcomes == ["delivered"], outcomes
        assert [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#deliveries td.event")] == [str(event_id)]
        status, log, _ = api(sl, "GET", f"/v1/webhook-endpoints/{ep}/deliveries", keys["acme"])
        assert [(d["event_id"], d["outcome"]) for d in log["deliveries"]] == [(event_id, "delivered")], log
        # Replay: the same event again, under the same webhook id.
        driver.find_element(By.ID, "replay-event").send_keys(str(event_id))
        click(By.ID, "replay")
        assert "1 event(s) queued again." in driver.find_element(By.ID, "flash").text
        wait_until(lambda: len(receiver.got()) == 2, 30, what="the replayed webhook")
        assert receiver.got()[1]["id"] == got[0]["id"]
        driver.refresh()
        loaded()
        wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#deliveries td.outcome")) == 2
                   or driver.refresh(), 20, interval=0.5, what="the replay in the log")
        driver.save_screenshot(os.path.join(shots, "webhook.png"))
        assert message(sl, keys["acme"], sent["id"])["recipients"][0]["status"] == "delivered"
        click(By.LINK_TEXT, "All endpoints")
        driver.save_screenshot(os.path.join(shots, "webhooks.png"))
        click(By.CSS_SELECTOR, "#endpoints button.delete")
        assert f"Endpoint {ep} deleted." in driver.find_element(By.ID, "flash").text
        assert api(sl, "GET", f"/v1/webhook-endpoints/{ep}", keys["acme"])[0] == 404
        for page, name in (("/overview", "overview.png"), ("/policies?scope=dest.test", "policies.png")):
            driver.get(sl.http + page)
            loaded()
            driver.save_screenshot(os.path.join(shots, name))
    finally:
        driver.quit()
    for name in ("suppressions.png", "webhook.png", "webhooks.png", "overview.png", "policies.png"):
        assert os.path.getsize(os.path.join(shots, name)) > 1000, name


def flash_after(sl, cookies, status_headers):
    """The page a form went back to, with the result it carried."""
    status, headers, _ = status_headers
    assert status == 303, status_headers
    note = {k: v for k, (v, _) in set_cookies(headers).items()}
    status, _, page = request(sl, "GET", headers["Location"], {**cookies, **note})
    assert status == 200, page
    m = re.search(r'id="flash">(.*?)</p>', page, re.S)
    return htmllib.unescape(m.group(1)) if m else None, page


def test_policies_set_explain_and_unset(world, tmp_path):
    sl, _, keys = world
    add_operator(sl, tmp_path, "ann", "acme")
    ann, csrf = login(sl, "ann")
    form = {"csrf": csrf, "tenant": "acme", "scope": "dest.test", "key": "spam_threshold", "value": "7.5"}
    said, _ = flash_after(sl, ann, request(sl, "POST", "/policies/set", ann, form))
    assert said == "spam_threshold set to 7.5 at dest.test.", said
    status, page, _ = api(sl, "GET", "/v1/policies/ann@dest.test?effective=true", keys["acme"])
    assert status == 200 and page["effective"]["spam_threshold"] == {
        "value": 7.5, "from": "domain dest.test", "overriding": {"from": "default", "value": 5.0}}, page
    status, _, html = request(sl, "GET", "/policies?scope=ann@dest.test", ann)
    assert status == 200
    effective = dict(zip(rows(html, "effective", "key"), zip(rows(html, "effective", "value"),
                                                             rows(html, "effective", "from"))))
    assert effective["spam_threshold"] == ("7.5", "domain dest.test"), effective
    # Every key as `GET /v1/policies/{scope}?effective=true` has it, from the same level.
    assert {k: f for k, (_, f) in effective.items()} == {k: v["from"] for k, v in page["effective"].items()}
    assert rows(html, "set", "key") == [], "nothing set at the address itself"
    # A change the API refuses is refused here, said as the API says it.
    bad = {**form, "key": "unsure_threshold", "value": "9"}
    said, _ = flash_after(sl, ann, request(sl, "POST", "/policies/set", ann, bad))
    assert said and said.startswith("unsure_threshold") and "spam_threshold" in said, said
    assert request(sl, "POST", "/policies/set", ann, {**form, "csrf": ""})[0] == 403
    # Unset: the domain's key gone, the default back.
    said, html = flash_after(sl, ann, request(sl, "POST", "/policies/unset", ann, form))
    assert said == "spam_threshold unset at dest.test.", said
    assert rows(html, "set", "key") == []
    status, page, _ = api(sl, "GET", "/v1/policies/dest.test?effective=true", keys["acme"])
    assert page["values"] == {} and page["effective"]["spam_threshold"]["from"] == "default", page


def test_an_operator_of_one_tenant_reaches_nothing_of_another(world, receiver, tmp_path):
    sl, _, keys = world
    theirs = keys["other"]
    assert api(sl, "POST", "/v1/suppressions", theirs, {"address": "secret@other.test"})[0] == 201
    status, ep, _ = api(sl, "POST", "/v1/webhook-endpoints", theirs, {"url": receiver.url})
    assert status == 201, ep
    assert api(sl, "PUT", "/v1/policies/global", theirs, {"spam_threshold": 9.0})[0] == 200
    add_operator(sl, tmp_path, "ann", "acme")
    ann, csrf = login(sl, "ann")
    for path in ("/suppressions?tenant=other", "/suppressions/export?tenant=other", "/webhooks?tenant=other",
                 f"/webhooks/{ep['id']}?tenant=other", "/policies?tenant=other", "/overview?tenant=other"):
        assert request(sl, "GET", path, ann)[0] == 404, path
    # Her own tenant's pages never show the other's.
    for path in ("/suppressions", "/suppressions/export", "/webhooks"):
        status, _, page = request(sl, "GET", path, ann)
        assert status == 200 and "secret@other.test" not in page and ep["id"] not in page, path
    for path in (f"/webhooks/{ep['id']}", f"/webhooks/{ep['id']}?tenant=acme"):
        assert request(sl, "GET", path, ann)[0] == 404, path
    status, _, page = request(sl, "GET", "/policies", ann)
    assert status == 200 and dict(zip(rows(page, "effective", "key"), rows(page, "effective", "from")))[
        "spam_threshold"] == "default"
    # Her forms cannot act on it either.
    posts = [
        ("/suppressions/remove", {"tenant": "other", "address": "secret@other.test"}),
        ("/suppressions/add", {"tenant": "other", "address": "x@other.test"}),
        (f"/webhooks/{ep['id']}/delete", {"tenant": "other"}),
        (f"/webhooks/{ep['id']}/replay", {"tenant": "other", "event_id": "1"}),
        ("/policies/unset", {"tenant": "other", "scope": "global", "key": "spam_threshold"}),
    ]
    for path, form in posts:
        assert request(sl, "POST", path, ann, {"csrf": csrf, **form})[0] == 404, path
    assert request(sl, "POST", f"/webhooks/{ep['id']}/delete", ann, {"csrf": csrf, "tenant": "acme"})[0] == 404
    assert api(sl, "GET", "/v1/suppressions/secret@other.test", theirs)[0] == 200
    assert api(sl, "GET", "/v1/suppressions/x@other.test", theirs)[0] == 404
    assert api(sl, "GET", f"/v1/webhook-endpoints/{ep['id']}", theirs)[0] == 200
    assert api(sl, "GET", "/v1/policies/global", theirs)[1]["values"] == {"spam_threshold": 9.0}
    # Without the CSRF token, nothing at all.
    assert request(sl, "POST", "/suppressions/add", ann, {"tenant": "acme", "address": "y@dest.test"})[0] == 403
    # Without a session, the login page.
    for path in ("/overview", "/suppressions", "/webhooks", "/policies"):
        status, headers, _ = request(sl, "GET", path)
        assert status == 303 and headers["Location"] == "/login", path
