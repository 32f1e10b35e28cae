"""The frozen run configuration that library code takes instead of flags."""

import dataclasses
from typing import Optional, Tuple

from logreg_tf.errors import UserError

NUM_DIGITS = 10


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that changes a training run.

  `batch_size=None` means the whole training set: one step per epoch, as in the
  tutorial. `classes=None` means all ten digits; two classes select the
  binomial (sigmoid) model, more select a softmax over that subset.
  """

  learning_rate: float = 0.05
  lr_schedule: str = "constant"  # or "linear": decays to 0 at the last step.
  num_epochs: int = 500
  display_step: int = 1
  batch_size: Optional[int] = None
  seed: int = 0
  init: str = "zeros"  # or "normal": the tutorial's standard normal weights.
  use_bias: bool = True
  l2: float = 0.0
  classes: Optional[Tuple[int, ...]] = None
  model_dir: Optional[str] = None
  data_dir: Optional[str] = None
  idx_dir: Optional[str] = None
  cache_dir: Optional[str] = None  # decoded-MNIST cache; None: no cache
  checkpoint_every: int = 10
  keep_checkpoints: int = 3
  fresh: bool = False

  @property
  def num_classes(self) -> int:
    return NUM_DIGITS if self.classes is None else len(self.classes)

  @property
  def num_outputs(self) -> int:
    """Logits per example: one for the binomial model, else one per class."""
    return 1 if self.num_classes == 2 else self.num_classes


def parse_classes(text: str) -> Optional[Tuple[int, ...]]:
  """Parses '3,8' into (3, 8); an empty string means all ten digits.

  Errors give only the reason: the flag machinery prefixes flag and value.
  """
  text = text.strip()
  if not text:
    return None
  parts = [p.strip() for p in text.split(",")]
  if not all(p.isdigit() for p in parts):
    raise UserError("expected comma-separated digits 0-9, e.g. 3,8")
  digits = tuple(int(p) for p in parts)
  bad = [d for d in digits if d >= NUM_DIGITS]
  if bad:
    raise UserError(f"digit {bad[0]} is out of range 0-9")
  if len(set(digits)) != len(digits):
    raise UserError("a digit is repeated; give each digit once")
  if len(digits) < 2:
    raise UserError("give at least two digits (two: binomial, more: softmax)")
  return digits
