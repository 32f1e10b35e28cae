"""The application on a socket: start, poll for new versions, and on
SIGTERM/SIGINT stop taking connections and let the requests in progress
finish (aiohttp's graceful shutdown, at most drain_seconds)."""

import asyncio
import gc
import signal
from typing import Optional

from absl import logging
from aiohttp import web

from logreg_tf.server.app import Settings, make_app
from logreg_tf.server.servable import Models


class Server:
  """The app on a socket; `start`, then `serve_until_signal` or `stop`."""

  def __init__(self, models: Models, settings: Settings):
    self.models, self.settings = models, settings
    self.runner: Optional[web.AppRunner] = None
    self.port: Optional[int] = None

  async def start(self) -> None:
    s = self.settings
    self.runner = web.AppRunner(
        make_app(self.models, s), handle_signals=False, access_log=None,
        keepalive_timeout=s.idle_timeout, shutdown_timeout=s.drain_seconds)
    await self.runner.setup()
    site = web.TCPSite(self.runner, s.host, s.port, reuse_address=True)
    await site.start()
    # The model and the server are long-lived objects beside TensorFlow's
    # (frozen since it loaded, cli.load_tensorflow): moved out of the
    # collector's reach too, the collections that parsing a batch's JSON
    # triggers take microseconds instead of about 0.2 s each.
    gc.freeze()
    self.port = site._server.sockets[0].getsockname()[1]  # pylint: disable=protected-access
    self._poller = asyncio.ensure_future(self._poll())

  async def _poll(self) -> None:
    if not self.settings.poll_seconds:
      return
    loop = asyncio.get_running_loop()
    while True:
      await asyncio.sleep(self.settings.poll_seconds)
      await loop.run_in_executor(None, self.models.refresh)

  async def stop(self) -> None:
    """Stops accepting, lets in-flight requests finish (at most
    drain_seconds), closes."""
    self._poller.cancel()
    await self.runner.cleanup()

  async def serve_until_signal(self) -> str:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    got = []
    for sig in (signal.SIGTERM, signal.SIGINT):
      loop.add_signal_handler(sig, lambda sig=sig: (got.append(sig.name),
                                                    stopping.set()))
    await stopping.wait()
    logging.info("%s: draining in-flight requests (at most %.0f s)", got[0],
                 self.settings.drain_seconds)
    await self.stop()
    return got[0]
