"""Swagger UI in a real headless Chromium: the page renders, "Try it out" → "Execute" gets a 200.

Lifecycle: a loader serves the demo wrapper; chromedriver starts Debian's chromium headless with a
fresh profile and no background network; the test opens /, follows the redirect to
/swagger/index.html, expands the operation, clicks "Try it out" and "Execute" with the generated
example, reads the live response and saves a screenshot (swagger.png in the test's tmp_path).
Skipped only when chromium, chromedriver or selenium is not installed (.ci/run installs them).
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils import Loader

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,2200"]


def _missing() -> str | None:
    for path, what in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromedriver")):
        if not Path(path).exists():
            return f"{what} is not installed (apt-get install -y chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium, or the test extra)"
    return None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]:
        opts.add_argument(flag)
    service = Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def test_try_it_out_executes_the_example_and_shows_200(demo: Loader, browser: object, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(browser, WebDriver)
    driver = browser
    wait = WebDriverWait(driver, 30)
    shot = tmp_path / "swagger.png"
    try:
        driver.get(demo.url + "/")
        assert driver.current_url == demo.url + "/swagger/index.html"
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".info .title"), "Aiges Service doc for demo"))
        summary = wait.until(ec.element_to_be_clickable(
            (By.CSS_SELECTOR, "#operations-demo-callAIAbility .opblock-summary")))
        assert "/v1/private/demo" in summary.text
        summary.click()
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#operations-demo-callAIAbility .try-out__btn"))).click()
        body = wait.until(ec.presence_of_element_located(
            (By.CSS_SELECTOR, "#operations-demo-callAIAbility textarea.body-param__text")))
        sent = json.loads(body.get_attribute("value") or "{}")
        assert sent["parameter"]["demo"]["result"]["data_type"] == "text"  # the expect object is in the example
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#operations-demo-callAIAbility .execute"))).click()
        status = wait.until(ec.visibility_of_element_located(
            (By.CSS_SELECTOR, "#operations-demo-callAIAbility .live-responses-table tr.response .response-col_status")))
        response = driver.find_element(
            By.CSS_SELECTOR, "#operations-demo-callAIAbility .live-responses-table tr.response .response-col_description")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", response)
        assert status.text.strip() == "200", response.text
        assert '"text": "HELLO AIGES"' in response.text
        assert '"message": "success"' in response.text
        # offline: every resource the page loaded came from the loader itself
        loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(u.startswith(demo.url + "/") for u in loaded), loaded
    finally:
        driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
