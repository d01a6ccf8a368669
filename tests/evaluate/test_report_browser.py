"""report.html rendered in headless Chromium: the headline table and the plots are there and decode."""
from __future__ import annotations

import shutil

import pytest

from tests.conftest import make_rows, tiny_config
from tunesmith.config import build_config
from tunesmith.run import fine_tune

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="headless Chromium is not installed (Debian packages chromium "
                    "and chromium-driver; .ci/run installs them)")
def test_report_renders_offline_with_table_and_plots(tiny_model, tmp_path):
    pytest.importorskip("selenium", reason="selenium is a dev dependency")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    train = tmp_path / "train.csv"
    make_rows(160, seed=1).to_csv(train, index=False)
    run = fine_tune(build_config(tiny_config(tiny_model, train, tmp_path / "runs")))
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={tmp_path / 'chrome'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        driver.get((run.path / "report.html").as_uri())
        heading = driver.find_element(By.ID, "comparison")
        assert "Did fine-tuning help" in heading.text
        table = heading.find_element(By.XPATH, "following-sibling::table[1]")
        rows = [r.text for r in table.find_elements(By.TAG_NAME, "tr")]
        assert rows[1].startswith("fine-tuned (full)") and any(r.startswith("majority class") for r in rows)
        assert "[" in rows[1]  # intervals are shown
        images = driver.find_elements(By.TAG_NAME, "img")
        assert len(images) >= 4
        widths = [driver.execute_script("return arguments[0].naturalWidth", img) for img in images]
        assert all(w > 100 for w in widths), widths  # every embedded plot decoded
        assert "Against the best baseline" in driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.quit()
