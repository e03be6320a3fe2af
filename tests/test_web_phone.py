"""The web UI on a 390 px phone screen, names that try to disguise their extension, and the
token login, in headless Chromium (Debian's, as in test_web_browser.py)."""

import os
import shutil

import pytest
from playwright.sync_api import expect

from imgsearch.indexer import index_folder
from imgsearch.samples import write_samples
from imgsearch.web import BackgroundServer, Gate, create_app
from conftest import watched_tab

PHONE = {"width": 390, "height": 844}
# U+202E (right-to-left override) makes "cat\u202egnp.exe.png" read "catgnp.exe.png" backwards.
BIDI_NAME = "cat\u202egnp.exe.png"
LONG_NAME = "a-very-long-file-name-with-no-spaces-that-a-phone-cannot-show-in-one-line-2025-06-01.png"
LONG_REPORT = "2025-06-01-a-very-long-report-folder-name-with-no-spaces-at-all-offline-vs-tiny"
TOKEN = "phone-test-token-0123456789"


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_openclip, tiny_openclip_b):
    root = tmp_path_factory.mktemp("web-phone")
    photos = write_samples(str(root / "photos"), ["cat.png", "coffee.png", "rocket.png", "grace_hopper.jpg"])
    shutil.copy(photos["cat.png"], root / "photos" / BIDI_NAME)
    shutil.copy(photos["rocket.png"], root / "photos" / LONG_NAME)
    index_dir = str(root / "indexes")
    index_folder(str(root / "photos"), [tiny_openclip, tiny_openclip_b], index_dir)
    report = root / "reports" / LONG_REPORT
    os.makedirs(report)
    (report / "report.html").write_text("<!doctype html><title>Eval</title><h1>Recall</h1>")
    with BackgroundServer(create_app(index_dir, reports_dir=str(root / "reports"))) as server:
        yield {"url": server.url, "models": [tiny_openclip, tiny_openclip_b], "index_dir": index_dir}


@pytest.fixture
def phone(browser, site):
    with watched_tab(browser, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True) as (tab, errors):
        tab.goto(site["url"])
        expect(tab.locator("#status")).to_contain_text("6 images · 2 models")
        yield tab
    assert errors == []


def assert_fits(page, what: str) -> None:
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], (what, widths)


def assert_inside_screen(page, selector: str) -> None:
    for box in page.evaluate("s => [...document.querySelectorAll(s)].map(e => e.getBoundingClientRect().toJSON())",
                             selector):
        assert box["left"] >= 0 and box["right"] <= PHONE["width"], (selector, box)


def search(page, text: str) -> None:
    page.fill("#q", text)
    page.press("#q", "Enter")
    expect(page.locator("#results .card")).to_have_count(6)


def test_the_search_page_fits_a_phone(phone, tmp_path):
    assert_fits(phone, "empty search page")
    assert_inside_screen(phone, "header.top > *")
    search(phone, "a cat")
    assert_fits(phone, "search results")
    assert_inside_screen(phone, "#results .card")
    phone.wait_for_function("() => document.querySelector('#results img').naturalWidth === 256")
    phone.screenshot(path=str(tmp_path / "phone-search.png"), full_page=True)


def test_the_viewer_fits_a_phone(phone, site, tmp_path):
    search(phone, "a photo")
    phone.locator("#results .card button.thumb").first.click()
    expect(phone.locator("#viewer")).to_be_visible()
    phone.wait_for_function("() => document.querySelector('#viewer-img').naturalWidth > 0")
    assert_fits(phone, "viewer dialog")
    assert_inside_screen(phone, "#viewer")
    assert_inside_screen(phone, "#viewer dd")
    phone.screenshot(path=str(tmp_path / "phone-viewer.png"))


