"""Command line: `python -m logreg_tf.serve --saved_model=EXPORT_DIR`.

Serves a model over TensorFlow Serving's REST API (GET /v1/models/NAME,
GET /v1/models/NAME/metadata, POST /v1/models/NAME:predict and
/v1/models/NAME/versions/V:predict), and at / a page to draw a digit on.
--saved_model is what export wrote (its newest numeric version is served,
and a newer one exported while the server runs is picked up, as TensorFlow
Serving's --model_base_path) or one version directory; --model_dir serves a
training run's newest intact checkpoint (and the next as training goes on).
SIGTERM or SIGINT: in-flight requests finish, then the server exits 0.
It has no authentication: it listens on 127.0.0.1 unless --host says
otherwise (see the README before exposing it).
"""

import asyncio
import sys
import types

from absl import flags
from absl import logging

from logreg_tf import cli

PROG = "logreg-serve"


def define_flags(fv: flags.FlagValues) -> types.SimpleNamespace:
  f = types.SimpleNamespace(
      saved_model=flags.DEFINE_string(
          "saved_model", None, "The --export_dir that export wrote (its "
          "newest numeric version is served; newer ones are picked up) or "
          "one EXPORT_DIR/<version>.", flag_values=fv),
      model_dir=flags.DEFINE_string(
          "model_dir", None, "Instead of --saved_model: a training run's "
          "directory; its newest intact checkpoint is served (the version "
          "is its epoch).", flag_values=fv),
      host=flags.DEFINE_string(
          "host", "127.0.0.1", "Address to listen on. Anything but "
          "127.0.0.1 exposes an unauthenticated model server.",
          flag_values=fv),
      port=flags.DEFINE_integer(
          "port", 8501, "TCP port (TensorFlow Serving's REST port); 0 picks "
          "a free one (the start line says which).", lower_bound=0,
          upper_bound=65535, flag_values=fv),
      model_name=flags.DEFINE_string(
          "model_name", None, "The NAME in /v1/models/NAME; default: the "
          "export directory's name (or the model directory's).",
          flag_values=fv),
      max_request_bytes=flags.DEFINE_integer(
          "max_request_bytes", 32 << 20, "Larger bodies get 413 (32 MiB "
          "holds about 5,000 digits as JSON).", lower_bound=1024,
          flag_values=fv),
      idle_timeout=flags.DEFINE_float(
          "idle_timeout", 15.0, "Seconds a connection may send nothing "
          "before it is closed.", lower_bound=0.1, flag_values=fv),
      poll_seconds=flags.DEFINE_float(
          "poll_seconds", 1.0, "How often to look for a newer version; 0: "
          "never.", lower_bound=0.0, flag_values=fv),
      drain_seconds=flags.DEFINE_float(
          "drain_seconds", 30.0, "On SIGTERM/SIGINT, how long in-flight "
          "requests may take to finish.", lower_bound=0.0, flag_values=fv),
      threads=flags.DEFINE_integer(
          "threads", 4, "Threads that parse requests and call the model.",
          lower_bound=1, flag_values=fv))
  flags.register_multi_flags_validator(
      ["saved_model", "model_dir"],
      lambda d: bool(d["saved_model"]) != bool(d["model_dir"]),
      message="give --saved_model=EXPORT_DIR or --model_dir=DIR (one of them)",
      flag_values=fv)
  return f


def settings_from_flags(f):
  from logreg_tf.server.app import Settings
  return Settings(host=f.host.value, port=f.port.value,
                  max_request_bytes=f.max_request_bytes.value,
                  idle_timeout=f.idle_timeout.value,
                  poll_seconds=f.poll_seconds.value,
                  drain_seconds=f.drain_seconds.value,
                  threads=f.threads.value)


def open_models(saved_model=None, model_dir=None, model_name=None):
  """The Models to serve; UserError in one line when nothing loads."""
  from logreg_tf.server.servable import Models, Source
  source = Source(saved_model=saved_model, model_dir=model_dir)
  return Models(model_name or source.default_name, source, source.first())


def main(f, argv) -> int:
  del argv
  cli.load_tensorflow()
  from logreg_tf.errors import UserError
  from logreg_tf.server.running import Server
  models = open_models(f.saved_model.value, f.model_dir.value,
                       f.model_name.value)
  server = Server(models, settings_from_flags(f))

  async def serve():
    try:
      await server.start()
    except OSError as e:
      raise UserError(f"cannot listen on {f.host.value}:{f.port.value}: "
                      f"{e.strerror or e}") from e
    url = f"http://{f.host.value}:{server.port}/"
    sys.stdout.write(
        f"serving {models.name} version {models.current.version} at {url} "
        f"(REST: {url}v1/models/{models.name}; page: {url})\n")
    sys.stdout.flush()
    return await server.serve_until_signal()

  signal_name = asyncio.run(serve())
  logging.info("stopped on %s after draining", signal_name)
  return 0


COMMAND = cli.Command(PROG, define_flags, main)


def run():
  cli.run_command(COMMAND)


if __name__ == "__main__":
  run()
