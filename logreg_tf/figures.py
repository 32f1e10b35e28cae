"""Pictures of what the model learned, drawn by matplotlib (Agg) as PNGs.

- templates: each class's weights in the image's shape, one diverging colour
  map centred on zero with one symmetric scale for all classes. Colour
  images show each channel's weight as that channel's intensity (0.5 grey
  is zero, brighter is positive), on the same symmetric scale.
- confusion: the test confusion matrix with counts and class names.
- reliability: accuracy against confidence per bin, with the bin counts,
  and the expected calibration error in the title.
- mistakes: the test images the model got wrong with the highest
  probability, each with its true and predicted class.
- sweep: validation and test accuracy along a regularisation path
  (logreg-sweep).
"""

import io
from typing import Dict, List, Sequence

import numpy as np

NAMES = ("templates", "confusion", "reliability", "mistakes")


def draw_all(analysis, kernel: np.ndarray, images: np.ndarray,
             image_shape: Sequence[int]) -> Dict[str, bytes]:
  """Every figure as PNG bytes, by name, from one metrics.Analysis of the
  test split, the model's kernel [D, K] and the split's images [N, D]."""
  names = analysis.class_names
  images = images.reshape(-1, *image_shape)
  return {
      "templates": templates(kernel, image_shape, names),
      "confusion": confusion(analysis.confusion, names),
      "reliability": reliability(analysis.reliability, analysis.ece),
      "mistakes": mistakes(images, analysis.labels, analysis.probabilities,
                           names),
  }


def pyplot():
  """matplotlib's pyplot, drawing into files (Agg), imported on first use."""
  import matplotlib
  matplotlib.use("Agg")  # files only, never a window
  import matplotlib.pyplot as plt
  return plt


def _png(fig) -> bytes:
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
  pyplot().close(fig)
  return buffer.getvalue()


def _show(ax, image):
  ax.imshow(image, cmap="gray" if image.ndim == 2 else None,
            interpolation="nearest")
  ax.set_xticks([])
  ax.set_yticks([])


def templates(kernel: np.ndarray, shape: Sequence[int],
              names: Sequence[str]) -> bytes:
  """One image per class (per logit: a binomial model has one)."""
  plt = pyplot()
  outputs = kernel.shape[1]
  titles = list(names) if outputs > 1 else [f"{names[1]} (+) vs {names[0]} (-)"]
  scale = float(np.abs(kernel).max()) or 1.0
  cols = min(outputs, 5)
  rows = -(-outputs // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols + 1, 2.4 * rows),
                           squeeze=False)
  h, w, c = shape
  image = None
  for k, ax in enumerate(axes.flat):
    ax.axis("off")
    if k >= outputs:
      continue
    weights = kernel[:, k].reshape(h, w, c)
    if c == 1:
      image = ax.imshow(weights[..., 0], cmap="RdBu_r", vmin=-scale,
                        vmax=scale, interpolation="nearest")
    else:
      ax.imshow(np.clip(0.5 + weights / (2 * scale), 0, 1),
                interpolation="nearest")
    ax.set_title(titles[k], fontsize=9)
  if image is not None:
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8,
                 label="weight")
  fig.suptitle("Weight templates (one symmetric scale)")
  return _png(fig)


def confusion(matrix: np.ndarray, names: Sequence[str]) -> bytes:
  plt = pyplot()
  k = len(names)
  fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
  ax.imshow(matrix, cmap="Blues")
  top = matrix.max() or 1
  for i in range(k):
    for j in range(k):
      ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
              color="white" if matrix[i, j] > top / 2 else "black")
  ax.set_xticks(range(k), [n[:10] for n in names], rotation=60, ha="right")
  ax.set_yticks(range(k), [n[:10] for n in names])
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(f"Confusion matrix ({int(matrix.sum())} test examples)")
  return _png(fig)


def reliability(table: List[Dict], ece: float) -> bytes:
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(5, 5))
  width = table[0]["high"] - table[0]["low"]
  for b in table:
    if b["count"]:
      ax.bar(b["low"], b["accuracy"], width=width, align="edge",
             color="tab:blue", edgecolor="black", linewidth=0.5)
      ax.text(b["low"] + width / 2, b["accuracy"] + 0.01, str(b["count"]),
              ha="center", va="bottom", fontsize=6, rotation=90)
  ax.plot([0, 1], [0, 1], "--", color="gray", label="perfectly calibrated")
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1.12)
  ax.set_xlabel("confidence (probability of the predicted class)")
  ax.set_ylabel("accuracy in the bin (bar label: examples)")
  ax.set_title(f"Reliability diagram, ECE {ece:.4f}")
  ax.legend(loc="upper left")
  return _png(fig)


def mistakes(images: np.ndarray, labels: np.ndarray, probs: np.ndarray,
             names: Sequence[str], count: int = 16) -> bytes:
  """The `count` wrong predictions with the highest probability."""
  plt = pyplot()
  predicted = probs.argmax(axis=1)
  wrong = np.flatnonzero(predicted != labels)
  order = wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")]
  order = order[:count]
  cols = 4
  rows = max(1, -(-len(order) // cols))
  fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows),
                           squeeze=False)
  for ax in axes.flat:
    ax.axis("off")
  for ax, i in zip(axes.flat, order):
    image = images[i]
    _show(ax, image[..., 0] if image.shape[-1] == 1 else image)
    ax.axis("on")
    ax.set_title(f"true {names[labels[i]][:12]}\npredicted "
                 f"{names[predicted[i]][:12]} ({probs[i, predicted[i]]:.2f})",
                 fontsize=8)
  fig.suptitle(f"Most confident mistakes ({len(wrong)} in all)")
  return _png(fig)


def sweep(l2s: Sequence[float], validation: Sequence[float],
          test: Sequence[float], chosen: float, by: str) -> bytes:
  """Validation and test accuracy against l2 (log scale), the chosen l2
  marked: the test curve is drawn after the choice, never used for it."""
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(7, 4.5))
  ax.plot(l2s, validation, "o-", color="tab:blue", label="validation")
  ax.plot(l2s, test, "s--", color="tab:orange", label="test (after the choice)")
  ax.axvline(chosen, color="gray", linestyle=":",
             label=f"chosen l2 {chosen:.3g} (by validation {by})")
  ax.set_xscale("log")
  ax.set_xlabel("l2 (penalty 0.5 * l2 * ||W||^2)")
  ax.set_ylabel("accuracy")
  ax.set_title("Regularisation path: each l2 solved to its optimum")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(loc="lower left")
  return _png(fig)
