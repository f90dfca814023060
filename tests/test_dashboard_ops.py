"""The dashboard's Queue and Quarantine pages and the API under them
(issue 21): `/v1/queue…` and `/v1/quarantine…` scoped to the key's tenant
(another tenant's entry or copy is a 404), and in a real browser (headless
Chromium, as test_dashboard.py) a quarantined copy browsed and released
to the downstream sink, and a held queue message released from the Queue
page. Screenshots go where test_dashboard.py puts them."""

import os
import urllib.parse

from helpers.procs import wait_until
from test_dashboard import add_operator, csrf_of, login, request, webdriver
from test_inbound_record import send
from test_outbound import api, create_key


def shots_dir(tmp_path):
    shots = os.environ.get("SLUICE_TEST_ARTIFACTS") or str(tmp_path / "artifacts")
    os.makedirs(shots, exist_ok=True)
    print(f"dashboard screenshots: {shots}")
    return shots


def browser_login(driver, sl, name):
    from selenium.webdriver.common.by import By
    driver.get(sl.http + "/login")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys("dashboard pass phrase")
    driver.find_element(By.ID, "login").click()
    settle(driver, lambda d: d.current_url == sl.http + "/")


def settle(driver, until):
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, 15).until(until)
    WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")


def filed_copy(sl, key, subject):
    """The (folder, copy) of the one copy with `subject`, once filed."""
    def found():
        status, doc, _ = api(sl, "GET", "/v1/quarantine", key)
        assert status == 200, doc
        for a in doc["accounts"]:
            for f in a["folders"]:
                if f["messages"]:
                    path = f"/v1/quarantine/{a['name']}/{urllib.parse.quote(f['name'], safe='')}"
                    status, page, _ = api(sl, "GET", path, key)
                    assert status == 200, page
                    hits = [c for c in page["messages"] if c["subject"] == subject]
                    if hits:
                        return f["name"], hits[0]
        return None
    return wait_until(found, 30, interval=0.3, what="the copy filed in the store")


def test_a_quarantined_copy_is_browsed_released_and_deleted(sink, sluice_factory, tmp_path):
    sl = sluice_factory(start=False, relay=sink.addr, config={"queue": {"retry_initial_secs": 1, "retry_max_secs": 2}})
    sl.add_account("acme", "sluice.test")
    sl.start()
    qid = send(sl, "alice@sender.test", ["bob@sluice.test"], "quarantine me", "q-1@sender.test")
    sink.wait_for(1, timeout=20)
    key, other = create_key(sl, "default"), create_key(sl, "someone-else")
    folder, c = filed_copy(sl, key, "quarantine me")
    uid, fq = c["uid"], urllib.parse.quote(folder, safe="")
    status, one, _ = api(sl, "GET", f"/v1/quarantine/acme/{fq}/{uid}", key)
    assert status == 200 and {"name": "Subject", "value": "quarantine me"} in one["headers"], one
    # Another tenant sees no account, and each copy of this one is a 404.
    assert api(sl, "GET", "/v1/quarantine", other)[1]["accounts"] == []
    for method, path in (("GET", f"/v1/quarantine/acme/{fq}"), ("GET", f"/v1/quarantine/acme/{fq}/{uid}"),
                         ("POST", f"/v1/quarantine/acme/{fq}/{uid}/release"),
                         ("DELETE", f"/v1/quarantine/acme/{fq}/{uid}")):
        status, doc, _ = api(sl, method, path, other)
        assert status == 404 and doc["error"]["code"] == "not_found", (method, path, doc)
    assert api(sl, "GET", f"/v1/quarantine/acme/{fq}/x", key)[0] == 422

    add_operator(sl, tmp_path, "root")
    add_operator(sl, tmp_path, "eve", "someone-else")
    eve, _ = login(sl, "eve")
    status, _, html = request(sl, "GET", "/quarantine", eve)
    assert status == 200 and "acme" not in html
    assert request(sl, "GET", f"/quarantine/acme/{fq}", eve)[0] == 404
    root, csrf = login(sl, "root")
    # The message page: its copy, a release button and its headers.
    wait_until(lambda: request(sl, "GET", f"/messages/{qid}", root)[0] == 200, 20, what="the message page")
    status, _, html = request(sl, "GET", f"/messages/{qid}", root)
    assert f"/quarantine/acme/{fq}/{uid}/release" in html and "quarantine me" in html, html
    assert 'id="headers"' in html and "q-1@sender.test" in html

    shots = shots_dir(tmp_path)
    driver = webdriver()
    try:
        from selenium.webdriver.common.by import By
        browser_login(driver, sl, "root")
        driver.find_element(By.ID, "nav-quarantine").click()
        settle(driver, lambda d: d.current_url == sl.http + "/quarantine")
        driver.save_screenshot(os.path.join(shots, "4-quarantine.png"))
        driver.find_element(By.LINK_TEXT, folder).click()
        settle(driver, lambda d: "/quarantine/acme/" in d.current_url)
        row = driver.find_element(By.ID, f"uid-{uid}")
        assert "quarantine me" in row.text, row.text
        driver.save_screenshot(os.path.join(shots, "5-quarantine-folder.png"))
        row.find_element(By.CSS_SELECTOR, "button.release").click()
        settle(driver, lambda d: d.find_elements(By.ID, "note"))
        assert "released UID" in driver.find_element(By.ID, "note").text
    finally:
        driver.quit()
    got = sink.wait_for(2, timeout=20, match=lambda m: "bob@sluice.test" in m.rcpts)
    assert any(b"quarantine me" in m.content and b"released by acme" in m.content for m in got), got

    # Delete: refused without the confirm box, done with it.
    path = f"/quarantine/acme/{fq}/{uid}/delete"
    assert request(sl, "POST", path, root, {"confirm": "yes"})[0] == 403, "no CSRF token"
    status, headers, _ = request(sl, "POST", path, root, {"csrf": csrf})
    assert status == 303 and api(sl, "GET", f"/v1/quarantine/acme/{fq}/{uid}", key)[0] == 200
    status, headers, _ = request(sl, "POST", path, root, {"csrf": csrf, "confirm": "yes"})
    assert status == 303 and headers["Location"] == f"/quarantine/acme/{fq}"
    assert api(sl, "GET", f"/v1/quarantine/acme/{fq}/{uid}", key)[0] == 404
    status, _, html = request(sl, "GET", f"/messages/{qid}", root)
    assert "no longer kept" in html, html


