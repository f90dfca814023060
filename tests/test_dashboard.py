"""The web dashboard (issue 21, first slice), end to end.

In a real browser (headless Chromium from Debian, driven by Selenium through
chromium-driver): an operator logs in, types a recipient into the search
box (`q`), opens the message, and sees its bounce with the reason; a
screenshot of each page is saved (SLUICE_TEST_ARTIFACTS, else the test's
tmp_path; the path is printed). Without Chromium, chromium-driver or
Selenium the test fails: scripts/install-test-deps.sh installs them.

Security, over plain HTTP: no page without a session (303 to /login), a
POST without the CSRF token is a 403, an operator granted one tenant cannot
open another's message (404) nor find it, a subject holding `<script>` is
shown as text, and failed logins are throttled (429)."""

import http.client
import os
import re
import sys
import time
import urllib.parse

import pytest

from test_outbound import (  # noqa: F401  (outbound is a fixture)
    api, delivered_to, feed, fixture, message, outbound, send, wait_status,
)

PASSWORD = "dashboard pass phrase"


def add_operator(sl, tmp_path, name, *tenants):
    pw = tmp_path / f"{name}.pw"
    pw.write_text(PASSWORD + "\n")
    args = ["operator", "add", name, "--password-file", str(pw), "--data", sl.data]
    for t in tenants:
        args += ["--tenant", t]
    sl.cli(*args)


def request(sl, method, path, cookies=None, form=None):
    """One request, redirects not followed: (status, headers, body)."""
    host, port = sl.http.removeprefix("http://").split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=20)
    headers = {}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    out = (r.status, r.headers, r.read().decode())
    c.close()
    return out


def set_cookies(headers):
    """The cookies a response sets: name -> (value, the whole header)."""
    out = {}
    for h in headers.get_all("Set-Cookie") or []:
        name, value = h.split(";", 1)[0].split("=", 1)
        out[name] = (value, h)
    return out


def csrf_of(html):
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m, html[:2000]
    return m.group(1)


def login(sl, name, password=PASSWORD):
    """Logs in over HTTP; returns (the session cookie, the session's CSRF token)."""
    status, headers, html = request(sl, "GET", "/login")
    assert status == 200, html
    login_cookie = set_cookies(headers)["sluice_login"][0]
    form = {"name": name, "password": password, "csrf": csrf_of(html)}
    status, headers, body = request(sl, "POST", "/login", {"sluice_login": login_cookie}, form)
    assert status == 303 and headers["Location"] == "/", (status, body)
    value, whole = set_cookies(headers)["sluice_session"]
    for attr in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert attr in whole, whole
    cookies = {"sluice_session": value}
    status, _, html = request(sl, "GET", "/", cookies)
    assert status == 200, html
    return cookies, csrf_of(html)


def bounced_message(sl, sink, key, to, subject="hello"):
    """Sends to `to`, delivers it, and feeds a Postfix DSN back: bounced, userunknown."""
    sent = send(sl, key, [to], subject=subject)
    got = delivered_to(sink, to)
    wait_status(sl, key, sent["id"], to, "delivered")
    mid = message(sl, key, sent["id"])["message_id"]
    dsn = fixture("bounces", "lhost-postfix-05.eml",
                  {"kijitora@example.org": to, "FFFFFFFF.0000000@example.co.jp": mid})
    feed(sl, got.mail_from, dsn)
    r = wait_status(sl, key, sent["id"], to, "bounced")
    assert r["reason"] == "userunknown", r
    return sent["id"]


