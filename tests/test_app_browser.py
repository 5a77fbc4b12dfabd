"""The browser app in a real browser: the page served on 127.0.0.1, driven by headless Chromium through Selenium.

The system's Chromium and its driver are used (Debian: ``apt-get install -y chromium chromium-driver``); nothing
is downloaded. Without them these tests skip, unless ``LOCATER_REQUIRE_BROWSER=1`` (CI sets it): then they fail.
``LOCATER_APP_SCREENSHOT=docs/app.png`` saves the screenshot of the finished run there (else in the test's
temporary folder); ``LOCATER_APP_CHECKPOINT=FILE`` serves a trained checkpoint instead of the random tiny one (the
screenshot in the docs: the synthetic benchmark's model). Both tests share one server, in this order: a broken upload first, then a good run, which also
shows that the server goes on serving after refusing a request. docs/app.md#the-browser-test.
"""

import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from app_fixtures import (
    SENTENCES,
    contrast_checkpoint,
    reference_masks,
    synthetic_frames,
    write_video,
    zip_masks,
)
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from locater.app import ui
from locater.app.session import AppSession

BROWSER = {"chromium": ("chromium", "chromium-browser"), "chromedriver": ("chromedriver",)}
WAIT = 60  # seconds for a page element; a run of the test video takes a few seconds


def _find(names: tuple[str, ...]) -> str | None:
    for name in names:
        path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser_paths():
    paths = {what: _find(names) for what, names in BROWSER.items()}
    missing = [what for what, path in paths.items() if path is None]
    if missing:
        reason = (
            f"{' and '.join(missing)} not found: the browser test drives the system's Chromium "
            "(Debian: apt-get install -y chromium chromium-driver; docs/app.md)"
        )
        if os.environ.get("LOCATER_REQUIRE_BROWSER", "") not in ("", "0"):
            pytest.fail(reason + "; LOCATER_REQUIRE_BROWSER is set")
        pytest.skip(reason)
    return paths


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(browser_paths, tmp_path_factory):
    root = tmp_path_factory.mktemp("app_browser")
    video = write_video(root / "small_clip.mp4", synthetic_frames())
    # LOCATER_APP_CHECKPOINT: a trained model instead (e.g. the synthetic benchmark's, for the docs' screenshot)
    trained = os.environ.get("LOCATER_APP_CHECKPOINT")
    checkpoint = Path(trained) if trained else contrast_checkpoint(root / "tiny.pt", video)
    session = AppSession.from_checkpoint(
        checkpoint, root / "work", root / "examples", device="cpu", amp="off"
    )
    blocks, url = ui.launch(session, "127.0.0.1", _free_port(), block=False, quiet=True)
    try:
        yield {"url": url, "root": root, "video": video, "checkpoint": checkpoint}
    finally:
        blocks.close()


@pytest.fixture(scope="module")
def driver(browser_paths, served):
    downloads = served["root"] / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    options.binary_location = browser_paths["chromium"]
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    # the Debian driver named explicitly: Selenium then neither looks for nor downloads one
    chrome = webdriver.Chrome(service=Service(executable_path=browser_paths["chromedriver"]), options=options)
    chrome.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    chrome.downloads = downloads
    try:
        yield chrome
    finally:
        chrome.quit()


def _open_page(driver, url: str) -> None:
    driver.get(url)
    WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#video input[type=file]"))


def _upload(driver, path: Path) -> None:
    driver.find_element(By.CSS_SELECTOR, "#video input[type=file]").send_keys(str(path))
    WebDriverWait(driver, WAIT).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f'#video td.filename[aria-label="{path.name}"]')
    )


def _type_sentences(driver, text: str) -> None:
    box = driver.find_element(By.CSS_SELECTOR, "#sentences textarea")
    box.clear()
    if text:
        box.send_keys(text)


def _status(driver) -> tuple[str, bool]:
    """The status line's text, and whether its request is still pending (the tracker shown over it)."""
    text = driver.find_element(By.CSS_SELECTOR, "#status [data-testid=markdown]").text
    tracker = driver.find_element(By.CSS_SELECTOR, "#status [data-testid=status-tracker]")
    return text, "hide" not in tracker.get_attribute("class").split()


def _run_and_wait(driver, expected: str) -> str:
    """Click Segment and return the status line once the request is done and it shows ``expected`` (or an
    error)."""
    previous, _ = _status(driver)
    driver.find_element(By.ID, "run").click()

    def done(d) -> bool:
        text, pending = _status(d)
        return not pending and text != previous and (expected in text or "Error" in text)

    WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,)).until(done)
    return _status(driver)[0]


def test_a_broken_upload_and_an_empty_sentence_get_a_message(driver, served):
    _open_page(driver, served["url"])
    broken = served["root"] / "broken.mp4"
    broken.write_bytes(b"\x00 these bytes are not a video\n" * 64)
    _upload(driver, broken)
    text = _run_and_wait(driver, "type a sentence")
    assert text == "Error: type a sentence describing the object to segment (one sentence per line)"
    _type_sentences(driver, "the green disk")
    text = _run_and_wait(driver, "OpenCV")
    assert text == "Error: broken.mp4: OpenCV cannot open this file as a video"
    page = driver.find_element(By.TAG_NAME, "body").text
    assert "Traceback" not in page and 'File "' not in page


def test_upload_two_sentences_run_and_download_the_masks(driver, served, tmp_path):
    start = time.perf_counter()
    _open_page(driver, served["url"])  # the same server, after the refused requests above
    _upload(driver, served["video"])
    _type_sentences(driver, "\n".join(SENTENCES))
    text = _run_and_wait(driver, "frames/s")
    assert text.startswith("6 frames processed (128x128, 2 sentences) in "), text
    # the overlay video is loaded and plays in the browser (VP8 webm)
    video = driver.find_element(By.CSS_SELECTOR, "#overlay video")
    WebDriverWait(driver, WAIT).until(
        lambda d: d.execute_script("return arguments[0].readyState", video) >= 2
    )
    assert driver.execute_script("return arguments[0].videoWidth", video) == 128
    screenshot = Path(os.environ.get("LOCATER_APP_SCREENSHOT") or tmp_path / "app.png")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000

    link = driver.find_element(By.CSS_SELECTOR, "#masks a.download-link")
    assert link.get_attribute("download") == "masks.zip"
    driver.execute_script("arguments[0].scrollIntoView()", link)
    link.click()
    zip_path = driver.downloads / "masks.zip"
    WebDriverWait(driver, WAIT).until(
        lambda d: zip_path.is_file() and not list(d.downloads.glob("*.crdownload"))
    )
    index, masks = zip_masks(zip_path.read_bytes())
    assert index["sentences"] == list(SENTENCES) and index["video"] == "small_clip.mp4"
    expected = reference_masks(
        served["checkpoint"], served["video"]
    )  # VideoSegmenter, same video and sentences
    assert masks.shape == expected.shape == (2, 6, 128, 128)
    assert np.array_equal(masks, expected)
    assert all(0 < m.mean() < 1 for m in masks)  # some pixels on, not all
    print(f"browser run: {time.perf_counter() - start:.1f} s; screenshot {screenshot}")
