"""The console in a real browser: Playwright drives the system's Chromium against a running
Relais. tests/api/console.rs starts the server and runs this script with:

    base-url tenant-id project-id token chromium-binary screenshot-dir

Each scenario prints `ok: <name>` when it passes; a failing one saves a screenshot of the
page in the screenshot directory and the script exits non-zero.
"""

import json
import sys
import traceback
import urllib.error
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

BASE, TENANT, PROJECT, TOKEN, CHROMIUM, SHOTS = sys.argv[1:7]
API = f"{BASE}/api/{TENANT}/{PROJECT}/async"
TIMEOUT_MS = 20_000
expect.set_options(timeout=TIMEOUT_MS)


def call(method, path, body=None, token=TOKEN):
    """The API, as a script calls it: status and parsed body."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{API}{path}", data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            text = answer.read()
            return answer.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, text.decode(errors="replace")


def ok(status, body, expected):
    assert status == expected, f"{status} (expected {expected}): {body}"
    return body


def signed_in(browser, path="/console"):
    """A new tab signed in with the test's token, at `path`."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{BASE}{path}")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    return page


def nothing_left_blank(page):
    """No absent value shown as such."""
    text = page.locator("main").inner_text()
    for word in ("null", "undefined", "NaN", "[object Object]"):
        assert word not in text, f"{word!r} on the page: {text}"


def sign_in(browser):
    page = signed_in(browser)
    expect(page.locator("h1")).to_have_text("Operations")
    expect(page.locator("#nav")).to_contain_text("Webhooks")
    nothing_left_blank(page)
    # The token stays in this tab's session storage, never in the address or a cookie.
    assert TOKEN not in page.url
    assert page.context.cookies() == []
    assert page.evaluate("sessionStorage.getItem('relais.token')") == TOKEN
    # A deep link opens its page after sign-in.
    deep = signed_in(browser, "/console/webhooks")
    expect(deep.locator("h1")).to_have_text("Webhooks")
    return page


def operation_ends_live(browser):
    op = ok(*call("POST", "/operation", {"operationType": "ConsoleJob", "operationName": "watched"}), 202)
    op_id = op["operationId"]
    page = signed_in(browser, f"/console/operations/{op_id}")
    expect(page.locator("#status")).to_have_text("Initiated")
    lease = ok(*call("POST", "/workers/lease", {"operationTypes": ["ConsoleJob"]}), 200)["leases"][0]
    expect(page.locator("#status")).to_have_text("Running")
    # The page stays the same document: a marker set now survives until the end.
    page.evaluate("window.__notReloaded = true")
    ok(*call("POST", f"/operation/{op_id}/complete", {"leaseToken": lease["leaseToken"], "summary": {"rows": 3}}), 200)
    expect(page.locator("#status")).to_have_text("Completed")
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"
    expect(page.locator("[data-event]")).to_have_count(2)


def batch_graph(browser):
    def member(key, deps):
        return {"operationKey": key, "operationName": key, "operationType": "ConsoleStep", "dependencies": deps}

    batch = ok(*call("POST", "/batch", {"batchName": "diamond", "operations": [
        member("a", []), member("b", ["a"]), member("c", ["a"]), member("d", ["b", "c"]),
        member("e", ["d"]), member("f", []),
    ]}), 202)
    page = signed_in(browser, f"/console/batches/{batch['batchId']}")
    nodes = page.locator("svg .node")
    expect(nodes).to_have_count(6)
    keys = sorted(nodes.evaluate_all("ns => ns.map(n => n.dataset.key)"))
    assert keys == ["a", "b", "c", "d", "e", "f"], keys
    nothing_left_blank(page)
    edges = page.locator("svg .edge")
    expect(edges).to_have_count(5)
    pairs = sorted(tuple(p) for p in edges.evaluate_all("es => es.map(e => [e.dataset.from, e.dataset.to])"))
    assert pairs == [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "e")], pairs
    # Laid out by depth: each member to the right of what it depends on. Read from the
    # layout itself: a live update may be redrawing the graph at this very moment.
    x = dict(nodes.evaluate_all(
        "ns => ns.map(n => [n.dataset.key, n.transform.baseVal.consolidate().matrix.e])"))
    assert x["a"] < x["b"] == x["c"] < x["d"] < x["e"], x
    assert x["f"] == x["a"], x
    # A node leads to its operation.
    page.locator("svg .node[data-key=d] a").click()
    expect(page.locator("h1")).to_have_text("d")


