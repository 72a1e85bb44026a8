"""The browser demo end to end, in a real headless Chromium driven by Selenium: ``python -m lang_seg.commands.app``
on a free loopback port with a tiny checkpoint, a picture uploaded, labels typed, the result checked
(segmentation image, legend, label-map download), a non-picture refused on the page while the server
keeps serving, and two browser sessions at once each getting their own result.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them): skipped without them,
except under CI (``CI`` set), where it fails instead. The result page's screenshot goes to
``$LANGSEG_APP_SCREENSHOT`` if set (the README's ``docs/app_screenshot.png`` was taken so, with
``LANGSEG_APP_WEIGHTS`` naming the bundled tiny checkpoint), else to a temporary folder.
"""
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .app_helpers import PHOTO, PHOTO_LABELS, tiny_checkpoint

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
OTHER_LABELS = ["sea", "beach", "building", "other"]
RESULT_TIMEOUT = 90  # s: a tiny model at one scale takes seconds, but the CPU may be shared


def require_browser():
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver (chromium-driver)", CHROMEDRIVER))
               if path is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if missing and os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test, but these are missing: {', '.join(missing)} (see .ci/run)")
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The demo's URL, served by ``python -m lang_seg.commands.app`` in a process of its own."""
    require_browser()
    folder = tmp_path_factory.mktemp("app_browser")
    weights = os.environ.get("LANGSEG_APP_WEIGHTS") or str(tiny_checkpoint(folder / "tiny.ckpt"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(folder / "server.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "lang_seg.commands.app", "--weights", weights, "--port", str(port)],
                               cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited with status {process.returncode}: "
                            f"{(folder / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                    if response.read() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the server did not answer within 120 s")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def browser(tmp_path):
    """``open_page(url) -> driver`` for as many sessions as a test needs; each downloads to its own folder."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    drivers = []

    def open_page(url):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1440,1000"):
            options.add_argument(argument)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # no driver download
        drivers.append(driver)
        driver.downloads = tmp_path / f"downloads_{len(drivers)}"
        driver.downloads.mkdir()
        driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(driver.downloads)})
        driver.get(url)
        wait_until(driver, lambda: idle(driver) and driver.find_elements("css selector", "textarea"), 60, "the page")
        return driver

    yield open_page
    for driver in drivers:
        driver.quit()


def wait_until(driver, condition, timeout, what):
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = condition()
        except StaleElementReferenceException:  # the page re-rendered between finding and reading: poll again
            found = None
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; page text: "
                         f"{driver.find_element('tag name', 'body').text[-1500:]}")


def idle(driver):
    apps = driver.find_elements("css selector", '[data-testid="stApp"]')
    return bool(apps) and apps[0].get_attribute("data-test-script-state") == "notRunning"


def upload(driver, path):
    """Upload ``path`` and wait until it has reached the server (its chip named, no spinner on it)."""
    driver.find_element("css selector", 'input[type="file"]').send_keys(str(path))

    def uploaded():
        chips = driver.find_elements("css selector", '[data-testid="stFileChip"]')
        return (len(chips) == 1 and chips[0].text.startswith(Path(path).name[:6]) and idle(driver)
                and not chips[0].find_elements("css selector", '[data-testid="stFileChipIconSpinner"]'))

    wait_until(driver, uploaded, 30, f"the upload of {path}")
    time.sleep(0.5)  # the rerun that follows an upload
    wait_until(driver, lambda: idle(driver), 30, f"the page after the upload of {path}")


def type_labels(driver, labels):
    from selenium.webdriver.common.keys import Keys

    area = driver.find_element("css selector", "textarea")
    area.send_keys(Keys.CONTROL, "a")
    area.send_keys(Keys.DELETE)
    area.send_keys(", ".join(labels))
    area.send_keys(Keys.CONTROL, Keys.ENTER)  # commits the text (Streamlit otherwise waits for a blur)
    time.sleep(0.5)
    wait_until(driver, lambda: idle(driver), 30, "the labels to be applied")


def press_segment(driver):
    driver.find_element("xpath", '//button[.//p[text()="Segment"]]').click()


def legend(driver, timeout=RESULT_TIMEOUT):
    """``(labels in the legend, whole legend text)`` once a result is shown."""
    found = wait_until(driver, lambda: idle(driver) and driver.find_elements("css selector", ".lseg-legend"),
                       timeout, "the segmentation result")
    names = [item.text for item in found[0].find_elements("css selector", ".lseg-label")]
    return names, found[0].text


def test_upload_segment_download_then_bad_input_and_still_serving(server, browser, tmp_path):
    driver = browser(server)
    upload(driver, PHOTO)
    type_labels(driver, PHOTO_LABELS)
    press_segment(driver)
    present, text = legend(driver)
    assert present and set(present) <= set(PHOTO_LABELS)
    assert all(label in text for label in PHOTO_LABELS)  # present with a share, or listed as not found
    sizes = wait_until(driver, lambda: driver.execute_script(
        "const ims = [...document.querySelectorAll('[data-testid=\"stImage\"] img')];"
        "return ims.every(im => im.complete && im.naturalWidth) && ims.map(im => [im.naturalWidth, im.naturalHeight])"),
        30, "the images to load")
    assert sizes == [[500, 375], [500, 375]]  # the picture and its colour mask
    assert "segmentation, torch" in driver.find_element("tag name", "body").text
    screenshot = Path(os.environ.get("LANGSEG_APP_SCREENSHOT") or tmp_path / "app_screenshot.png")
    assert driver.save_screenshot(str(screenshot))

    driver.find_element("css selector", '[data-testid="stDownloadButton"] button').click()
    done = wait_until(driver, lambda: [p for p in driver.downloads.glob("*.png")], 30, "the label-map download")
    label_map = Image.open(io.BytesIO(done[0].read_bytes()))
    assert done[0].name == f"{PHOTO.stem}_labels_torch.png"
    assert label_map.mode == "P" and label_map.size == (500, 375)
    values = set(np.unique(np.asarray(label_map)).tolist())  # Image.getdata is deprecated (Pillow 12)
    assert values and max(values) < len(PHOTO_LABELS)
    assert {PHOTO_LABELS[v] for v in values} == set(present)

    not_a_picture = tmp_path / "notes.txt"
    not_a_picture.write_text("these are notes, not a picture\n")
    upload(driver, not_a_picture)
    press_segment(driver)
    error = wait_until(driver, lambda: idle(driver) and driver.find_elements(
        "css selector", '[data-testid="stAlertContentError"]'), RESULT_TIMEOUT, "the error message")
    assert error[0].text.startswith("error: notes.txt is not a picture")
    assert not driver.find_elements("css selector", ".lseg-legend")
    assert "Traceback" not in driver.page_source

    upload(driver, PHOTO)  # the same server serves the next request
    press_segment(driver)
    assert legend(driver)[0] == present


def test_two_sessions_at_once_get_their_own_results(server, browser):
    first, second = browser(server), browser(server)
    for driver, labels in ((first, PHOTO_LABELS), (second, OTHER_LABELS)):
        upload(driver, PHOTO)
        type_labels(driver, labels)
    press_segment(first)
    press_segment(second)  # while the first runs (or waits for the model)
    for driver, mine, theirs in ((first, PHOTO_LABELS, OTHER_LABELS), (second, OTHER_LABELS, PHOTO_LABELS)):
        present, text = legend(driver)
        assert present and set(present) <= set(mine)
        assert all(label in text for label in mine)
        assert not any(label in text for label in set(theirs) - set(mine))
