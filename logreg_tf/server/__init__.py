"""The model server (`python -m logreg_tf.serve`): TensorFlow Serving's REST
API over aiohttp, and the draw-a-digit page.

servable.py  the served model and its versions (a SavedModel base directory
             polled for new versions, or a training run's checkpoints)
rest.py      TensorFlow Serving's JSON: requests to arrays, outputs to JSON
app.py       the aiohttp application: routes, errors as {"error"}
running.py   the application on a socket: version polling, the drain
page/        the page's static files (no asset from outside the machine)
browser.py   headless Chromium on the page (the tests, make screenshots)
"""
