"""A real headless Chromium for page tests: Debian's ``chromium``, driven through Debian's
``chromedriver`` (the same build, so they always match) by Selenium.

Nothing is downloaded: Selenium is given both paths, so its driver manager never runs. Each
browser gets a fresh profile in a temporary directory, no sandbox (the tests run as root in a
container), no GPU, and none of the background traffic a browser makes by itself
(component updates, first-run pages): the only requests it sends are the page's.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers give /dev/shm 64 MB; Chromium wants more
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--force-device-scale-factor=1",
    "--hide-scrollbars",
)
PHONE = (390, 844)  # a common phone's CSS pixels
DESKTOP = (1280, 900)


def missing() -> str | None:
    """Why no browser can run here (None when both programs are installed)."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            return f"{path} is missing: install Debian's {package} (scripts/setup does)"
    return None


@contextmanager
def chromium(size: tuple[int, int] = DESKTOP, lang: str = "en-GB") -> Iterator[WebDriver]:
    """A headless Chromium with a fresh profile; quit (and its profile removed) at the end."""
    why = missing()
    if why is not None:
        raise FileNotFoundError(why)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--window-size={size[0]},{size[1]}")
        options.add_argument(f"--lang={lang}")
        service = Service(
            executable_path=str(CHROMEDRIVER), log_output=str(Path(profile) / "d.log")
        )
        driver = webdriver.Chrome(options=options, service=service)
        try:
            yield driver
        finally:
            driver.quit()


def wait_for(
    driver: WebDriver, check: Callable[[WebDriver], Any], timeout: float, what: str
) -> Any:
    """``check``'s first truthy result; a clear failure naming ``what`` after ``timeout``."""
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        check, f"{what}: not seen within {timeout} s"
    )


def full_page_screenshot(driver: WebDriver, path: Path, width: int) -> None:
    """The whole page, not only the window: the window is made as tall as the page first."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(width, height + 120)  # the window's frame is not page
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
