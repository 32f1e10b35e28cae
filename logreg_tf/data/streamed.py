"""A split read block by block from its uint8 rows: streamed input.

In memory, a split is one float32 matrix, 4 bytes per pixel. Streamed, it
stays where it is (the decoded row file of cache.py, mapped, so the
operating system's page cache holds what fits; or a uint8 array), and each
use reads a block of rows, copies the block's uint8 pixels to the device
and makes them float32 there: nothing of the split's float32 size is ever
made. The conversion is the in-memory path's (k / 255, correctly rounded),
so a block holds the very values the matrix would.

`--input=auto` streams when the float32 matrices would not fit the budget:
half of the memory this process may use (`memory_budget`).
"""

import concurrent.futures
import functools
import mmap
import os
import sys
from typing import Iterator, Optional, Tuple

import numpy as np
import tensorflow as tf

from logreg_tf.data import aligned, pixels_to_float32
from logreg_tf.data.dataset import Rows
from logreg_tf.errors import UserError

# About this many bytes of uint8 pixels per block (4 MB: 16 MB as float32
# on the device). A streamed run holds a few blocks' worth at a time (the
# copy read ahead, its float32 conversion, the products' pieces): measured
# here, 4 MB blocks add 120 MB to the process and 16 MB blocks 365 MB, for
# the same speed.
BLOCK_BYTES = 4 << 20
# Random rows are read through the mapping a window of this many bytes at
# a time (StreamedSplit._gather).
WINDOW_BYTES = 64 << 20
# madvise(MADV_POPULATE_READ) (Linux 5.14; Python 3.11's mmap does not name
# it): a window's page tables filled in one call. Touching the rows took a
# fault each instead: 164 against 51 ms for 162,000 random rows of a 3M-row
# file here, 636 against 245 ms for 810,000 (_can_populate: False once the
# kernel refuses).
_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)
_can_populate = sys.platform.startswith("linux")


def _populate(mapping: mmap.mmap, start: int, length: int) -> None:
  """Maps mapping[start:start + length] into the page tables in one call,
  where the kernel can (else the reads fault the pages in, as before)."""
  global _can_populate  # pylint: disable=global-statement
  if _can_populate:
    try:
      mapping.madvise(_POPULATE_READ, start, length)
    except OSError:  # a kernel older than 5.14
      _can_populate = False


