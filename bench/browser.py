"""Headless Chromium through selenium, as the dashboard's browser test and its benchmark drive
it (Chromium and chromedriver from Debian packages: hack/install-deps.sh)."""

from __future__ import annotations

import shutil

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service


def chromium() -> webdriver.Chrome:
    """A headless Chromium, 1400 by 1000; the caller quits it."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        raise RuntimeError("no chromium or chromedriver: run hack/install-deps.sh")
    options = Options()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1400,1000")
    return webdriver.Chrome(options=options, service=Service(driver))
