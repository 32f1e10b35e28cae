"""Image files to the model's input: any size and colour to H x W x C uint8,
and MNIST's own preprocessing for photos of handwritten digits."""

import numpy as np
import tensorflow as tf

from logreg_tf.errors import DataError, reason


def read(path: str) -> np.ndarray:
  """PNG, JPEG, GIF (first frame) or BMP as uint8 [h, w, channels]."""
  try:
    raw = tf.io.read_file(path)
  except (tf.errors.OpError, OSError) as e:
    raise DataError(f"{path}: cannot be read: {reason(e)}") from e
  return decode(raw, path)


def decode(raw, name: str = "the image") -> np.ndarray:
  """An image file's bytes as uint8 [h, w, channels]."""
  try:
    image = tf.io.decode_image(raw, expand_animations=False)
  except (tf.errors.OpError, ValueError) as e:
    raise DataError(f"{name}: not an image this command reads (PNG, JPEG, "
                    f"GIF, BMP): {reason(e)}") from e
  return image.numpy()


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
  """Grayscale <-> RGB; an alpha channel is composited over white."""
  image = image.astype(np.float32)
  if image.shape[-1] in (2, 4):  # with alpha
    alpha = image[..., -1:] / 255.0
    image = image[..., :-1] * alpha + 255.0 * (1 - alpha)
  if channels == 1 and image.shape[-1] == 3:
    image = image @ np.float32([0.2989, 0.587, 0.114])[:, None]
  elif channels == 3 and image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  return image


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """Area-averaged resize of float [h, w, c] to [height, width, c]."""
  if image.shape[:2] == (height, width):
    return image
  return tf.image.resize(image, (height, width), method="area",
                         antialias=True).numpy()


def plain(image: np.ndarray, shape) -> np.ndarray:
  """Any image to the dataset's shape: channels, then size."""
  h, w, c = shape
  out = resize(to_channels(image, c), h, w)
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _border(gray: np.ndarray) -> float:
  """The median of the outermost pixels: the background's level."""
  return float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0],
                                         gray[:, -1]])))


def mnist(image: np.ndarray, shape=(28, 28, 1)) -> np.ndarray:
  """What MNIST did to its digits: light ink on black, the digit fitted in a
  20 x 20 box (aspect kept), placed so its centre of mass is the centre of
  the 28 x 28 image. A light background (a photo of paper) is inverted."""
  h, w, _ = shape
  gray = to_channels(image, 1)[..., 0]
  if _border(gray) > 127:  # dark ink on light paper
    gray = 255.0 - gray
  gray = np.clip(gray - _border(gray), 0, None)  # the paper's tint to 0
  ink = gray > 0.2 * (gray.max() or 1)
  if not ink.any():
    return np.zeros(shape, np.uint8)
  rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
  digit = gray[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
  box = round(20 * min(h, w) / 28)
  scale = box / max(digit.shape)
  size = (max(1, round(digit.shape[0] * scale)),
          max(1, round(digit.shape[1] * scale)))
  digit = resize(digit[..., None], *size)[..., 0]
  digit *= 255.0 / (digit.max() or 1)
  total = digit.sum()
  cy = (digit.sum(axis=1) * np.arange(size[0])).sum() / total
  cx = (digit.sum(axis=0) * np.arange(size[1])).sum() / total
  top = int(np.clip(round((h - 1) / 2 - cy), 0, h - size[0]))
  left = int(np.clip(round((w - 1) / 2 - cx), 0, w - size[1]))
  out = np.zeros((h, w), np.float32)
  out[top:top + size[0], left:left + size[1]] = digit
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)[..., None]
