"""A real headless browser for the report tests: Debian's chromium driven by selenium.

`report_table_view` opens a Snakemake HTML report the way a reader does (Results → a category →
the eye button of one result), switches into the frame the report shows the result in, saves a
screenshot and returns the text on screen and the size of every image the browser rendered.
Where no browser is installed (`.ci/run` installs Debian's chromium and chromium-driver) or it
cannot start, the calling test skips, or fails under CI=true (tests/helpers/services.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.helpers.services import unavailable

BROWSER = ("chromium", "chromium-browser")
DRIVER = "chromedriver"


def _driver():
    binary = next((p for name in BROWSER if (p := shutil.which(name))), None)
    driver = shutil.which(DRIVER)
    if binary is None or driver is None:
        unavailable("browser", f"no headless browser here: need one of {BROWSER} and {DRIVER}")
    try:
        from selenium import webdriver
    except ImportError:
        unavailable("browser", "selenium is not installed (pip install '.[dev]')")
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    try:
        return webdriver.Chrome(service=Service(driver), options=options)
    except WebDriverException as err:  # e.g. a chromium that cannot start in this container
        unavailable("browser", f"{binary} did not start headless: {err.msg}")


def report_table_view(
    report: Path, category: str, label: str, screenshot: Path
) -> tuple[str, list[tuple[int, int]]]:
    """The text of the result labelled `label` in `category`, as the report displays it, and
    the (natural width, natural height) of each image on it (0 × 0: not decoded)."""
    from selenium.webdriver.common.by import By

    browser = _driver()
    try:
        browser.implicitly_wait(20)
        browser.get(report.resolve().as_uri())
        for text in ("Results", category):
            browser.find_element(By.XPATH, f"//a[normalize-space()='{text}']").click()
        row = browser.find_element(By.XPATH, f"//tr[td[normalize-space()='{label}']]")
        row.find_element(By.XPATH, ".//a[@iconname='eye']").click()
        browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
        text = browser.find_element(By.TAG_NAME, "body").text
        images = [
            (int(img.get_property("naturalWidth")), int(img.get_property("naturalHeight")))
            for img in browser.find_elements(By.TAG_NAME, "img")
        ]
        browser.switch_to.default_content()
        browser.save_screenshot(str(screenshot))
        return text, images
    finally:
        browser.quit()
