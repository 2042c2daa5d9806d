"""The README's screenshots of the job service's page: ``.venv/bin/python docs/screenshots.py``.

Starts the service on a free loopback port with a temporary data folder, uploads the
sample clip through the page in headless Chromium (Debian's chromium and chromium-driver),
and saves the page while the job runs and once it is complete, to ``docs/images/``.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"


def main() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = Path(tempfile.mkdtemp(prefix="pose-service-"))
    url = f"http://127.0.0.1:{port}"
    log = open(data / "service.log", "w")  # noqa: SIM115 - open while the service runs
    service = subprocess.Popen(
        [sys.executable, "-m", "pipeline.serve", "--port", str(port), "--data_dir", str(data)],
        stdout=log, stderr=subprocess.STDOUT, cwd=data,
    )  # fmt: skip
    options = Options()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,1250",
                 "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={data / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                if requests.get(f"{url}/api/health", timeout=5).json()["engines"] == "ready":
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or service.poll() is not None:
                raise SystemExit(f"the service did not start: see {data / 'service.log'}")
            time.sleep(0.5)
        browser.get(url)
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
        service.send_signal(signal.SIGTERM)
        service.wait(90)
        log.close()
        shutil.rmtree(data, ignore_errors=True)
    print(f"wrote {IMAGES / 'service-progress.png'} and {IMAGES / 'service-results.png'}")


if __name__ == "__main__":
    main()
