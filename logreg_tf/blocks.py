"""How many rows of X one block of a full-batch step holds.

A step reads X for the logits and again for the gradient product. Done block
by block, the second read finds the block still in the last-level cache, so
X comes from memory once per step. A block is a quarter of that cache
(measured on a 32 MB L3: blocks of 1,500 to 3,000 MNIST rows, an eighth to a
third of it, all ran a step 0.75x of the unblocked one; 500 rows and 5,000
rows were slower). On a GPU, or where the cache size cannot be read, X is one
block, as before.
"""

import glob
import os
from typing import Optional

import tensorflow as tf

_FRACTION = 4  # a block is 1/_FRACTION of the last-level cache
_MIN_ROWS = 256  # below this the per-block overhead dominates


def _size(text: str) -> int:
  """'32768K' -> 33554432."""
  text = text.strip().upper()
  scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
  return int(text.rstrip("KMG") or 0) * scale


def last_level_cache_bytes() -> Optional[int]:
  """The largest data cache of CPU 0, from Linux's sysfs; None if unknown."""
  best = None
  for index in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*"):
    try:
      with open(os.path.join(index, "type")) as f:
        kind = f.read().strip()
      with open(os.path.join(index, "size")) as f:
        size = _size(f.read())
    except (OSError, ValueError):
      continue
    if kind in ("Data", "Unified") and size and (best is None or size > best):
      best = size
  return best


def block_rows(num_features: int, bytes_per_value: int = 4) -> Optional[int]:
  """Rows per block for a CPU step, or None for one block (GPU, unknown)."""
  if tf.config.list_physical_devices("GPU"):
    return None
  cache = last_level_cache_bytes()
  if not cache:
    return None
  rows = cache // _FRACTION // (num_features * bytes_per_value)
  return max(rows, _MIN_ROWS)
