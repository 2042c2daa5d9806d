"""The README's screenshots of the job service's page: ``.venv/bin/python docs/screenshots.py``.

Starts the service (the tests' harness) on a free loopback port with a temporary data folder, uploads the
sample clip through the page in headless Chromium (Debian's chromium and chromium-driver),
and saves the page while the job runs and once it is complete, to ``docs/images/``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
sys.path.insert(0, str(REPO / "tests"))  # the tests' service harness


def main() -> None:
    from serve.harness import Service

    data = Path(tempfile.mkdtemp(prefix="pose-service-"))
    service = Service(data / "data").start()
    options = Options()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,1250",
                 "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={data / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    browser = webdriver.Chrome(
        service=DriverService(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options
    )
    try:
        browser.get(service.url)
        browser.find_element(By.ID, "file-input").send_keys(str(REPO / "public" / "demo.mp4"))
        card = WebDriverWait(browser, 30).until(lambda d: d.find_element(By.CSS_SELECTOR, "li.job"))
        WebDriverWait(browser, 120, poll_frequency=0.1).until(
            lambda d: 20 <= int(card.find_element(By.CSS_SELECTOR, "progress.job-progress").get_attribute("value")) < 90
        )
        browser.save_screenshot(str(IMAGES / "service-progress.png"))
        WebDriverWait(browser, 300).until(lambda d: card.get_attribute("data-status") == "completed")
        video = WebDriverWait(browser, 30).until(lambda d: card.find_element(By.CSS_SELECTOR, "video.annotated"))
        WebDriverWait(browser, 60).until(lambda d: d.execute_script("return arguments[0].currentTime > 1.0", video))
        browser.execute_script("arguments[0].pause()", video)
        browser.save_screenshot(str(IMAGES / "service-results.png"))
    finally:
        browser.quit()
        service.stop()
        shutil.rmtree(data, ignore_errors=True)
    print(f"wrote {IMAGES / 'service-progress.png'} and {IMAGES / 'service-results.png'}")


if __name__ == "__main__":
    main()