def large_batch(browser):
    # 600 members in 20 layers of 30, each depending on the one before it in its row: more
    # than the graph draws.
    members = [{"operationKey": f"m{i}", "operationName": f"m{i}", "operationType": "ConsoleStep",
                "dependencies": [f"m{i - 30}"] if i >= 30 else []} for i in range(600)]
    batch = ok(*call("POST", "/batch", {"batchName": "large", "operations": members}), 202)
    page = signed_in(browser, f"/console/batches/{batch['batchId']}")
    expect(page.locator("svg .node")).to_have_count(500)
    expect(page.get_by_text("The graph shows the first 500 of 600 members")).to_be_visible()
    expect(page.locator("table tbody tr")).to_have_count(600)
    # The page still answers: a link in the navigation works.
    page.locator("#nav a", has_text="Webhooks").click()
    expect(page.locator("h1")).to_have_text("Webhooks")


def rotate_secret(browser):
    hook = ok(*call("POST", "/webhooks", {"webhookUrl": "https://receiver.example/hooks", "webhookName": "rotated"}), 201)
    before = ok(*call("GET", f"/webhooks/{hook['webhookId']}/secret"), 200)["secret"]
    page = signed_in(browser, f"/console/webhooks/{hook['webhookId']}")
    expect(page.locator("h1")).to_have_text("rotated")
    page.get_by_role("button", name="Rotate secret").click()
    shown = page.locator("#secret")
    expect(shown).not_to_have_text("")
    after = ok(*call("GET", f"/webhooks/{hook['webhookId']}/secret"), 200)["secret"]
    assert after != before, "the secret changed"
    assert shown.text_content() == after, (shown.text_content(), after)
    # A change saved from the page keeps what the page does not show: an endpoint that
    # takes every event still does (it is not pinned to today's types).
    page.fill("input[name=webhookName]", "renamed")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("h1")).to_have_text("renamed")
    saved = ok(*call("GET", f"/webhooks/{hook['webhookId']}"), 200)
    assert saved["allEvents"] is True, saved


def portal_link(browser):
    op_id = ok(*call("POST", "/operation", {"operationType": "ConsoleJob", "operationName": "not for them"}), 202)["operationId"]
    link = ok(*call("POST", "/portal-links", {"expiresIn": 600}), 201)
    context = browser.new_context()
    page = context.new_page()
    page.goto(link["url"])
    expect(page.locator("h1")).to_have_text("Webhooks")
    # The token left the address bar; the navigation offers the webhooks only.
    assert "token" not in page.url, page.url
    expect(page.locator("#nav a")).to_have_text(["Webhooks", "Sign out"])
    expect(page.locator("#webhooks")).to_contain_text("renamed")
    page.goto(f"{BASE}/console/operations/{op_id}")
    expect(page.locator("h1")).to_have_text("Not found")
    # Nor can the page's own token reach it through the API.
    status = page.evaluate(
        """async (path) => (await fetch(path, {headers: {Authorization:
             'Bearer ' + sessionStorage.getItem('relais.token')}})).status""",
        f"/api/{TENANT}/{PROJECT}/async/operation/{op_id}")
    assert status == 404, status
    # An expired or broken link says so.
    other = browser.new_context().new_page()
    other.goto(f"{BASE}/console/portal#token=not.a.token")
    expect(other.locator("h1")).to_have_text("This link does not work")


def markup_shown_as_text(browser):
    name = "<img src=x onerror=alert(1)>"
    op_id = ok(*call("POST", "/operation", {"operationType": "ConsoleJob", "operationName": name}), 202)["operationId"]
    dialogs = []
    page = signed_in(browser)
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    row = page.locator(f"tr[data-operation='{op_id}']")
    expect(row).to_contain_text(name)
    page.goto(f"{BASE}/console/operations/{op_id}")
    expect(page.locator("h1")).to_have_text(name)
    assert page.locator("img").count() == 0, "no element was made from the name"
    page.wait_for_timeout(300)
    assert dialogs == [], dialogs


SCENARIOS = [
    ("sign in", sign_in),
    ("operation ends live", operation_ends_live),
    ("batch graph", batch_graph),
    ("large batch", large_batch),
    ("rotate secret", rotate_secret),
    ("portal link", portal_link),
    ("markup shown as text", markup_shown_as_text),
]


def main():
    shots = Path(SHOTS)
    failed = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        for name, scenario in SCENARIOS:
            try:
                scenario(browser)
                print(f"ok: {name}", flush=True)
            except Exception:  # noqa: BLE001 (every failure is reported, then the next runs)
                failed.append(name)
                print(f"FAILED: {name}\n{traceback.format_exc()}", flush=True)
                shots.mkdir(parents=True, exist_ok=True)
                for i, context in enumerate(browser.contexts):
                    for j, page in enumerate(context.pages):
                        path = shots / f"{name.replace(' ', '-')}-{i}-{j}.png"
                        try:
                            page.screenshot(path=str(path), full_page=True)
                            print(f"screenshot: {path}", flush=True)
                        except Exception as error:  # noqa: BLE001
                            print(f"no screenshot of {page.url}: {error}", flush=True)
            finally:
                for context in list(browser.contexts):
                    context.close()
        browser.close()
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
