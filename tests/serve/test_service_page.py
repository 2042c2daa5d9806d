"""The service's page in a real browser (Debian's Chromium driven by chromedriver through
Selenium): sign in with the token, drop a file that is not a video and read the server's
error, upload the sample clip through the page, watch its bar move to 100%, and see the
annotated video play."""

from __future__ import annotations

import shutil
import time

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
    "--autoplay-policy=no-user-gesture-required", "--window-size=1280,1600",
)  # fmt: skip

# A file dropped on the page: text named like a video (the page sends it; the server refuses it).
DROP_TEXT_FILE = """
const zone = document.getElementById("drop-zone");
const data = new DataTransfer();
data.items.add(new File(["Shopping list\\n- olive oil\\n"], "notes.mp4", {type: "video/mp4"}));
for (const type of ["dragenter", "dragover", "drop"]) {
  zone.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: data}));
}
"""


@pytest.fixture
def browser(tmp_path):
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        service=DriverService(CHROMEDRIVER, log_output=str(tmp_path / "driver.log")), options=options
    )
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_page_takes_a_video_to_the_report(service, browser, sample_video, tmp_path):
    wait = WebDriverWait(browser, 60)
    browser.get(service.url)
    # The service has a token: the page asks for it, and keeps only the session cookie.
    login = wait.until(ec.visibility_of_element_located((By.ID, "login")))
    browser.find_element(By.ID, "token-input").send_keys(service.token)
    browser.find_element(By.ID, "login-button").click()
    wait.until(ec.invisibility_of_element(login))
    wait.until(lambda d: d.find_element(By.ID, "engine-state").get_attribute("data-state") == "ready")
    assert service.token not in browser.execute_script("return JSON.stringify(localStorage) + document.cookie")

    # Dropped on the zone: not a video; the server's one-line reason is shown.
    browser.execute_script(DROP_TEXT_FILE)
    wait.until(lambda d: "notes.mp4: not a video" in d.find_element(By.ID, "upload-error").text)

    before = {e.get_attribute("data-job-id") for e in browser.find_elements(By.CSS_SELECTOR, "li.job")}
    browser.find_element(By.ID, "file-input").send_keys(str(sample_video))
    card = wait.until(
        lambda d: next(
            (e for e in d.find_elements(By.CSS_SELECTOR, "li.job") if e.get_attribute("data-job-id") not in before),
            False,
        )
    )
    assert "demo.mp4" in card.find_element(By.CSS_SELECTOR, ".job-title").text
    seen: list[int] = []
    deadline = time.monotonic() + 300
    while card.get_attribute("data-status") != "completed":
        assert card.get_attribute("data-status") not in ("failed", "cancelled"), card.text
        assert time.monotonic() < deadline, f"the job did not complete: {card.text}"
        seen.append(int(card.find_element(By.CSS_SELECTOR, "progress.job-progress").get_attribute("value")))
        time.sleep(0.2)
    bar = card.find_element(By.CSS_SELECTOR, "progress.job-progress")
    assert bar.get_attribute("value") == "100"
    assert seen == sorted(seen), "the bar went back"
    assert any(0 < value < 100 for value in seen), f"the bar jumped to the end: {sorted(set(seen))}"
    assert "100%" in card.find_element(By.CSS_SELECTOR, ".progress-text").text

    # The results: the annotated video plays in the page; the report and the downloads are there.
    video = WebDriverWait(browser, 30).until(lambda d: card.find_element(By.CSS_SELECTOR, ".results video.annotated"))
    browser.execute_script("arguments[0].muted = true; arguments[0].play().catch(() => {});", video)
    playing = (
        "const v = arguments[0]; return v.error === null && !v.paused && v.readyState >= 2 "
        "&& v.currentTime > 0.3 && v.videoWidth > 0;"
    )
    WebDriverWait(browser, 60).until(lambda d: d.execute_script(playing, video))
    width = browser.execute_script("return arguments[0].videoWidth;", video)
    assert width == 1768
    links = {a.text: a.get_attribute("href") for a in card.find_elements(By.CSS_SELECTOR, ".downloads a")}
    pose_json = next(href for text, href in links.items() if "pose.json" in text)
    fetch = "fetch(arguments[0]).then(r => r.json()).then(d => arguments[1](d.frames.length), () => arguments[1](-1));"
    assert browser.execute_async_script(fetch, pose_json) == 230  # downloads work with the page's session
    report = card.find_element(By.PARTIAL_LINK_TEXT, "Open report").get_attribute("href")
    assert "/files/report" in report
    browser.save_screenshot(str(tmp_path / "page.png"))
