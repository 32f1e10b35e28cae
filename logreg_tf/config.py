"""What a run is (`RunConfig`) and where it reads and writes (`Storage`).

The first defines the trained model and its result: it is what TensorBoard's
hparams and the checkpoint's spec record. The second only says where data,
caches and outputs live and how often to save; it goes to run.json alone.
"""

import dataclasses
from typing import Optional, Tuple

from logreg_tf.errors import UserError


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """Which data: a dataset, its two splits and the classes trained.

  `classes=None` means every class of the dataset; otherwise the classes as
  the user named them (names or indices), resolved against the dataset's own
  class names once it is loaded (`data.resolve_classes`).
  """

  dataset: str = "mnist"
  train_split: str = "train"
  test_split: str = "test"
  classes: Optional[Tuple[str, ...]] = None


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """Everything that changes what a training run computes.

  `batch_size=None` means the whole training set: one step per epoch, as in
  the tutorial. `classes=None` means every class of the dataset; otherwise
  the classes as the user named them (names or indices), resolved against the
  dataset's own class names once it is loaded. Two classes select the
  binomial (sigmoid) model, more select a softmax over that subset.
  """

  dataset: str = "mnist"
  train_split: str = "train"
  test_split: str = "test"
  classes: Optional[Tuple[str, ...]] = None
  learning_rate: float = 0.05
  lr_schedule: str = "constant"  # or "linear": decays to 0 at the last step.
  num_epochs: int = 500
  display_step: int = 1
  batch_size: Optional[int] = None
  seed: int = 0
  init: str = "zeros"  # or "normal": the tutorial's standard normal weights.
  use_bias: bool = True
  l2: float = 0.0
  # "sgd" (the tutorial's), or an exact full-batch solver of the same
  # objective: "lbfgs" or "newton_cg" (solvers/), which stop once the
  # certified suboptimality bound (l2 > 0; with l2 = 0 the gradient's
  # largest component) is at most `tol`, or after `max_iter` iterations.
  solver: str = "sgd"
  tol: float = 1e-4
  max_iter: int = 1000
  # Also scored at every display step; held out from the train split.
  validation_split: Optional[str] = None

  @property
  def data(self) -> DataSpec:
    return DataSpec(self.dataset, self.train_split, self.test_split,
                    self.classes)

  @property
  def epochs(self) -> int:
    """The loop's length: SGD's epochs, or a solver's most iterations (one
    iteration is one epoch of the loop)."""
    return self.num_epochs if self.solver == "sgd" else self.max_iter

  def is_display_epoch(self, epoch: int) -> bool:
    """Evaluated and logged: every `display_step` epochs, and the last."""
    return epoch % self.display_step == 0 or epoch == self.epochs


@dataclasses.dataclass(frozen=True)
class Storage:
  """Where a run reads its data and writes its outputs; nothing it computes."""

  model_dir: Optional[str] = None
  data_dir: Optional[str] = None
  idx_dir: Optional[str] = None
  cache_dir: Optional[str] = None  # decoded datasets; None: off
  checkpoint_every: int = 10
  keep_checkpoints: int = 3
  fresh: bool = False
  figure_every: int = 0  # displayed epochs between figures; 0: the end only
  input: str = "auto"  # the splits as float32 in memory, or streamed


def parse_classes(text: str) -> Optional[Tuple[str, ...]]:
  """Parses '3,8' or 'Sandal, Sneaker' into a tuple; empty means all classes.

  Only the form is checked here; whether each is a class of the dataset is
  known once its description is read (`data.resolve_classes`). Errors give
  only the reason: the flag machinery prefixes flag and value.
  """
  text = text.strip()
  if not text:
    return None
  parts = tuple(p.strip() for p in text.split(","))
  if not all(parts):
    raise UserError("an empty class name; give comma-separated class names "
                    "or indices, e.g. 3,8")
  if len(set(parts)) != len(parts):
    raise UserError("a class is repeated; give each class once")
  if len(parts) < 2:
    raise UserError("give at least two classes (two: binomial, more: softmax)")
  return parts


def describe(config: RunConfig, info) -> dict:
  """What a run is, written once for all who record it: the checkpoint's
  spec, TensorBoard's hparams and the workers' same-run check. Its facts
  about the data come from the data (`info`, a dataset.DatasetInfo)."""
  from logreg_tf.model import num_outputs
  out = {
      "dataset": info.name, "dataset_version": info.version,
      "train_split": info.train_split, "test_split": info.test_split,
      "image_shape": list(info.image_shape),
      "classes": list(info.class_names),
      "class_indices": (None if info.class_indices is None
                        else list(info.class_indices)),
      "num_outputs": num_outputs(info.num_classes),
  }
  for field in dataclasses.fields(config):
    if field.name not in out and field.name not in _DATA_FIELDS:
      out[field.name] = getattr(config, field.name)
  return out


_DATA_FIELDS = tuple(f.name for f in dataclasses.fields(DataSpec))