class StreamedSplit:
  """The rows of one split, read in blocks; `labels` are in memory (8 bytes
  a row against the pixels' hundreds).

  `images`: 2-D uint8, [rows of the source, features] (np.memmap or array);
  `index`: the positions of this split's rows among them (a class
  selection), or None for all of them, in order.
  """

  def __init__(self, images, index: Optional[np.ndarray] = None,
               block_rows: Optional[int] = None, multiple: int = 1):
    if isinstance(images, Rows):  # a class selection of a mapped file
      images, index = images.images, images.index
    self.images, self.index = images, index
    self.num_examples = len(images) if index is None else len(index)
    self.features = int(images.shape[1])
    rows = block_rows or max(1, BLOCK_BYTES // self.features)
    # A whole number of the steps' cache-sized blocks (`multiple`), so that
    # a streamed block is cut as the in-memory matrix is.
    self.block_rows = max(multiple, rows // multiple * multiple)
    self._fd = None  # the mapped file, for pread
    self._first = 0  # of the source's rows, when index is None

  def part(self, start: int, end: int) -> "StreamedSplit":
    """Rows [start, end) of this split, as a split of their own (a
    replica's shard)."""
    out = StreamedSplit.__new__(StreamedSplit)
    out.__dict__.update(self.__dict__)
    out._fd = None
    out.num_examples = end - start
    if self.index is None:
      out._first = self._first + start
    else:
      out.index = self.index[start:end]
    return out

  @property
  def shape(self) -> Tuple[int, int]:
    return (self.num_examples, self.features)

  def rows(self, start: int, end: int) -> np.ndarray:
    """uint8 rows [start, end) of the split (a copy). From a mapped file,
    all of the split's rows in order are read with one pread (no page of
    the mapping is touched); a selection by mapping, in file order."""
    if self.index is None:
      start, end = start + self._first, end + self._first
      if getattr(self.images, "filename", None) is None:
        return np.array(self.images[start:end])
      out = aligned((end - start, self.features))
      self._read_into(out, start)
      return out
    return self._gather(self.index[start:end])

  def _read_into(self, out: np.ndarray, first: int) -> None:
    """The mapped file's rows from `first` on into `out` (contiguous), by
    pread: no page of the mapping is touched."""
    path = self.images.filename
    if self._fd is None:
      self._fd = os.open(path, os.O_RDONLY)
    offset = self.images.offset + first * self.features
    view = memoryview(out).cast("B")
    while view.nbytes:  # a pread may return less than asked
      got = os.preadv(self._fd, [view], offset)
      if not got:
        raise OSError(f"{path}: ends before row {first + len(out)}")
      view, offset = view[got:], offset + got

  def take(self, positions: np.ndarray) -> np.ndarray:
    """uint8 rows at `positions` of the split, in that order (a copy)."""
    # In file order, a window of the mapping at a time, then put back.
    ascending, at = in_file_order(positions)
    out = aligned((len(positions), self.features))
    np.take(self.take_in_order(ascending), at, axis=0, out=out)
    return out

  def take_in_order(self, ascending: np.ndarray,
                    out: Optional[np.ndarray] = None) -> np.ndarray:
    """uint8 rows at ascending `positions` of the split (a copy; into the
    first rows of `out` when given, an aligned buffer no one else reads)."""
    return self._gather(ascending + self._first if self.index is None
                        else self.index[ascending], out)

  def _gather(self, ascending: np.ndarray,
              out: Optional[np.ndarray] = None) -> np.ndarray:
    """The rows at strictly ascending positions of the source, one window
    (WINDOW_BYTES) of the file at a time. A window whose rows are all asked
    for is read by pread. Otherwise its rows are read through the mapping,
    the window's pages mapped in one call (_populate) and unmapped from
    this process again afterwards: they stay in the page cache, for the next
    epoch, but do not count in the process's resident memory (reading one
    row maps a whole folio of the page cache, up to 2 MB here, so a few
    thousand random rows would map all of a large file at once)."""
    mapping = getattr(self.images, "_mmap", None)
    if mapping is None:
      return self.images[ascending]
    out = (aligned((len(ascending), self.features)) if out is None
           else out[:len(ascending)])
    window = max(1, WINDOW_BYTES // self.features)
    ends = np.searchsorted(ascending, np.arange(
        window, len(self.images) + window, window))
    start = 0
    for end in ends:
      if end == start:
        continue
      low, high = int(ascending[start]), int(ascending[end - 1]) + 1
      if high - low == end - start:
        # Every row of the window (a mini-batch group as large as the
        # file): pread skips the mapping's page-table work, which the first
        # pass over MNIST's rows in a process took 310 ms for (pread: 25).
        self._read_into(out[start:end], low)
      else:
        first = self.images.offset + low * self.features
        first -= first % mmap.PAGESIZE
        length = min(self.images.offset + high * self.features,
                     len(mapping)) - first
        _populate(mapping, first, length)
        out[start:end] = self.images[ascending[start:end]]
        mapping.madvise(mmap.MADV_DONTNEED, first, length)
      start = end
    return out

  def close(self) -> None:
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None

  def __del__(self):
    self.close()

  def bounds(self):
    return [(s, min(s + self.block_rows, self.num_examples))
            for s in range(0, self.num_examples, self.block_rows)]

  def blocks(self) -> Iterator[Tuple[int, int, tf.Tensor]]:
    """(start, end, uint8 block tensor) over the split; the next block is
    read from the file while the caller computes on this one."""
    yield from prefetched(self.bounds(), lambda b: self.rows(*b),
                          lambda b, rows: (b[0], b[1], to_device(rows)))

  def sample(self, limit: int) -> np.ndarray:
    """The first `limit` rows as float32 (the figures' sample)."""
    return pixels_to_float32(self.rows(0, min(limit, self.num_examples)))


def in_file_order(positions: np.ndarray):
  """(positions ascending, where each of `positions` is among them)."""
  ascending = np.argsort(positions, kind="stable")
  at = np.empty_like(ascending)
  at[ascending] = np.arange(len(positions))
  return positions[ascending], at


def prefetched(items, read, use, first=None):
  """use(item, read(item)) for each item, read(next) running in a thread
  meanwhile (NumPy's copies from a mapped file release the GIL). `first`:
  read(items[0]), when it was read already."""
  items = list(items)
  if not items:
    return
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    if first is None:
      pending = pool.submit(read, items[0])
    else:
      pending = concurrent.futures.Future()
      pending.set_result(first)
    for i, item in enumerate(items):
      rows = pending.result()
      if i + 1 < len(items):
        pending = pool.submit(read, items[i + 1])
      yield use(item, rows)


def to_device(rows: np.ndarray) -> tf.Tensor:
  """A uint8 block as a tensor where TensorFlow runs ops (a GPU when there
  is one: only the uint8 pixels cross over); made float32 by `to_float`
  inside the compiled function that uses it. An aligned block is adopted
  through DLPack, not copied."""
  if rows.flags.c_contiguous and rows.size and not rows.ctypes.data % 64:
    tensor = tf.experimental.dlpack.from_dlpack(rows.__dlpack__())
  else:
    tensor = tf.constant(rows)
  # On a CPU the block is used where it is (an identity would cost a
  # tenth of a millisecond a block, measured, for nothing).
  return tf.identity(tensor) if _has_gpu() else tensor


@functools.lru_cache(maxsize=None)
def _has_gpu() -> bool:
  return bool(tf.config.list_logical_devices("GPU"))


_SCALE = None


def to_float(pixels) -> tf.Tensor:
  """uint8 pixels -> float32 k / 255, correctly rounded: the in-memory
  matrix's values. The 255 comes from a variable, so that neither Grappler
  nor XLA folds the division into a product by 1/255 (which rounds 11 of
  the 256 values differently); the tests check all 256 in each mode."""
  global _SCALE
  if _SCALE is None:
    with tf.init_scope():
      _SCALE = tf.Variable(255.0, trainable=False, name="pixel_scale")
  return tf.cast(pixels, tf.float32) / _SCALE


def _meminfo_available() -> Optional[int]:
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  return None


def _cgroup_room() -> Optional[int]:
  """What this process's memory cgroup still allows (v2 or v1), if limited."""
  for limit_file, usage_file in (
      ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
      ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
       "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
    try:
      with open(_own_cgroup(limit_file)) as f:
        limit = f.read().strip()
      with open(_own_cgroup(usage_file)) as f:
        usage = int(f.read().strip())
    except (OSError, ValueError):
      continue
    if limit != "max" and int(limit) < 1 << 60:
      return max(0, int(limit) - usage)
  return None


def _own_cgroup(path: str) -> str:
  """`path` under this process's own cgroup (v1 memory controller), when
  /proc/self/cgroup names one; else `path` itself."""
  try:
    with open("/proc/self/cgroup") as f:
      for line in f:
        _, controllers, group = line.strip().split(":", 2)
        if "memory" in controllers.split(",") and group not in ("", "/"):
          base = "/sys/fs/cgroup/memory"
          own = os.path.join(base + group, path[len(base) + 1:])
          if path.startswith(base + "/") and os.path.exists(own):
            return own
  except (OSError, ValueError):
    pass
  return path


def memory_budget() -> Optional[int]:
  """Half of the memory this process may still use: the smaller of the
  machine's available memory and its cgroup's room. None if unknown."""
  known = [m for m in (_meminfo_available(), _cgroup_room()) if m is not None]
  return min(known) // 2 if known else None


def choose(requested: str, need: int, budget: Optional[int]) -> str:
  """'memory' or 'stream' for --input=`requested`, given the float32 bytes
  the in-memory path would hold."""
  if requested == "stream":
    return "stream"
  fits = budget is None or need <= budget
  if requested == "memory" and not fits:
    raise UserError(
        f"--input=memory: the data needs {need / 1e9:.2f} GB as float32, "
        f"more than the budget of {budget / 1e9:.2f} GB (half of the memory "
        "this process may use); use --input=stream (or auto)")
  return "memory" if fits else "stream"