def webdriver():
    """Headless Chromium through chromium-driver; fails (never skips) without them."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        # Debian's python3-selenium, for a Python of another prefix.
        sys.path.append("/usr/lib/python3/dist-packages")
    try:
        from selenium import webdriver as wd
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        pytest.fail(f"Selenium is missing ({e}): run scripts/install-test-deps.sh (python3-selenium)")
    for path in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        if not os.access(path, os.X_OK):
            pytest.fail(f"{path} is missing: run scripts/install-test-deps.sh (chromium, chromium-driver)")
    opts = wd.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        opts.add_argument(arg)
    return wd.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def test_browser_logs_in_searches_and_sees_the_bounce(outbound, tmp_path):
    sl, sink, keys = outbound
    to = "alice@dest.test"
    mid = bounced_message(sl, sink, keys["acme"], to)
    # The search's reason filter is the API's too.
    status, page, _ = api(sl, "GET", "/v1/events?reason=userunknown", keys["acme"])
    assert status == 200 and [(e["type"], e["message"]) for e in page["events"]] == [("bounced", mid)], page
    add_operator(sl, tmp_path, "ann", "acme")
    shots = os.environ.get("SLUICE_TEST_ARTIFACTS") or str(tmp_path / "artifacts")
    os.makedirs(shots, exist_ok=True)
    print(f"dashboard screenshots: {shots}")
    driver = webdriver()
    try:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        def arrive(url):
            """A click returns before its page is loaded: wait for it."""
            WebDriverWait(driver, 15).until(ec.url_to_be(url))
            WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")
        driver.get(sl.http + "/")
        assert driver.current_url.endswith("/login"), "no page without a session"
        driver.save_screenshot(os.path.join(shots, "1-login.png"))
        driver.find_element(By.ID, "name").send_keys("ann")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "login").click()
        arrive(sl.http + "/")
        assert driver.get_cookie("sluice_session"), "Chromium keeps the Secure cookie on 127.0.0.1"
        q = driver.find_element(By.NAME, "q")
        q.send_keys(to)
        driver.find_element(By.ID, "search").click()
        WebDriverWait(driver, 15).until(ec.url_contains("q=alice%40dest.test"))
        WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")
        table = driver.find_element(By.ID, "results").text
        assert "bounced" in table and "userunknown" in table and to in table, table
        driver.save_screenshot(os.path.join(shots, "2-search.png"))
        driver.find_element(By.CSS_SELECTOR, "a.message-link").click()
        arrive(f"{sl.http}/messages/{mid}")
        body = driver.find_element(By.TAG_NAME, "body").text
        assert to in body and "bounced" in body and "userunknown" in body, body
        reasons = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "td.reason")]
        assert "userunknown" in reasons, reasons
        assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body), "times in RFC 3339 UTC"
        driver.save_screenshot(os.path.join(shots, "3-message.png"))
        driver.find_element(By.ID, "logout").click()
        arrive(sl.http + "/login")
        driver.get(sl.http + f"/messages/{mid}")
        assert driver.current_url.endswith("/login"), "logged out: the session is gone"
    finally:
        driver.quit()
    for name in ("1-login.png", "2-search.png", "3-message.png"):
        assert os.path.getsize(os.path.join(shots, name)) > 1000, name


def test_no_page_without_a_session_and_csrf_on_every_post(outbound, tmp_path):
    sl, _, keys = outbound
    add_operator(sl, tmp_path, "root")
    for path in ("/", "/?q=alice@dest.test", "/messages/whatever"):
        status, headers, _ = request(sl, "GET", path)
        assert status == 303 and headers["Location"] == "/login", (path, status)
        status, headers, _ = request(sl, "GET", path, {"sluice_session": "0" * 64})
        assert status == 303 and headers["Location"] == "/login", ("a made-up session", path, status)
    cookies, csrf = login(sl, "root")
    status, _, _ = request(sl, "POST", "/logout", cookies, {})
    assert status == 403, "logout without the CSRF token"
    status, _, _ = request(sl, "POST", "/logout", cookies, {"csrf": "0" * 64})
    assert status == 403, "logout with a wrong token"
    # The login form's own token: without it (or without its cookie) a 403.
    status, _, _ = request(sl, "POST", "/login", None, {"name": "root", "password": PASSWORD})
    assert status == 403
    status, _, html = request(sl, "GET", "/", cookies)
    assert status == 200, "the session survived the refused logouts"
    status, headers, _ = request(sl, "POST", "/logout", cookies, {"csrf": csrf})
    assert status == 303 and headers["Location"] == "/login"
    status, headers, _ = request(sl, "GET", "/", cookies)
    assert status == 303, "the session ended"


def test_another_tenants_message_is_unreachable(outbound, tmp_path):
    sl, sink, keys = outbound
    theirs = send(sl, keys["other"], ["carol@dest.test"], subject="other tenant")
    mine = send(sl, keys["acme"], ["dan@dest.test"], subject="Quarterly Report")
    add_operator(sl, tmp_path, "ann", "acme")
    add_operator(sl, tmp_path, "root")
    ann, _ = login(sl, "ann")
    status, _, _ = request(sl, "GET", f"/messages/{theirs['id']}", ann)
    assert status == 404, "another tenant's message is a 404"
    status, _, html = request(sl, "GET", f"/messages/{mine['id']}", ann)
    assert status == 200 and "dan@dest.test" in html
    for q in ("carol@dest.test", theirs["id"]):
        status, _, html = request(sl, "GET", "/?" + urllib.parse.urlencode({"q": q}), ann)
        assert status == 200 and 'id="results"' not in html and f"/messages/{theirs['id']}" not in html, q
    status, _, html = request(sl, "GET", "/?" + urllib.parse.urlencode({"q": mine["id"]}), ann)
    assert status == 200 and f"/messages/{mine['id']}" in html, "her own message, by its id"
    # Subject words and the sender, in any case: the API's `q` too.
    for q in ("quarterly report", "APP@ACME.TEST"):
        status, _, html = request(sl, "GET", "/?" + urllib.parse.urlencode({"q": q}), ann)
        assert status == 200 and f"/messages/{mine['id']}" in html, q
    status, page, _ = api(sl, "GET", "/v1/events?q=Quarterly", keys["acme"])
    assert status == 200 and {e["message"] for e in page["events"]} == {mine["id"]}, page
    # The direction filter: an outbound message has no inbound events.
    for direction, found in (("outbound", True), ("inbound", False)):
        form = {"q": "quarterly", "direction": direction}
        status, _, html = request(sl, "GET", "/?" + urllib.parse.urlencode(form), ann)
        assert status == 200 and (f"/messages/{mine['id']}" in html) == found, direction
        status, page, _ = api(sl, "GET", f"/v1/events?q=quarterly&direction={direction}", keys["acme"])
        assert status == 200 and bool(page["events"]) == found, (direction, page)
    assert api(sl, "GET", "/v1/events?direction=sideways", keys["acme"])[0] == 422
    status, _, html = request(sl, "GET", "/?" + urllib.parse.urlencode({"q": "other tenant"}), ann)
    assert status == 200 and f"/messages/{theirs['id']}" not in html
    # Searching every event of the window shows ann's tenant's only.
    status, _, html = request(sl, "GET", "/", ann)
    assert status == 200 and f"/messages/{mine['id']}" in html and f"/messages/{theirs['id']}" not in html
    root, _ = login(sl, "root")
    status, _, html = request(sl, "GET", f"/messages/{theirs['id']}", root)
    assert status == 200 and "carol@dest.test" in html, "an operator of every tenant sees it"


def test_output_is_escaped(outbound, tmp_path):
    sl, _, keys = outbound
    evil = "<script>alert(1)</script>"
    sent = send(sl, keys["acme"], ["erin@dest.test"], subject=evil)
    add_operator(sl, tmp_path, "ann", "acme")
    cookies, _ = login(sl, "ann")
    status, headers, html = request(sl, "GET", f"/messages/{sent['id']}", cookies)
    assert status == 200
    # askama writes < and > as numeric references (&#60; &#62;), as good as &lt; &gt;.
    escaped = re.compile(r"(&lt;|&#60;)script(&gt;|&#62;)alert\(1\)(&lt;|&#60;)/script(&gt;|&#62;)")
    assert escaped.search(html), html
    assert "<script>" not in html
    assert "script-src" not in headers["Content-Security-Policy"] and "default-src 'none'" in headers[
        "Content-Security-Policy"]
    status, _, html = request(sl, "GET", "/?" + urllib.parse.urlencode({"q": evil}), cookies)
    assert status == 200 and "<script>" not in html and escaped.search(html)


def test_failed_logins_are_throttled(outbound, tmp_path):
    sl, _, _ = outbound
    add_operator(sl, tmp_path, "ann")
    _, headers, html = request(sl, "GET", "/login")
    cookie = {"sluice_login": set_cookies(headers)["sluice_login"][0]}
    csrf = csrf_of(html)
    for _ in range(5):
        status, _, _ = request(sl, "POST", "/login", cookie, {"name": "ann", "password": "wrong", "csrf": csrf})
        assert status == 401
    status, headers, _ = request(sl, "POST", "/login", cookie, {"name": "ann", "password": PASSWORD, "csrf": csrf})
    assert status == 429 and int(headers["Retry-After"]) > 0, "even the right password waits"
    assert "sluice_session" not in set_cookies(headers)
