"""Command line: `python -m logreg_tf.export --model_dir=DIR --export_dir=OUT`.

Writes the newest intact checkpoint of DIR as a SavedModel in OUT/<version>/
(the layout TensorFlow Serving loads; the version is the checkpoint's epoch).
Signature `serving_default` takes uint8 images [batch, H, W, C] of the
dataset's shape, scales them to [0, 1] inside the graph, and returns
`class_ids`, `class_names` and `probabilities`; signature `features` takes
the float features [batch, H*W*C] the trainer uses; signature `explain`
returns each pixel's evidence for the predicted class and its template (the
server's page shows them). `--tflite` also writes `serving_default` as a
LiteRT flat buffer, EXPORT_DIR/<version>/model.tflite.
"""

import types

from absl import flags
from absl import logging

from logreg_tf import cli

PROG = "logreg-export"


def define_flags(fv: flags.FlagValues) -> types.SimpleNamespace:
  f = types.SimpleNamespace(
      model=cli.define_checkpoint_flags(fv, "exported"),
      export_dir=flags.DEFINE_string(
          "export_dir", None, "Where the SavedModel goes, as "
          "EXPORT_DIR/<version>/.", flag_values=fv),
      overwrite=flags.DEFINE_bool(
          "overwrite", False, "Replace an existing EXPORT_DIR/<version>/.",
          flag_values=fv),
      tflite=flags.DEFINE_bool(
          "tflite", False, "Also write EXPORT_DIR/<version>/model.tflite, "
          "the serving_default signature as a LiteRT (TensorFlow Lite) flat "
          "buffer.", flag_values=fv))
  flags.mark_flag_as_required("export_dir", flag_values=fv)
  return f


def main(f, argv) -> None:
  del argv
  cli.load_tensorflow()
  from logreg_tf import serving
  from logreg_tf.rundir import trained as trained_lib
  trained = trained_lib.load(f.model.model_dir.value,
                             f.model.checkpoint.value)
  path = serving.export(trained, f.export_dir.value, f.overwrite.value,
                        f.tflite.value)
  logging.info("exported %s as %s", trained.path, path)


COMMAND = cli.Command(PROG, define_flags, main)


def run():
  cli.run_command(COMMAND)


if __name__ == "__main__":
  run()
