"""TFDS's split syntax as row ranges: `train`, `train[:50000]`,
`train[90%:]`, `train[:10]+test[-5:]`.

TFDS reads such splits itself; the IDX files (one file per split) are read
by these ranges, and the sweep uses them to refuse a validation split that
shares rows with the training split. Percent bounds round as TFDS's default
(`closest`).
"""

import re
from typing import Dict, List, Tuple

from logreg_tf.errors import UserError

_TERM = re.compile(r"^\s*(\w+)\s*(?:\[\s*([-\d%]*)\s*:\s*([-\d%]*)\s*\])?\s*$")


def _bound(text: str, size: int, default: int, where: str) -> int:
  if not text:
    return default
  try:
    if text.endswith("%"):
      value = round(int(text[:-1]) * size / 100)
    else:
      value = int(text)
  except ValueError:
    raise UserError(f"{where}: {text!r} is not a row number or a "
                    "percentage") from None
  if value < 0:
    value += size
  return min(max(value, 0), size)


def rows(split: str, sizes: Dict[str, int],
         flag: str = "split") -> List[Tuple[str, int, int]]:
  """[(base split, start, stop), ...] of `split`; `sizes`: rows per base
  split. UserError names the flag for a term it cannot read."""
  out = []
  for term in split.split("+"):
    match = _TERM.match(term)
    if not match:
      raise UserError(f"--{flag}={split!r}: {term!r} is not a split (give "
                      "NAME or NAME[start:stop], e.g. train[:50000] or "
                      "train[90%:], joined by +)")
    name, start, stop = match.groups()
    if name not in sizes:
      raise UserError(f"--{flag}={split!r}: {name!r} is not a split here "
                      f"(its splits: {', '.join(sorted(sizes))})")
    where = f"--{flag}={split!r}"
    size = sizes[name]
    out.append((name, _bound(start or "", size, 0, where),
                _bound(stop or "", size, size, where)))
  return out


def overlap(a: List[Tuple[str, int, int]],
            b: List[Tuple[str, int, int]]) -> int:
  """How many rows two splits' ranges share."""
  shared = 0
  for name, start, stop in a:
    for other, start2, stop2 in b:
      if name == other:
        shared += max(0, min(stop, stop2) - max(start, start2))
  return shared
