"""What a run's model learned, measured on the test split and drawn:
the figures (figures.py) and the scalars that go with them."""

import re
from typing import Dict, Tuple

from logreg_tf import figures, metrics
def _tag(name: str) -> str:
  """A class name as one TensorBoard tag component."""
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "class"


def measure_and_draw(model, info, x_test, y_test) -> Tuple[
    Dict[str, bytes], Dict[str, float]]:
  """(PNG bytes by figure name, scalars by TensorBoard tag)."""
  logits = model(x_test).numpy()
  probs = metrics.probabilities(logits)
  labels = y_test.numpy()
  names = info.class_names
  confusion = metrics.confusion_matrix(labels, probs.argmax(axis=1),
                                       len(names))
  ece, table = metrics.calibration(probs, labels)
  scalars = {"test/ece": ece}
  for row in metrics.per_class(confusion, names):
    # A class's accuracy is its recall: right among that class's examples.
    scalars[f"test/accuracy_per_class/{_tag(row['class'])}"] = row["recall"]
  images = x_test.numpy().reshape(-1, *info.image_shape)
  pngs = {
      "templates": figures.templates(model.kernel.numpy(), info.image_shape,
                                     names),
      "confusion": figures.confusion(confusion, names),
      "reliability": figures.reliability(table, ece),
      "mistakes": figures.mistakes(images, labels, probs, names),
  }
  return pngs, scalars
