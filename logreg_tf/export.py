"""Command line: `python -m logreg_tf.export --model_dir=DIR --export_dir=OUT`.

Writes the newest intact checkpoint of DIR as a SavedModel in OUT/<version>/
(the layout TensorFlow Serving loads; the version is the checkpoint's epoch).
Signature `serving_default` takes uint8 images [batch, H, W, C] of the
dataset's shape, scales them to [0, 1] inside the graph, and returns
`class_ids`, `class_names` and `probabilities`; signature `features` takes
the float features [batch, H*W*C] the trainer uses.
"""

import os

from absl import app
from absl import flags
from absl import logging

from logreg_tf import cli
from logreg_tf.errors import UserError

PROG = "logreg-export"

_MODEL = cli.define_checkpoint_flags("exported")
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", None, "Where the SavedModel goes, as EXPORT_DIR/<version>/.")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Replace an existing EXPORT_DIR/<version>/.")
flags.mark_flag_as_required("export_dir")


def main(argv) -> None:
  del argv
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
  from logreg_tf import serving
  from logreg_tf.rundir import trained as trained_lib
  try:
    trained = trained_lib.load(_MODEL.model_dir.value, _MODEL.checkpoint.value)
    path = serving.export(trained, _EXPORT_DIR.value, _OVERWRITE.value)
  except (UserError, OSError) as e:
    cli.fail(PROG, str(e))
  logging.info("exported %s as %s", trained.path, path)


def run():
  app.run(main, flags_parser=cli.flags_parser(PROG))


if __name__ == "__main__":
  run()