def test_a_held_message_is_released_from_the_queue_page(sink, sluice_factory, tmp_path):
    sink.control(rcpt=[{"match": "later@", "reply": "450 4.2.1 Mailbox busy, try later"}])
    sl = sluice_factory(relay=sink.addr, config={"queue": {"retry_initial_secs": 600, "retry_max_secs": 600}})
    qid = send(sl, "alice@sender.test", ["later@sluice.test"], "wait for it", "held-1@sender.test")
    key, other = create_key(sl, "default"), create_key(sl, "someone-else")

    def deferred():
        doc = api(sl, "GET", "/v1/queue/messages", key)[1]
        return [e for e in doc["messages"] if e["id"] == qid and e["recipients"][0]["status"] == "deferred"]
    wait_until(deferred, 30, interval=0.3, what="the message deferred")
    # Another tenant: an empty queue and a 404 for this message.
    assert api(sl, "GET", "/v1/queue", other)[1]["routes"] == []
    assert api(sl, "GET", "/v1/queue/messages", other)[1]["messages"] == []
    for method, path in (("GET", f"/v1/queue/{qid}"), ("POST", f"/v1/queue/{qid}/hold"),
                         ("POST", f"/v1/queue/{qid}/release"), ("DELETE", f"/v1/queue/{qid}")):
        assert api(sl, method, path, other)[0] == 404, (method, path)
    status, doc, _ = api(sl, "POST", f"/v1/queue/{qid}/hold", key)
    assert status == 200 and doc["result"] == f"held {qid}", doc
    held = api(sl, "GET", "/v1/queue/messages?held=true", key)[1]["messages"]
    assert [(e["id"], e["held"], e["tenant"]) for e in held] == [(qid, True, "default")], held
    routes = api(sl, "GET", "/v1/queue", key)[1]["routes"]
    assert [(r["route"], r["messages"], r["held"]) for r in routes] == [("relay", 1, 1)], routes
    status, one, _ = api(sl, "GET", f"/v1/queue/{qid}", key)
    assert status == 200 and {"name": "Subject", "value": "wait for it"} in one["headers"], one
    assert api(sl, "POST", "/v1/queue/flush", key)[0] == 200
    sink.control()  # the downstream takes it now

    add_operator(sl, tmp_path, "root")
    root, _ = login(sl, "root")
    assert request(sl, "POST", f"/queue/{qid}/release", root, {})[0] == 403, "no CSRF token"
    shots = shots_dir(tmp_path)
    driver = webdriver()
    try:
        from selenium.webdriver.common.by import By
        browser_login(driver, sl, "root")
        driver.find_element(By.ID, "nav-queue").click()
        settle(driver, lambda d: d.current_url == sl.http + "/queue")
        assert "relay" in driver.find_element(By.ID, "backlog").text
        driver.find_element(By.ID, "held-only").click()
        settle(driver, lambda d: "held=1" in d.current_url)
        row = driver.find_element(By.ID, f"q-{qid}")
        assert "held" in row.find_element(By.CSS_SELECTOR, "td.state").text
        driver.save_screenshot(os.path.join(shots, "6-queue.png"))
        row.find_element(By.CSS_SELECTOR, "button.release").click()
        settle(driver, lambda d: d.find_elements(By.ID, "note"))
        assert f"released {qid}" in driver.find_element(By.ID, "note").text
    finally:
        driver.quit()
    sink.wait_for(1, timeout=20, match=lambda m: "later@sluice.test" in m.rcpts)
    sl.wait_queue_empty()
    assert api(sl, "GET", f"/v1/queue/{qid}", key)[0] == 404, "gone from the queue once relayed"
