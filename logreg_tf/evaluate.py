"""Command line: `python -m logreg_tf.evaluate --model_dir=DIR`.

Rebuilds the model and the data from the spec stored in the checkpoint
(dataset, classes, outputs), forward only, and prints loss, accuracy, ECE, a
per-class table and the confusion matrix. On a run's final checkpoint its
loss and accuracy equal the run's final test metrics exactly: both come from
`steps.evaluate`.
"""

import json
import sys
import types

from absl import flags

from logreg_tf import cli

PROG = "logreg-evaluate"


def define_flags(fv: flags.FlagValues) -> types.SimpleNamespace:
  return types.SimpleNamespace(
      data=cli.define_data_flags(
          fv, dataset_default=None,
          unset_means=" Unset: the checkpoint's dataset."),
      model=cli.define_checkpoint_flags(fv, "evaluated"),
      split=flags.DEFINE_string(
          "split", None, "TFDS split to evaluate on; unset: the test split "
          "the model was trained with.", flag_values=fv),
      output_json=flags.DEFINE_string(
          "output_json", None, "Also write the results to this JSON file.",
          flag_values=fv))


def evaluate(trained, storage, split=None) -> dict:
  """The results of `trained` on its data's test split (or `split`)."""
  import tensorflow as tf
  from logreg_tf import data, metrics, steps
  dataset = data.load_selected(trained.data(split), storage)
  trained.check_data(dataset.info)
  streamed = data.choose_input(storage.input, dataset) == "stream"
  tensors = (data.to_streamed(dataset) if streamed
             else data.to_tensors(dataset))
  x, y = tensors[2:]
  if streamed:  # the logits block by block, then the same metrics
    from logreg_tf.data.streamed import to_float
    logits = tf.concat([trained.model(to_float(block))
                        for _, _, block in x.blocks()], 0)
    result = steps.EvalResult(*trained.head.metrics(logits, y))
    result = result._replace(loss=result.loss / x.num_examples)
  else:
    forward = tf.function(lambda x, y: (steps.evaluate(
        trained.model, trained.head, x, y), trained.model(x)),
                          autograph=False)
    result, logits = forward(x, y)
  analysis = metrics.analyze(logits.numpy(), dataset.test_labels,
                             dataset.info.class_names)
  examples = len(analysis.labels)
  return {
      "checkpoint": trained.path, "dataset": dataset.info.name,
      "split": dataset.info.test_split, "examples": examples,
      "loss": float(result.loss),
      "accuracy": int(result.correct) / examples, "ece": analysis.ece,
      "per_class": analysis.per_class,
      "confusion_matrix": analysis.confusion.tolist(),
      "class_names": list(analysis.class_names),
      "reliability": analysis.reliability,
      "optimization": optimization(trained, dataset, *tensors[:2]),
  }


def optimization(trained, dataset, x, y) -> dict:
  """How far the checkpoint's weights are from the optimum of the objective
  it was trained on (its training split (x, y), its l2): the certificate of
  solvers/objective.py, for an SGD checkpoint as for a solver's."""
  from logreg_tf.solvers.objective import certify
  l2 = float(trained.spec.get("l2", 0.0))
  cert = certify(trained.model, trained.head, x, y, l2)
  return {"split": dataset.info.train_split, "l2": l2, **cert.as_dict()}


def report(results: dict) -> str:
  """The printed form: summary, per-class table, confusion matrix."""
  opt = results["optimization"]
  bound = opt["suboptimality_bound"]
  lines = [f"{results['checkpoint']} on {results['dataset']} "
           f"{results['split']} ({results['examples']} examples)",
           f"loss {results['loss']:.4f}  accuracy {results['accuracy']:.4f}"
           f"  ece {results['ece']:.4f}",
           f"training objective {opt['objective']:.10f} on {opt['split']} "
           f"(l2 {opt['l2']:g})  gradient_norm {opt['gradient_norm']:.3e}  "
           "suboptimality_bound "
           + (f"{bound:.3e}" if bound is not None else "none (l2 = 0)"), "",
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


def main(f, argv) -> None:
  del argv
  # Evaluation reads the model directory; it writes nothing there.
  storage = cli.storage_from_flags(f.data)
  cli.load_tensorflow()
  from logreg_tf.rundir import trained as trained_lib
  model = trained_lib.load(f.model.model_dir.value, f.model.checkpoint.value,
                           f.data.dataset.value)
  results = evaluate(model, storage, f.split.value)
  if f.output_json.value:
    from logreg_tf.rundir import durable
    durable.write_text(f.output_json.value,
                       json.dumps(results, indent=2) + "\n")
  sys.stdout.write(report(results))


COMMAND = cli.Command(PROG, define_flags, main)


def run():
  cli.run_command(COMMAND)


if __name__ == "__main__":
  run()
