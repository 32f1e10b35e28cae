"""Command line: `python -m logreg_tf.evaluate --model_dir=DIR`.

Rebuilds the model and the data from the spec stored in the checkpoint
(dataset, classes, outputs), forward only, and prints loss, accuracy, ECE, a
per-class table and the confusion matrix. On a run's final checkpoint its
loss and accuracy equal the run's final test metrics exactly: both come from
`steps.evaluate`.
"""

import json
import os
import sys

from absl import app
from absl import flags

from logreg_tf import cli
from logreg_tf.errors import StorageError, UserError

PROG = "logreg-evaluate"

_DATA = cli.define_data_flags(
    dataset_default=None, unset_means=" Unset: the checkpoint's dataset.")
_MODEL = cli.define_checkpoint_flags("evaluated")
_SPLIT = flags.DEFINE_string(
    "split", None, "TFDS split to evaluate on; unset: the test split the "
    "model was trained with.")
_OUTPUT_JSON = flags.DEFINE_string(
    "output_json", None, "Also write the results to this JSON file.")


def evaluate(trained, storage, split=None) -> dict:
  """The results of `trained` on its data's test split (or `split`)."""
  import tensorflow as tf
  from logreg_tf import data, loop, metrics, steps
  dataset = loop.load_data(trained.config(split), storage)
  trained.check_data(dataset.info)
  x = data.to_features(dataset.test_images)
  y = data.to_labels(dataset.test_labels)
  forward = tf.function(lambda x, y: (steps.evaluate(trained.model,
                                                     trained.head, x, y),
                                      trained.model(x)), autograph=False)
  result, logits = forward(x, y)
  probs = metrics.probabilities(logits.numpy())
  labels = dataset.test_labels
  names = dataset.info.class_names
  confusion = metrics.confusion_matrix(labels, probs.argmax(axis=1),
                                       len(names))
  ece, reliability = metrics.calibration(probs, labels)
  return {
      "checkpoint": trained.path, "dataset": dataset.info.name,
      "split": dataset.info.test_split, "examples": int(len(labels)),
      "loss": float(result.loss),
      "accuracy": int(result.correct) / len(labels), "ece": ece,
      "per_class": metrics.per_class(confusion, names),
      "confusion_matrix": confusion.tolist(), "class_names": list(names),
      "reliability": reliability,
  }


def report(results: dict) -> str:
  """The printed form: summary, per-class table, confusion matrix."""
  lines = [f"{results['checkpoint']} on {results['dataset']} "
           f"{results['split']} ({results['examples']} examples)",
           f"loss {results['loss']:.4f}  accuracy {results['accuracy']:.4f}"
           f"  ece {results['ece']:.4f}", "",
           f"{'class':>16}  precision  recall      f1  support"]
  for row in results["per_class"]:
    lines.append(f"{row['class'][:16]:>16}  {row['precision']:9.4f}  "
                 f"{row['recall']:6.4f}  {row['f1']:6.4f}  "
                 f"{row['support']:7d}")
  names = [n[:6] for n in results["class_names"]]
  lines += ["", "confusion matrix (rows: true class, columns: predicted)",
            " " * 8 + "".join(f"{n:>7}" for n in names)]
  for name, row in zip(names, results["confusion_matrix"]):
    lines.append(f"{name:>8}" + "".join(f"{c:7d}" for c in row))
  return "\n".join(lines) + "\n"


def main(argv) -> None:
  del argv
  # Evaluation reads the model directory; it writes nothing there.
  storage = cli.storage_from_flags(_DATA)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
  from logreg_tf.rundir import trained as trained_lib
  try:
    model = trained_lib.load(_MODEL.model_dir.value, _MODEL.checkpoint.value,
                             _DATA.dataset.value)
    results = evaluate(model, storage, _SPLIT.value)
    if _OUTPUT_JSON.value:
      from logreg_tf.rundir import durable
      durable.write_text(_OUTPUT_JSON.value,
                         json.dumps(results, indent=2) + "\n")
  except (UserError, StorageError) as e:
    cli.fail(PROG, str(e), e.exit_code)
  sys.stdout.write(report(results))


def run():
  app.run(main, flags_parser=cli.flags_parser(PROG))


if __name__ == "__main__":
  run()
