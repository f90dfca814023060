"""Open and click tracking, end to end: an application sends HTML with
tracking on; the message captured at the sink has its links pointing at
sluice's `/t/c/TOKEN` and a pixel `/t/o/TOKEN`, per recipient, DKIM-signed
over the rewritten bytes (dkimpy verifies); mailto:, tel: and links marked
`data-sluice-notrack` are left alone (the attribute removed), the text part
untouched. A click answers 302 to the original destination (read from the
record, not the URL) and is recorded with its machine class; a tampered or
unknown token answers 404 and redirects nowhere; a burst of clicks right
after delivery and a HEAD are `scanner`, Apple's and Google's proxies
`privacy_proxy`, a browser ten seconds on `human`."""

import email
import email.policy
import re
import time
import urllib.error
import urllib.request

import pytest

from helpers.procs import to_toml, wait_until
from test_outbound import BOUNCE_DOMAIN, api, create_key, delivered_to, dkim_verifies, message, wait_status

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
HTML = """<html><body><p>Hello,</p>
<p><a href="https://shop.example/offer?id=7&amp;utm=mail">the offer</a></p>
<p><a href='https://shop.example/second'>second</a> and
<a href="mailto:help@shop.example">mail us</a> or <a href="tel:+15550100">call</a>.</p>
<p><a data-sluice-notrack href="https://shop.example/private">untracked</a></p>
</body></html>"""


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **kw):
        return None


def get(url, ua=BROWSER, method="GET"):
    """(status, Location, content type) without following a redirect."""
    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(url, method=method, headers={"User-Agent": ua})
    try:
        with opener.open(req, timeout=15) as r:
            return r.status, r.headers.get("Location"), r.headers.get("Content-Type")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Location"), e.headers.get("Content-Type")


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
    key = create_key(sl, "acme")
    out = sl.cli("dkim", "generate", "acme.test", "--selector", "s1", "--data", sl.data).stdout.decode()
    txt = "".join(re.findall(r'"([^"]*)"', out.split(" IN TXT ", 1)[1]))
    sl.start()
    return sl, sink, key, txt


def html_of(content):
    msg = email.message_from_bytes(content, policy=email.policy.default)
    plain = msg.get_body(("plain",))
    return msg.get_body(("html",)).get_content(), plain.get_content() if plain else None


def events(sl, key, mid, kind):
    status, page, _ = api(sl, "GET", f"/v1/events?message={mid}&type={kind}&limit=100", key)
    assert status == 200, page
    return page["events"]


