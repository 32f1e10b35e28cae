"""The draw-a-digit page in a real browser (headless Chromium): a digit
drawn stroke by stroke and an MNIST test image dropped on the pad are
classified as the server classifies them."""

import io
import os

import numpy as np
import pytest

from logreg_tf.server import browser
from serving_helpers import Running, call, export_of, mnist_test_digits

pytestmark = [pytest.mark.real_data, pytest.mark.process,
              pytest.mark.browser]

# A 7 in two strokes (bar, then the diagonal) and a 4 in two (the open
# angle, then the upright), in the pad's [0, 1] coordinates.
SEVEN = [[(0.25, 0.22), (0.5, 0.22), (0.75, 0.22)],
         [(0.75, 0.22), (0.62, 0.5), (0.5, 0.8)]]
FOUR = [[(0.35, 0.2), (0.3, 0.4), (0.27, 0.55), (0.5, 0.55), (0.75, 0.55)],
        [(0.62, 0.25), (0.62, 0.5), (0.62, 0.85)]]


@pytest.fixture(scope="module")
def page(config_runs, tmp_path_factory):
  missing = browser.available()
  if missing:
    if os.environ.get("CI") == "true":
      pytest.fail(f"{missing}: .ci/run installs it")
    pytest.skip(missing)
  _, base, _ = export_of(config_runs, tmp_path_factory.mktemp("export"),
                         tflite=False)
  with Running(saved_model=base, poll_seconds=0) as running:
    driver = browser.start()
    try:
      driver.get(f"http://127.0.0.1:{running.port}/")
      yield driver, running
    finally:
      driver.quit()


def _served_class(running, png: bytes) -> str:
  """What the server answers for a PNG: its input, then :predict."""
  status, made = call(running.port, "POST", f"/page/{running.name}/input",
                      png, content_type="image/png")
  assert status == 200, made
  status, answer = call(running.port, "POST",
                        f"/v1/models/{running.name}:predict",
                        {"instances": [made["images"]]})
  assert status == 200, answer
  return answer["predictions"][0]["class_names"]


@pytest.mark.parametrize("strokes,digit", [(SEVEN, "7"), (FOUR, "4")])
def test_a_digit_drawn_stroke_by_stroke(page, strokes, digit, tmp_path):
  driver, running = page
  driver.find_element("id", "clear").click()
  shown = browser.draw(driver, strokes)
  assert shown == _served_class(running, browser.pad_png(driver))
  assert shown == digit
  # Every class has its bar, the predicted one marked; the maps are drawn.
  bars = driver.find_elements("css selector", "#bars li")
  assert len(bars) == 10
  assert [b.get_attribute("class") for b in bars].count("top") == 1
  assert "= logit" in driver.find_element("id", "evidence-note").text
  driver.save_screenshot(str(tmp_path / "page.png"))


def test_a_dropped_mnist_image(page, tmp_path):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from logreg_tf.data import images as images_lib
  driver, running = page
  digits, labels = mnist_test_digits(50)
  # The first test digit the model gets right after the page's preprocessing.
  for digit, label in zip(digits, labels):
    buffer = io.BytesIO()
    Image.fromarray(digit[..., 0]).save(buffer, format="PNG")
    png = buffer.getvalue()
    if _served_class(running, png) == str(label):
      break
  assert np.array_equal(images_lib.mnist(digit).shape, (28, 28, 1))
  driver.find_element("id", "clear").click()
  assert browser.drop(driver, png) == str(label)
