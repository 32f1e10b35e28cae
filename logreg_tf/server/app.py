"""The aiohttp application: TensorFlow Serving's REST routes and the page.

Every error is one JSON object {"error": "..."} with TensorFlow Serving's
status: 400 a request it refuses, 404 an unknown model, version or path,
405 a wrong method, 413 a body over --max_request_bytes, 415 a body that is
not JSON. Model calls and JSON run on a thread pool, so the event loop keeps
answering (and timing out idle connections) while a large batch is scored.
"""

import asyncio
import concurrent.futures
import dataclasses
import html
import json
import os
from aiohttp import web

from logreg_tf.errors import DataError
from logreg_tf.server import rest
from logreg_tf.server.servable import Models, NotFound

PAGE_DIR = os.path.join(os.path.dirname(__file__), "page")
# What `curl -d` and TensorFlow Serving's examples send is JSON whatever the
# header says; anything else (a form upload, an image) is refused.
JSON_TYPES = ("application/json", "text/plain",
              "application/x-www-form-urlencoded", "application/octet-stream")
_MODELS = web.AppKey("models", Models)
_POOL = web.AppKey("pool", concurrent.futures.ThreadPoolExecutor)
_FILES = web.AppKey("page_files", dict)
_SETTINGS = web.AppKey("settings", object)


@dataclasses.dataclass
class Settings:
  host: str = "127.0.0.1"
  port: int = 8501
  max_request_bytes: int = 32 << 20
  idle_timeout: float = 15.0  # a connection that sends nothing is closed
  poll_seconds: float = 1.0  # 0: no new versions
  drain_seconds: float = 30.0
  threads: int = 4


def _error(status: int, message: str) -> web.Response:
  return web.json_response({"error": message}, status=status)


@web.middleware
async def errors_as_json(request, handler):
  try:
    return await handler(request)
  except rest.BadRequest as e:
    return _error(400, str(e))
  except NotFound as e:
    return _error(404, str(e))
  except web.HTTPRequestEntityTooLarge as e:
    del e
    return _error(413, f"the body is over the limit of "
                  f"{request.app[_SETTINGS].max_request_bytes} bytes "
                  "(--max_request_bytes)")
  except web.HTTPException as e:
    if e.status < 400:
      raise
    return _error(e.status, f"{e.reason}: {request.method} {request.path}")


async def _off_loop(request, fn, *args):
  return await asyncio.get_running_loop().run_in_executor(
      request.app[_POOL], fn, *args)


async def model_status(request):
  m = request.match_info
  servable = request.app[_MODELS].get(m["name"], m.get("version"))
  return web.json_response(rest.status(servable))


async def model_metadata(request):
  m = request.match_info
  servable = request.app[_MODELS].get(m["name"], m.get("version"))
  return web.json_response(rest.metadata(m["name"], servable))


async def model_call(request):
  m = request.match_info
  servable = request.app[_MODELS].get(m["name"], m.get("version"))
  if m["method"] != "predict":
    raise rest.BadRequest(f":{m['method']} is not served; this server "
                          "answers :predict (see the README's API table)")
  if request.content_type not in JSON_TYPES:
    return _error(415, f"the body must be JSON (Content-Type: "
                  f"application/json), not {request.content_type}")
  body = await request.read()

  def run():
    signature, array, row = rest.parse(body, servable)
    return json.dumps(rest.answer(servable.predict(signature, array), row))
  return web.Response(text=await _off_loop(request, run),
                      content_type="application/json")


async def page_input(request):
  """The page's one call outside TensorFlow Serving's API: an image file
  (a drawing's PNG, a dropped file) -> the input exactly as the model sees
  it, made by predict's own preprocessing (`--preprocess=mnist` for 28x28x1
  models, else a plain resize)."""
  servable = request.app[_MODELS].get(request.match_info["name"])
  body = await request.read()

  def run():
    from logreg_tf.data import images
    shape = tuple(servable.signatures["serving_default"].input_spec.shape[1:])
    try:
      image = images.decode(body)
    except DataError as e:
      raise rest.BadRequest(str(e)) from e
    mnist = shape == (28, 28, 1)
    out = images.mnist(image) if mnist else images.plain(image, shape)
    return {"preprocess": "mnist" if mnist else "none",
            "images": out.tolist()}
  return web.json_response(await _off_loop(request, run))


def _page_files():
  return {n: os.path.join(PAGE_DIR, n) for n in os.listdir(PAGE_DIR)}


async def page(request):
  name = request.match_info.get("file", "index.html")
  files = request.app[_FILES]
  if name not in files:  # only the page's own files: no path leaves PAGE_DIR
    raise NotFound(f"no file {name!r} here")
  if name == "index.html":  # the page learns the model's name from a <meta>
    with open(files[name], encoding="utf-8") as f:
      text = f.read().replace("__MODEL_NAME__",
                              html.escape(request.app[_MODELS].name))
    return web.Response(text=text, content_type="text/html")
  return web.FileResponse(files[name])


def make_app(models: Models, settings: Settings) -> web.Application:
  app = web.Application(client_max_size=settings.max_request_bytes,
                        middlewares=[errors_as_json])
  app[_MODELS] = models
  app[_SETTINGS] = settings
  app[_POOL] = concurrent.futures.ThreadPoolExecutor(settings.threads)
  app[_FILES] = _page_files()
  name, version = r"{name:[^/:]+}", r"{version:\d+}"
  app.router.add_get("/", page)
  app.router.add_get("/page/{file:[^/]+}", page)
  app.router.add_post(f"/page/{name}/input", page_input)
  for prefix in (f"/v1/models/{name}", f"/v1/models/{name}/versions/{version}"):
    app.router.add_get(prefix, model_status)
    app.router.add_get(prefix + "/metadata", model_metadata)
    app.router.add_post(prefix + r":{method:[a-zA-Z]+}", model_call)

  async def close_pool(app):
    app[_POOL].shutdown(wait=True)
  app.on_cleanup.append(close_pool)
  return app
