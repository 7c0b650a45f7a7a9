"""Drives natgw's live page in Debian's headless Chromium (through
Debian's chromedriver and PyPI's selenium), for netns-tests/web.rs.

    browser.py URL DESTINATION

Opens URL, waits for a flow to DESTINATION to be listed, prints one JSON
line with what the page drew (the flow's translation, the topology's text,
the route tables, the flow's trace after a click), then waits for a line on
stdin (the test closed the flow) and prints a second JSON line once the flow
has left the page, or after 15 s, also saying whether the page reloaded.
"""

import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

url, destination = sys.argv[1], sys.argv[2]
options = webdriver.ChromeOptions()
for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1200"]:
    options.add_argument(a)
options.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
try:
    driver.get(url)
    # A mark that a reload would wipe.
    driver.execute_script("window.natgwTestMark = 42;")
    selector = f'tr.flow[data-destination="{destination}"]'
    WebDriverWait(driver, 15).until(lambda d: d.find_elements(By.CSS_SELECTOR, selector))
    row = driver.find_element(By.CSS_SELECTOR, selector)
    seen = {
        "source": row.get_attribute("data-source"),
        "translated": row.get_attribute("data-translated"),
        "via": row.get_attribute("data-via"),
        "cells": [c.text for c in row.find_elements(By.TAG_NAME, "td")],
        "topology": driver.find_element(By.ID, "topology").text,
        "subnets": [g.get_attribute("data-name") for g in driver.find_elements(By.CSS_SELECTOR, '#topology g[data-kind="subnet"]')],
        "hosts": [g.get_attribute("data-name") for g in driver.find_elements(By.CSS_SELECTOR, '#topology g[data-kind="host"]')],
        "nat_gateways": [g.get_attribute("data-name") for g in driver.find_elements(By.CSS_SELECTOR, '#topology g[data-kind="nat"]')],
        "routes": driver.find_element(By.ID, "routes").text,
        "title": driver.find_element(By.ID, "vpc").text,
    }
    row.click()
    trace = driver.find_element(By.ID, "trace")
    WebDriverWait(driver, 10).until(lambda d: "verdict:" in trace.text)
    seen["trace"] = trace.text
    print(json.dumps(seen), flush=True)

    sys.stdin.readline()
    deadline = time.time() + 15
    while time.time() < deadline and driver.find_elements(By.CSS_SELECTOR, selector):
        time.sleep(0.2)
    print(json.dumps({
        "gone": not driver.find_elements(By.CSS_SELECTOR, selector),
        "reloaded": driver.execute_script("return window.natgwTestMark") != 42,
        "closing": driver.find_element(By.ID, "closing-count").text,
    }), flush=True)
finally:
    driver.quit()
