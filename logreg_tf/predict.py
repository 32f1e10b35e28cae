"""Command line: `python -m logreg_tf.predict --model_dir=DIR IMAGES...`.

Classifies image files (PNG, JPEG, GIF, BMP of any size and colour; a
directory means the images in it) with a trained checkpoint or an exported
SavedModel, in batches. One line per image: file, class, probability, the
top 3. A file that cannot be read gets one line naming it and the reason;
the others are still predicted, and the exit status is 1 at the end.
"""

import json
import os
import sys
import types

from absl import flags

from logreg_tf import cli
from logreg_tf.errors import DataError, UserError

PROG = "logreg-predict"
_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp")


def define_flags(fv: flags.FlagValues) -> types.SimpleNamespace:
  f = types.SimpleNamespace(
      model=cli.define_checkpoint_flags(fv, "used", required=False),
      saved_model=flags.DEFINE_string(
          "saved_model", None, "An exported SavedModel instead of a "
          "checkpoint: the --export_dir that export wrote (its newest "
          "numeric version is used, as TensorFlow Serving does) or one "
          "EXPORT_DIR/<version>.", flag_values=fv),
      preprocess=flags.DEFINE_enum(
          "preprocess", "none", ["none", "mnist"],
          "none: resize to the model's input; mnist: what MNIST did to its "
          "digits (light ink on black, fitted in 20x20, centred by mass in "
          "28x28; a light background is inverted), for photos of "
          "handwritten digits.", flag_values=fv),
      output_json=flags.DEFINE_string(
          "output_json", None, "Also write the predictions here.",
          flag_values=fv),
      batch_size=flags.DEFINE_integer(
          "batch_size", 256, "Images per model call.", lower_bound=1,
          flag_values=fv))
  flags.register_multi_flags_validator(
      ["model_dir", "checkpoint", "saved_model"],
      lambda d: sum(bool(v) for v in d.values()) == 1,
      message="give one of --model_dir, --checkpoint or --saved_model",
      flag_values=fv)
  return f


def image_paths(args):
  """Files as given; directories expanded to their image files, sorted."""
  out = []
  for arg in args:
    if os.path.isdir(arg):
      out += sorted(os.path.join(arg, n) for n in os.listdir(arg)
                    if n.lower().endswith(_SUFFIXES))
    else:
      out.append(arg)
  return out


def classifier(model_dir=None, checkpoint=None, saved_model=None):
  """(serve, (H, W, C), class names): serve(uint8 [B, H, W, C]) is the
  export's own serving function, from a checkpoint or a SavedModel."""
  import tensorflow as tf
  if saved_model:
    from logreg_tf.serving import version_dir
    try:
      loaded = tf.saved_model.load(version_dir(saved_model))
      serve = loaded.signatures["serving_default"]
      names = [n.decode() for n in loaded.class_names.numpy()]
    except (OSError, ValueError, KeyError, AttributeError,
            tf.errors.OpError) as e:
      raise UserError(f"--saved_model={saved_model!r} cannot be loaded as "
                      f"an export of logreg_tf: "
                      f"{str(e).strip().splitlines()[0]}") from e
    spec = serve.structured_input_signature[1]["images"]
    return (lambda images: serve(images=images)), tuple(spec.shape[1:]), names
  from logreg_tf import serving
  from logreg_tf.rundir import trained as trained_lib
  trained = trained_lib.load(model_dir, checkpoint)
  module = serving.served_module(trained)
  shape = tuple(module.serve_images.input_signature[0].shape[1:])
  # The lambda keeps the module alive: its tf.function holds it weakly.
  return (lambda images: module.serve_images(images)), shape, list(
      trained.spec["classes"])


def predict(paths, serve, shape, names, preprocess="none", batch=256):
  """(predictions, failures): a dict per image, and (path, reason) pairs."""
  import numpy as np
  from logreg_tf.data import images as images_lib
  convert = images_lib.mnist if preprocess == "mnist" else images_lib.plain
  ready, failures, out = [], [], []

  def flush():
    probs = serve(np.stack([image for _, image in ready]))[
        "probabilities"].numpy()
    for (path, _), p in zip(ready, probs):
      top = np.argsort(-p, kind="stable")[:3]
      out.append({"file": path, "class": names[top[0]],
                  "probability": float(p[top[0]]),
                  "top3": [[names[k], float(p[k])] for k in top]})
    ready.clear()

  for path in paths:
    try:
      ready.append((path, convert(images_lib.read(path), shape)))
    except DataError as e:
      failures.append((path, str(e)))
    if len(ready) == batch:
      flush()
  if ready:
    flush()
  return out, failures


def _line(p) -> str:
  top = ", ".join(f"{name} {prob:.3f}" for name, prob in p["top3"])
  return f"{p['file']}\t{p['class']}\t{p['probability']:.4f}\ttop 3: {top}\n"


def main(f, argv) -> int:
  """Prints a line per image; returns 1 when an image could not be read."""
  paths = image_paths(argv[1:])
  if not paths:
    raise cli.UsageError("give image files or directories to predict")
  cli.load_tensorflow()
  serve, shape, names = classifier(f.model.model_dir.value,
                                   f.model.checkpoint.value,
                                   f.saved_model.value)
  if f.preprocess.value == "mnist" and tuple(shape) != (28, 28, 1):
    raise UserError(f"--preprocess=mnist makes 28x28x1 digits; this model "
                    f"takes {'x'.join(map(str, shape))} images")
  predictions, failures = predict(paths, serve, shape, names,
                                  f.preprocess.value, f.batch_size.value)
  for p in predictions:
    sys.stdout.write(_line(p))
  for path, reason in failures:
    sys.stderr.write(f"{PROG}: error: {reason}\n")
  if f.output_json.value:
    from logreg_tf.rundir import durable
    durable.write_text(f.output_json.value, json.dumps(
        {"predictions": predictions,
         "failures": [{"file": p, "error": r} for p, r in failures]},
        indent=2) + "\n")
  return 1 if failures else 0


COMMAND = cli.Command(PROG, define_flags, main, positional=True)


def run():
  cli.run_command(COMMAND)


if __name__ == "__main__":
  run()