def test_links_and_pixel_are_rewritten_signed_and_followed(tracked):
    sl, sink, key, txt = tracked
    body = {"from": "app@acme.test", "to": ["ann@dest.test", "ben@dest.test"], "subject": "offer",
            "text": "See https://shop.example/offer?id=7\n", "html": HTML,
            "track_opens": True, "track_clicks": True}
    status, sent, _ = api(sl, "POST", "/v1/messages", key, body)
    assert status == 202, sent
    mid = sent["id"]
    got = {a: delivered_to(sink, a) for a in ("ann@dest.test", "ben@dest.test")}
    html, text = html_of(got["ann@dest.test"].content)
    assert text.replace("\r\n", "\n") == "See https://shop.example/offer?id=7\n", "the text part is untouched"
    clicks = re.findall(r'href="?(' + re.escape(sl.http) + r'/t/c/[A-Za-z0-9_-]+)', html)
    assert len(clicks) == 2, html
    assert 'href="mailto:help@shop.example"' in html and 'href="tel:+15550100"' in html, html
    assert "https://shop.example/private" in html and "data-sluice-notrack" not in html, html
    pixel = re.findall(r'<img src="(' + re.escape(sl.http) + r'/t/o/[A-Za-z0-9_-]+)"', html)
    assert len(pixel) == 1, html
    assert dkim_verifies(got["ann@dest.test"].content, txt), "signed after rewriting"
    # Each recipient has tokens of their own.
    ben_html, _ = html_of(got["ben@dest.test"].content)
    assert clicks[0] not in ben_html and dkim_verifies(got["ben@dest.test"].content, txt)
    wait_status(sl, key, mid, "ann@dest.test", "delivered")

    # Right after delivery: a scanner's sweep, every link at once.
    status, location, _ = get(clicks[0], ua="Mozilla/5.0 (compatible; scanner)")
    assert (status, location) == (302, "https://shop.example/offer?id=7&utm=mail")
    assert get(clicks[1])[:2] == (302, "https://shop.example/second")
    assert get(clicks[0], method="HEAD")[0] == 302
    # Each answer waited for the click to be on disk (the journal); the
    # record has it a moment later.
    sweep = wait_until(lambda: (lambda e: e if len(e) == 3 else None)(events(sl, key, mid, "clicked")), 10,
                       what="three clicks in the record")
    assert [e["reason"] for e in sweep] == ["scanner"] * 3, sweep
    assert all(e["address"] == "ann@dest.test" for e in sweep)

    # Tampered, unknown, or an open's token as a click: 404, no Location.
    token = clicks[0].rsplit("/", 1)[1]
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    for bad in (f"{sl.http}/t/c/{flipped}", f"{sl.http}/t/c/nonsense", pixel[0].replace("/t/o/", "/t/c/")):
        status, location, _ = get(bad)
        assert (status, location) == (404, None), bad
    time.sleep(0.5)
    assert len(events(sl, key, mid, "clicked")) == 3, "nothing recorded for a bad token"

    # Opens: Apple's and Google's proxies are machines; the pixel is a GIF.
    status, _, ctype = get(pixel[0], ua="Mozilla/5.0")
    assert (status, ctype) == (200, "image/gif")
    get(pixel[0], ua="Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)")
    opens = wait_until(lambda: (lambda e: e if len(e) == 2 else None)(events(sl, key, mid, "opened")), 10,
                       what="two opens in the record")
    assert [e["reason"] for e in opens] == ["privacy_proxy", "privacy_proxy"], opens

    # A person, later: human, with the address and user agent kept.
    delivered_at = message(sl, key, mid)["recipients"][0]["updated_at"]
    time.sleep(max(0.0, (delivered_at + 11_000) / 1000 - time.time()))
    ben_click = re.findall(r'href="?(' + re.escape(sl.http) + r'/t/c/[A-Za-z0-9_-]+)', ben_html)[1]
    assert get(ben_click)[:2] == (302, "https://shop.example/second")
    last = wait_until(lambda: [e for e in events(sl, key, mid, "clicked") if e["address"] == "ben@dest.test"],
                      10, what="ben's click")[-1]
    assert last["reason"] == "human", last
    assert '"127.0.0.1"' in last["detail"] and "Chrome/131.0" in last["detail"], last


def test_tracking_asked_for_without_a_base_url_is_refused(sink, sluice_factory):
    sl = sluice_factory(config={"outbound": {"bounce_domain": BOUNCE_DOMAIN},
                                "outbound.mx_override": {"*": sink.addr}})
    key = create_key(sl, "acme")
    body = {"from": "app@acme.test", "to": ["a@dest.test"], "subject": "s", "html": HTML, "track_clicks": True}
    status, err, _ = api(sl, "POST", "/v1/messages", key, body)
    assert status == 422 and err["error"]["field"] == "track_clicks", err
    assert get(f"{sl.http}/t/c/anything")[0] == 404


def test_clicks_answered_before_a_kill_are_all_recorded_once(tracked):
    sl, sink, key, _ = tracked
    body = {"from": "app@acme.test", "to": ["cat@dest.test"], "subject": "offer", "html": HTML,
            "track_clicks": True}
    status, sent, _ = api(sl, "POST", "/v1/messages", key, body)
    assert status == 202, sent
    html, _ = html_of(delivered_to(sink, "cat@dest.test").content)
    link = re.findall(r'href="?(' + re.escape(sl.http) + r'/t/c/[A-Za-z0-9_-]+)', html)[0]
    for _ in range(40):
        assert get(link)[0] == 302
    # Killed at once: the record may not have them yet; the journal has.
    sl.kill()
    sl.start()
    clicked = wait_until(lambda: (lambda e: e if len(e) >= 40 else None)(events(sl, key, sent["id"], "clicked")),
                         20, what="every answered click in the record")
    time.sleep(1)
    assert len(events(sl, key, sent["id"], "clicked")) == 40, "each once"
    assert {e["address"] for e in clicked} == {"cat@dest.test"}
