"""Headless Chromium on the server's page, through Selenium: what the browser
test and `make screenshots` do with it (draw strokes, drop a file, read what
the page shows). Needs Debian's `chromium` and `chromium-driver` and the
`selenium` package (a dev dependency); `available()` says what is missing."""

import base64
import shutil
import time
from typing import List, Optional, Sequence, Tuple

Stroke = Sequence[Tuple[float, float]]  # points in [0, 1] of the pad


def available() -> Optional[str]:
  """None when a page can be driven here, else why not."""
  try:
    import selenium  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    return "selenium is not installed (pip install -e '.[dev]')"
  for program in ("chromium", "chromedriver"):
    if not shutil.which(program):
      return f"no {program} (apt-get install chromium chromium-driver)"
  return None


def start(width: int = 1200, height: int = 900):
  """A headless Chromium driven by Debian's chromedriver (no download)."""
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  options = webdriver.ChromeOptions()
  options.binary_location = shutil.which("chromium")
  for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
              "--disable-dev-shm-usage", f"--window-size={width},{height}"):
    options.add_argument(arg)
  return webdriver.Chrome(service=Service(shutil.which("chromedriver")),
                          options=options)


def wait_for_prediction(driver, timeout: float = 30) -> str:
  """The class the page shows once its newest request is answered."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    state = driver.execute_script(
        "return document.getElementById('predicted').dataset.state")
    if state == "done":
      return driver.find_element("id", "predicted").text
    if state == "error":
      raise AssertionError("the page shows an error: " + driver.find_element(
          "id", "error").text)
    time.sleep(0.05)
  raise AssertionError("the page showed no prediction")


def draw(driver, strokes: List[Stroke]) -> str:
  """Draws each stroke with the mouse (press, moves, release), waiting for
  the page's answer after each; returns the class shown at the end."""
  from selenium.webdriver.common.action_chains import ActionChains
  pad = driver.find_element("id", "pad")
  w, h = pad.size["width"], pad.size["height"]
  shown = None
  for stroke in strokes:
    # Offsets are from the pad's centre.
    at = [(round((x - 0.5) * w), round((y - 0.5) * h)) for x, y in stroke]
    chain = ActionChains(driver, duration=10).move_to_element_with_offset(
        pad, *at[0]).click_and_hold()
    for point in at[1:]:
      chain = chain.move_to_element_with_offset(pad, *point)
    chain.release().perform()
    shown = wait_for_prediction(driver)
  return shown


def drop(driver, png: bytes, name: str = "digit.png") -> str:
  """Drops a PNG file on the pad (a drop event carrying the file, as a
  drag from the desktop delivers it); returns the class shown."""
  driver.execute_script("""
    const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
    const file = new File([bytes], arguments[1], {type: 'image/png'});
    const transfer = new DataTransfer();
    transfer.items.add(file);
    document.getElementById('predicted').dataset.state = 'working';
    document.getElementById('pad').dispatchEvent(
        new DragEvent('drop', {dataTransfer: transfer, bubbles: true,
                               cancelable: true}));""",
                        base64.b64encode(png).decode(), name)
  return wait_for_prediction(driver)


def pad_png(driver) -> bytes:
  """The drawing as the page sends it (the pad's PNG)."""
  url = driver.execute_script(
      "return document.getElementById('pad').toDataURL('image/png')")
  return base64.b64decode(url.split(",", 1)[1])
