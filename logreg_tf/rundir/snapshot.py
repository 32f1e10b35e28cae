"""A copy of a run's variables, so that a checkpoint can be written while
training goes on.

Saving copies the variables (a few tens of kilobytes, on their device) into
the snapshot, and a background thread writes the snapshot to disk; restoring
reads a checkpoint into the snapshot and copies it back. The checkpoint's
layout is the snapshot's: one name per variable ("model/kernel",
"optimizer/iterations", ...), independent of how Keras names its own.
"""

from typing import Dict

import tensorflow as tf


def _nested(variables: Dict[str, tf.Variable]) -> tf.train.Checkpoint:
  """tf.train.Checkpoint nodes from "a/b" names, the variables as leaves."""
  tree = {}
  for name, variable in variables.items():
    *parents, leaf = name.split("/")
    node = tree
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = variable

  def build(node):
    return tf.train.Checkpoint(**{k: build(v) if isinstance(v, dict) else v
                                  for k, v in node.items()})
  return build(tree)


class Snapshot:
  """Shadow variables for `live`, and the checkpoint made of them."""

  def __init__(self, live: Dict[str, tf.Variable]):
    self._pairs = [
        (variable, tf.Variable(tf.convert_to_tensor(variable),
                               trainable=False, name=name.replace("/", "_")))
        for name, variable in live.items()]
    self.checkpoint = _nested({name: shadow for name, (_, shadow)
                               in zip(live, self._pairs)})

  def capture(self) -> None:
    """Copies the live values in (before a background write)."""
    for variable, shadow in self._pairs:
      shadow.assign(tf.convert_to_tensor(variable))

  def apply(self) -> None:
    """Copies the snapshot's values out (after a restore)."""
    for variable, shadow in self._pairs:
      variable.assign(shadow.read_value())
