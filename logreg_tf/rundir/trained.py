"""A trained model read back from a checkpoint, for evaluate, export and
predict.

Everything is rebuilt from the spec stored in the checkpoint (dataset, image
shape, classes, outputs, bias), and the checkpoint is read once: the read
that checks every tensor's checksum also gives the weights. Never an
optimizer.
"""

import dataclasses
import math
import os
from typing import Optional

from logreg_tf.config import DataSpec
from logreg_tf.data.dataset import DatasetInfo
from logreg_tf.errors import UserError
from logreg_tf.model import head_for, linear_model
from logreg_tf.rundir import files as ckpt_files
from logreg_tf.rundir.checkpoints import model_variables
from logreg_tf.rundir.workdir import ModelDir


@dataclasses.dataclass
class Trained:
  model: object  # the Keras Dense layer, weights restored
  head: object
  spec: dict
  path: str  # the checkpoint read

  def data(self, split: Optional[str] = None) -> DataSpec:
    """The data this model was trained on (its classes, by name); its test
    split, or `split`."""
    spec = self.spec
    return DataSpec(dataset=spec["dataset"],
                    train_split=spec.get("train_split", "train"),
                    test_split=split or spec.get("test_split", "test"),
                    classes=tuple(spec["classes"]))

  def check_data(self, info: DatasetInfo) -> None:
    """The data must be what the model was trained on: shape and classes."""
    if tuple(info.image_shape) != tuple(self.spec["image_shape"]) or list(
        info.class_names) != list(self.spec["classes"]):
      raise UserError(
          f"the data read ({info.name}, {'x'.join(map(str, info.image_shape))}"
          f", classes {','.join(info.class_names)}) does not fit the model in "
          f"{self.path} ({self.spec['dataset']}, "
          f"{'x'.join(map(str, self.spec['image_shape']))}, classes "
          f"{','.join(self.spec['classes'])})")


def _read_newest(model_dir: Optional[str], checkpoint: Optional[str]):
  """(path, tensors) of --checkpoint, or of --model_dir's newest intact one."""
  if checkpoint:
    tensors, problem = ckpt_files.read(checkpoint)
    if problem is not None:
      raise UserError(f"checkpoint {checkpoint} cannot be read: {problem}")
    return checkpoint, tensors
  directory = ModelDir(model_dir).checkpoints
  problems = []
  for path in ckpt_files.candidates(directory):
    tensors, problem = ckpt_files.read(path)
    if problem is None:
      return path, tensors
    problems.append(f"{os.path.basename(path)} ({problem})")
  if problems:
    raise UserError(f"no intact checkpoint in {directory}: "
                    f"{'; '.join(problems)}")
  raise UserError(f"--model_dir={model_dir!r} holds no checkpoint (looked in "
                  f"{directory}); train into it first")


def load(model_dir: Optional[str] = None, checkpoint: Optional[str] = None,
         dataset: Optional[str] = None) -> Trained:
  """The model of a checkpoint; `dataset`, when given, must be its dataset."""
  path, tensors = _read_newest(model_dir, checkpoint)
  spec = tensors[ckpt_files.SPEC_KEY]
  if dataset and dataset != spec["dataset"]:
    raise UserError(f"checkpoint {path} is of dataset {spec['dataset']!r}, "
                    f"not --dataset={dataset!r}; leave --dataset unset to use "
                    "the checkpoint's")
  model = linear_model(math.prod(spec["image_shape"]), spec["num_outputs"],
                       use_bias=spec["use_bias"], init="zeros", seed=0)
  for name, variable in model_variables(model).items():
    variable.assign(tensors[name + ckpt_files.VALUE])
  return Trained(model, head_for(spec["num_outputs"]), spec, path)
