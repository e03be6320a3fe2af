"""The Duplicates page in headless Chromium (Debian's, as in test_web_browser.py), on a real
server on 127.0.0.1: real photos with a re-encoded, a half-size and a byte-for-byte copy."""


import pytest
from playwright.sync_api import expect

from test_web_duplicates import duplicates_site
from conftest import watched_tab

BAD_REQUEST = "the server responded with a status of 400"


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_openclip):
    with duplicates_site(tmp_path_factory.mktemp("web-duplicates-ui"), tiny_openclip) as served:
        yield served


@pytest.fixture
def tab(browser, site):
    with watched_tab(browser, viewport={"width": 1280, "height": 900}) as (page, errors):
        page.goto(site["url"] + "/duplicates")
        page.errors = errors
        yield page
    assert [e for e in errors if BAD_REQUEST not in e] == []  # no script error or policy violation


def test_each_group_is_shown_side_by_side_largest_group_first(tab, tmp_path):
    expect(tab.locator("#dup-summary")).to_contain_text("2 groups, 3 duplicates among 10 images (perceptual hash")
    groups = tab.locator(".dup-group")
    expect(groups).to_have_count(2)
    first = groups.nth(0)
    expect(first.locator("h2")).to_have_text("Group 1 · 3 near copies")
    expect(first.locator(".card .name")).to_have_text(["cat.png", "cat-q75.jpg", "cat-half.png"])
    expect(first.locator(".card .facts").nth(2)).to_contain_text("225 × 150")
    expect(groups.nth(1).locator("h2")).to_have_text("Group 2 · 2 identical files")
    tab.wait_for_function("() => [...document.querySelectorAll('.dup-group img')]"
                          ".every(img => img.complete && img.naturalWidth > 0)")
    boxes = [first.locator(".card").nth(i).bounding_box() for i in range(3)]
    assert len({round(b["y"]) for b in boxes}) == 1 and boxes[0]["x"] < boxes[1]["x"] < boxes[2]["x"]  # one row
    tab.screenshot(path=str(tmp_path / "duplicates.png"), full_page=True)


def test_a_model_and_threshold_can_be_chosen_and_stay_in_the_address(tab, site):
    expect(tab.locator(".dup-group")).to_have_count(2)
    tab.select_option("#dup-method", site["model"])
    expect(tab.locator("#dup-threshold-label")).to_have_text("Cosine at least")
    tab.fill("#dup-threshold", "0.9999")
    tab.click("#dup-form button[type=submit]")
    expect(tab.locator("#dup-summary")).to_contain_text(f"({site['model']} vectors, cosine at least 0.9999)")
    expect(tab.locator(".dup-group h2", has_text="identical files")).to_have_count(1)
    assert "threshold=0.9999" in tab.url and "model=" in tab.url
    tab.reload()  # the same choice after a reload
    expect(tab.locator("#dup-method")).to_have_value(site["model"])
    expect(tab.locator("#dup-summary")).to_contain_text("cosine at least 0.9999")


def test_a_bad_threshold_shows_the_servers_one_line(tab):
    expect(tab.locator(".dup-group")).to_have_count(2)
    tab.fill("#dup-threshold", "2.5")
    tab.click("#dup-form button[type=submit]")
    summary = tab.locator("#dup-summary")
    expect(summary).to_contain_text("bad --threshold 2.5")
    expect(summary).to_have_class("summary muted error")
    expect(tab.locator(".dup-group")).to_have_count(0)
    assert any(BAD_REQUEST in e for e in tab.errors)  # the 400 came from the server, not from the page


def test_the_search_page_links_to_it(browser, site):
    context = browser.new_context()
    page = context.new_page()
    page.goto(site["url"] + "/")
    page.click("nav a[href='/duplicates']")
    expect(page.locator("#dup-summary")).to_contain_text("2 groups")
    context.close()