def test_compare_stacks_its_columns_on_a_phone(phone, site, tmp_path):
    phone.click("nav a[data-view=compare]")
    assert_fits(phone, "compare page")
    phone.fill("#cq", "a cat")
    phone.click("#compare-form button[type=submit]")
    columns = phone.locator("#columns .column")
    expect(columns).to_have_count(2)
    expect(columns.nth(1).locator(".card")).to_have_count(6)
    assert_fits(phone, "compare results")
    assert_inside_screen(phone, "#columns .column")
    assert_inside_screen(phone, "#compare-models label")
    tops = [columns.nth(i).bounding_box()["y"] for i in range(2)]
    assert tops[1] > tops[0]  # one under the other, not side by side
    phone.screenshot(path=str(tmp_path / "phone-compare.png"), full_page=True)


def test_the_reports_page_fits_a_phone(phone):
    phone.click("nav a[data-view=reports]")
    expect(phone.locator("#reports tbody a", has_text=LONG_REPORT[:20])).to_be_visible()
    assert_fits(phone, "reports page")
    assert_inside_screen(phone, "#reports")


def test_a_name_with_bidi_controls_shows_them_instead_of_obeying_them(phone):
    search(phone, "a cat")
    card = phone.locator("#results .card", has=phone.locator(".name", has_text="[U+202E]"))
    expect(card).to_have_count(1)
    shown = card.locator(".name").text_content()
    assert shown == "cat[U+202E]gnp.exe.png" and "\u202e" not in shown
    assert "\u202e" not in card.locator(".name").get_attribute("title")
    card.locator("button.thumb").click()
    expect(phone.locator("#viewer-name")).to_have_text("cat[U+202E]gnp.exe.png")
    expect(phone.locator("#viewer-meta")).to_contain_text("[U+202E]gnp.exe.png")
    assert "\u202e" not in phone.locator("#viewer").text_content()


def test_an_original_opens_on_its_own_under_its_strict_policy(browser, site):
    context = browser.new_context(viewport=PHONE)
    tab = context.new_page()
    errors = []
    tab.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page = tab.goto(site["url"] + "/api/search?q=a+cat&k=1")
    first = page.json()["results"][0]
    tab.goto(site["url"] + first["file"])
    tab.wait_for_function("() => document.querySelector('img') && document.querySelector('img').naturalWidth > 0")
    context.close()
    assert errors == []


def test_a_token_server_shows_the_app_only_after_the_login_url(browser, site):
    gate = Gate.for_bind("127.0.0.1", token=TOKEN)
    with BackgroundServer(create_app(site["index_dir"], gate=gate)) as server:
        context = browser.new_context(viewport=PHONE)
        tab = context.new_page()
        assert tab.goto(server.url).status == 401
        tab.goto(f"{server.url}/login?token={TOKEN}")
        assert tab.url == server.url + "/"  # redirected: the token has left the address bar
        expect(tab.locator("#status")).to_contain_text("6 images · 2 models")
        search(tab, "a cat")
        assert TOKEN not in tab.evaluate("() => document.cookie")  # HttpOnly: no script can read it
        context.close()


def test_the_judge_page_and_its_full_image_fit_a_phone(browser, site, tmp_path):
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    tab = context.new_page()
    errors = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda message: message.type == "error" and errors.append(message.text))
    tab.goto(site["url"] + "/judge")
    expect(tab.locator("#add-summary")).to_contain_text("Add a query")
    assert_fits(tab, "empty judge page")
    tab.fill("#new-queries", "a cat on a phone\n")
    tab.click("#add-form button[type=submit]")
    expect(tab.locator(".judge-card").first).to_be_visible()
    assert_fits(tab, "judge pool")
    assert_inside_screen(tab, ".judge-card")
    tab.keyboard.press("f")
    expect(tab.locator("#full")).to_be_visible()
    tab.wait_for_function("() => document.querySelector('#full-img').naturalWidth > 0")
    assert_fits(tab, "judge full image")
    assert_inside_screen(tab, "#full")
    tab.screenshot(path=str(tmp_path / "phone-judge.png"), full_page=True)
    context.close()
    assert errors == []
