"""`make screenshots`: what a user sees, as PNGs under docs/ for the README.

Trains configs/best.cfg for 10 epochs, displayed every epoch, into
runs/screenshots (with --fresh), copies its
figures, starts TensorBoard on 127.0.0.1 on a free port and takes headless
Chromium screenshots of its scalars, images and HParams pages, then stops
it; then exports the run, serves it and draws a 3 on the server's page
(docs/serve-page.png). Needs Debian's `chromium` (and `chromium-driver` for
the page); without it, says so and exits 0 (it is not part of CI). Look at every screenshot before committing it.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(REPO, "docs")
RUN = os.path.join(REPO, "runs", "screenshots")
# TensorBoard draws its line charts with WebGL, which headless Chromium
# lacks: forceSVG makes it draw them as SVG.
PAGES = {"tensorboard-scalars": "?forceSVG=true#scalars",
         "tensorboard-images": "?forceSVG=true#images",
         "tensorboard-hparams": "?forceSVG=true#hparams"}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _wait(url, proc, seconds=90):
  deadline = time.monotonic() + seconds
  while time.monotonic() < deadline:
    if proc.poll() is not None:
      raise SystemExit("TensorBoard exited before answering")
    try:
      urllib.request.urlopen(url, timeout=5).read()
      return
    except OSError:
      time.sleep(0.5)
  raise SystemExit(f"TensorBoard did not answer at {url}")


def main():
  browser = shutil.which("chromium") or shutil.which("chromium-browser")
  if not browser:
    print("screenshots skipped: no chromium (apt-get install chromium)")
    return
  subprocess.run([sys.executable, "-m", "logreg_tf.train",
                  "--flagfile=configs/best.cfg", "--num_epochs=10",
                  "--display_step=1", f"--model_dir={RUN}", "--fresh"],
                 cwd=REPO, check=True)
  os.makedirs(DOCS, exist_ok=True)
  for name in ("templates", "confusion", "reliability", "mistakes"):
    shutil.copy(os.path.join(RUN, "figures", f"{name}.png"),
                os.path.join(DOCS, f"figure-{name}.png"))
  port = _free_port()
  board = subprocess.Popen(
      [os.path.join(os.path.dirname(sys.executable), "tensorboard"),
       f"--logdir={RUN}", "--host=127.0.0.1", f"--port={port}"],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    base = f"http://127.0.0.1:{port}/"
    _wait(base + "data/runs", board)
    for name, page in PAGES.items():
      out = os.path.join(DOCS, f"{name}.png")
      subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                      "--hide-scrollbars", "--window-size=1800,1000",
                      "--virtual-time-budget=15000", f"--screenshot={out}",
                      base + page], check=True, capture_output=True,
                     timeout=120)
      print(f"wrote {out}")
  finally:
    board.terminate()
    board.wait(timeout=30)
  serve_page()


# A 3 in two strokes, in the pad's [0, 1] coordinates.
THREE = [[(0.3, 0.22), (0.5, 0.15), (0.68, 0.25), (0.62, 0.42), (0.45, 0.48)],
         [(0.45, 0.48), (0.68, 0.58), (0.7, 0.75), (0.5, 0.85), (0.3, 0.78)]]


def serve_page():
  """The server's page with a 3 drawn on it: docs/serve-page.png."""
  from logreg_tf.server import browser as page_browser
  missing = page_browser.available()
  if missing:
    print(f"page screenshot skipped: {missing}")
    return
  export = os.path.join(REPO, "runs", "screenshots-export", "mnist")
  shutil.rmtree(os.path.dirname(export), ignore_errors=True)
  subprocess.run([sys.executable, "-m", "logreg_tf.export",
                  f"--model_dir={RUN}", f"--export_dir={export}"], cwd=REPO,
                 check=True, capture_output=True)
  server = subprocess.Popen(
      [sys.executable, "-m", "logreg_tf.serve", f"--saved_model={export}",
       "--port=0"], cwd=REPO, stdout=subprocess.PIPE,
      stderr=subprocess.DEVNULL, text=True)
  driver = None
  try:
    url = server.stdout.readline().split(" at ")[1].split(" ")[0]
    driver = page_browser.start(1150, 1000)
    driver.get(url)
    page_browser.draw(driver, THREE)
    out = os.path.join(DOCS, "serve-page.png")
    driver.save_screenshot(out)
    print(f"wrote {out}")
  finally:
    if driver is not None:
      driver.quit()
    server.terminate()
    server.wait(timeout=30)


if __name__ == "__main__":
  main()
