"""Which checkpoints a directory holds, and whether each one is intact.

Inside MODEL_DIR/checkpoints/ TensorFlow's CheckpointManager names the files:
`ckpt-N.index` and `ckpt-N.data-*` per checkpoint, and the `checkpoint`
state file that lists them. A power loss can leave any of them torn (TF
renames a checkpoint into place without syncing it), so nothing here trusts
the state file: the candidates are what it lists and what is on disk, and a
checkpoint counts as intact only when every tensor in it reads back with
its checksum.
"""

import glob
import json
import os
import re
import time
from typing import Dict, List, Optional, Tuple

from absl import logging
from google.protobuf import text_format
import tensorflow as tf

PREFIX = "ckpt"
VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"  # how tf.train.Checkpoint keys a variable
SPEC_KEY = "spec" + VALUE
_STATE = "checkpoint"
_NUMBER = re.compile(rf"{PREFIX}-(\d+)$")


def check_state_file(directory: str) -> None:
  """Moves a state file that TensorFlow cannot parse aside (never deletes).

  CheckpointManager refuses to start on such a file; the checkpoints on
  disk are still found without it, and `point_state_at` writes a new one.
  """
  path = os.path.join(directory, _STATE)
  if not os.path.exists(path):
    return
  try:
    tf.train.get_checkpoint_state(directory)
    return
  except (ValueError, tf.errors.OpError, text_format.ParseError) as e:
    problem = str(e).splitlines()[0] if str(e) else type(e).__name__
  aside = f"{path}.damaged-{int(time.time())}"
  os.replace(path, aside)
  logging.warning("the checkpoint state file %s is damaged (%s); moved to %s "
                  "and looking for checkpoints on disk", path, problem, aside)


def number(prefix: str) -> int:
  """A checkpoint prefix's number (ckpt-12 -> 12; -1 without one)."""
  match = _NUMBER.search(prefix)
  return int(match.group(1)) if match else -1


def candidates(directory: str) -> List[str]:
  """Checkpoint prefixes, newest first: those the state file lists (even
  when their files are gone) and those whose index file is on disk."""
  found = set()
  try:
    state = tf.train.get_checkpoint_state(directory)
  except (ValueError, tf.errors.OpError, text_format.ParseError):
    state = None
  if state is not None:
    for path in state.all_model_checkpoint_paths:
      found.add(path if os.path.isabs(path) else os.path.join(directory, path))
  for index in glob.glob(os.path.join(directory, f"{PREFIX}-*.index")):
    found.add(index[:-len(".index")])
  return sorted((p for p in found if number(p) >= 0), key=number,
                reverse=True)


def read(prefix: str) -> Tuple[Optional[Dict[str, object]], Optional[str]]:
  """(every tensor by its key, None) for an intact checkpoint, else (None,
  the reason).

  TensorFlow checks each tensor it reads against its stored checksum, so a
  truncated, zeroed or missing file is caught here, before any variable is
  touched. The run's spec is decoded (under SPEC_KEY) as a dict.
  """
  try:
    reader = tf.train.load_checkpoint(prefix)
    tensors = {key: reader.get_tensor(key)
               for key in reader.get_variable_to_shape_map()}
    tensors[SPEC_KEY] = json.loads(tensors[SPEC_KEY])
    return tensors, None
  except (tf.errors.OpError, ValueError, IndexError, KeyError) as e:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return None, f"{type(e).__name__}: {text}" if text else type(e).__name__


def verify(prefix: str) -> Tuple[Optional[dict], Optional[str]]:
  """(the run's spec, None) for an intact checkpoint, else (None, reason)."""
  tensors, problem = read(prefix)
  return (tensors[SPEC_KEY] if tensors else None), problem


def point_state_at(directory: str, prefix: str, older: List[str]) -> None:
  """Rewrites the state file to name `prefix` as the latest checkpoint (after
  `older`, oldest first), so that it never names a damaged one."""
  tf.compat.v1.train.update_checkpoint_state(
      directory, prefix, all_model_checkpoint_paths=older + [prefix])


def files_of(prefix: str) -> List[str]:
  """The files of one checkpoint that exist."""
  return [p for p in [prefix + ".index"] + glob.glob(prefix + ".data-*")
          if os.path.exists(p)]


def state_path(directory: str) -> str:
  return os.path.join(directory, _STATE)
