"""The Duplicates page on a 390 px phone screen in headless Chromium (Debian's, as in
test_web_browser.py): its groups are shown and nothing makes the page scroll sideways, a file
name with no spaces included."""

import pytest
from playwright.sync_api import expect

from test_web_duplicates import duplicates_site
from conftest import watched_tab

PHONE = {"width": 390, "height": 844}
LONG_NAME = "a-very-long-copy-of-the-cat-with-no-spaces-that-a-phone-cannot-show-in-one-line-2025-06-01.png"


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_openclip):
    with duplicates_site(tmp_path_factory.mktemp("web-duplicates-phone"), tiny_openclip,
                         extra={LONG_NAME: "cat.png"}) as served:
        yield served


@pytest.fixture
def phone(browser, site):
    with watched_tab(browser, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True) as (tab, errors):
        tab.goto(site["url"] + "/duplicates")
        yield tab
    assert errors == []


def boxes(page, selector: str) -> list[dict]:
    return page.evaluate("s => [...document.querySelectorAll(s)].map(e => e.getBoundingClientRect().toJSON())",
                         selector)


def test_the_duplicates_page_fits_a_phone_and_shows_its_groups(phone, tmp_path):
    expect(phone.locator("#dup-summary")).to_contain_text("2 groups, 4 duplicates among 11 images")
    groups = phone.locator(".dup-group")
    expect(groups).to_have_count(2)
    expect(groups.nth(0).locator(".card .name", has_text=LONG_NAME[:20])).to_have_count(1)
    phone.wait_for_function("() => [...document.querySelectorAll('.dup-group img')]"
                            ".every(img => img.complete && img.naturalWidth > 0)")
    widths = phone.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], widths  # no sideways scrolling of the page
    for selector in ("header.top > *", "#dup-form > *", "#dup-summary", ".dup-group"):
        found = boxes(phone, selector)
        assert found, selector
        for box in found:
            assert box["left"] >= 0 and box["right"] <= PHONE["width"], (selector, box)
    for n in range(2):  # each group's heading and first picture are on screen, not pushed off it
        group = groups.nth(n)
        group.scroll_into_view_if_needed()
        expect(group.locator("h2")).to_be_in_viewport()
        expect(group.locator(".card img").first).to_be_in_viewport()
    # a long name stays inside its card (cut short), wherever the card sits in its row
    names = phone.evaluate("() => [...document.querySelectorAll('.dup-row .card')].map(c => "
                           "[c.getBoundingClientRect().right, c.querySelector('.name').getBoundingClientRect().right])")
    assert names and all(name <= card + 0.5 for card, name in names), names
    phone.screenshot(path=str(tmp_path / "phone-duplicates.png"), full_page=True)
