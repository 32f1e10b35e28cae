"""The served model and its versions.

A `Servable` is one loaded version: its signatures (TensorFlow Serving's
names: serving_default, features, explain), each with its one input's spec.
`Source` finds the newest version: the newest numeric directory of a
SavedModel base directory (TensorFlow Serving's --model_base_path), a fixed
version directory, or the newest checkpoint of a training run. `Models`
holds the version being served and swaps in a newer one when it appears;
a request keeps the version it started with, so none is dropped.
"""

import dataclasses
import os
from typing import Callable, Dict, Optional

from absl import logging
import numpy as np

from logreg_tf.errors import UserError


class NotFound(Exception):
  """An unknown model name or version (HTTP 404)."""


@dataclasses.dataclass
class Signature:
  input_name: str
  input_spec: object  # tf.TensorSpec, batch dimension first
  outputs: Dict[str, object]  # name -> TensorSpec
  call: Callable  # np.ndarray -> {name: np.ndarray}


@dataclasses.dataclass
class Servable:
  version: int
  path: str
  signatures: Dict[str, Signature]
  holder: object = None  # keeps the loaded object (and its variables) alive

  def predict(self, signature: str, array: np.ndarray) -> dict:
    return self.signatures[signature].call(array)


def _from_saved_model(path: str, version: int) -> Servable:
  import tensorflow as tf
  loaded = tf.saved_model.load(path)
  signatures = {}
  for name, fn in loaded.signatures.items():
    (input_name, spec), = fn.structured_input_signature[1].items()
    signatures[name] = Signature(
        input_name, spec, dict(fn.structured_outputs),
        lambda a, fn=fn, k=input_name: {
            n: t.numpy() for n, t in fn(**{k: tf.constant(a)}).items()})
  return Servable(version, path, signatures, loaded)


def _from_trained(trained) -> Servable:
  """A checkpoint's model (rundir.trained) through the export's functions;
  its version is the checkpoint's number."""
  from logreg_tf import serving
  from logreg_tf.rundir.files import number
  module = serving.served_module(trained)
  signatures = {}
  for name, fn in serving.signatures(module).items():
    concrete = fn.get_concrete_function()
    spec, = concrete.structured_input_signature[0]
    outputs = {n: tf_spec(t) for n, t in concrete.structured_outputs.items()}
    signatures[name] = Signature(
        spec.name, spec, outputs,
        lambda a, fn=fn: {n: t.numpy() for n, t in fn(a).items()})
  return Servable(number(trained.path), trained.path, signatures, module)


def tf_spec(tensor):
  import tensorflow as tf
  return tf.TensorSpec(tensor.shape, tensor.dtype)


class Source:
  """Where versions come from: --saved_model (a base directory or one
  version) or --model_dir (a training run; its checkpoint numbers are the
  versions)."""

  def __init__(self, saved_model: Optional[str] = None,
               model_dir: Optional[str] = None):
    self.saved_model, self.model_dir = saved_model, model_dir
    self.fixed = bool(saved_model) and os.path.isfile(
        os.path.join(saved_model, "saved_model.pb"))
    where = saved_model or model_dir
    self.default_name = os.path.basename(os.path.normpath(
        os.path.dirname(os.path.normpath(where)) if self.fixed else where))

  def newest(self) -> Optional[str]:
    """The newest version's path, or None."""
    if self.fixed:
      return self.saved_model
    if self.saved_model:
      from logreg_tf.serving import newest_version
      return newest_version(self.saved_model)
    from logreg_tf.rundir import files as ckpt_files
    from logreg_tf.rundir.workdir import ModelDir
    found = ckpt_files.candidates(ModelDir(self.model_dir).checkpoints)
    return found[0] if found else None

  def load(self, path: str) -> Servable:
    if self.saved_model:
      name = os.path.basename(os.path.normpath(path))
      return _from_saved_model(path, int(name) if name.isdigit() else 1)
    from logreg_tf.rundir import trained as trained_lib
    return _from_trained(trained_lib.load(checkpoint=path))

  def first(self) -> Servable:
    """The version to start with; UserError in one line when none loads."""
    if self.model_dir:  # its newest intact checkpoint, as evaluate reads it
      from logreg_tf.rundir import trained as trained_lib
      return _from_trained(trained_lib.load(self.model_dir))
    path = self.newest()
    if path is None:
      raise UserError(f"--saved_model={self.saved_model!r} holds no "
                      "SavedModel (neither saved_model.pb nor numeric version "
                      "directories with one); export first")
    try:
      return self.load(path)
    except UserError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
      raise UserError(f"{path} cannot be loaded as a logreg_tf model: "
                      f"{first}") from e


class Models:
  """The served version of one named model, swapped when a newer appears."""

  def __init__(self, name: str, source: Source, servable: Servable):
    self.name, self.source = name, source
    self._servable = servable
    self._failed = set()  # paths that did not load (warned once)

  @property
  def current(self) -> Servable:
    return self._servable

  def get(self, name: str, version: Optional[str] = None) -> Servable:
    servable = self._servable  # one read: a swap cannot split a request
    if name != self.name:
      raise NotFound(f"no model named {name!r} is served here; this server "
                     f"serves {self.name!r} (GET /v1/models/{self.name})")
    if version is not None and version != str(servable.version):
      raise NotFound(f"version {version!r} of {self.name!r} is not served; "
                     f"the served version is {servable.version}")
    return servable

  def refresh(self) -> bool:
    """Loads the newest version if it is not the one served; True when it
    swapped. A version that fails to load is warned about once and left.
    One caller at a time (the server's poller)."""
    if self.source.fixed:
      return False
    path = self.source.newest()
    if path is None or path == self._servable.path or path in self._failed:
      return False
    try:
      servable = self.source.load(path)
    except Exception as e:  # pylint: disable=broad-except
      self._failed.add(path)
      logging.warning("not serving %s: it cannot be loaded (%s); still "
                      "serving version %d", path, e, self._servable.version)
      return False
    old, self._servable = self._servable, servable
    logging.info("serving %s version %d (was %d)", self.name,
                 servable.version, old.version)
    return True
