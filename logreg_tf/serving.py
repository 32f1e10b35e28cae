"""The served model: the functions a SavedModel exports (export.py) and that
predict.py and the server call on a checkpoint, so all classify the same way.

Signatures: `serving_default` (uint8 images), `features` (the trainer's
float features) and `explain` (uint8 images; what only a linear model can
show: each pixel's contribution x_i * W_ic to the predicted class's logit, and
that class's template W_c, its bias, and every class's name, for the server's
page)."""

import os
from typing import Optional

from logreg_tf.errors import StorageError, UserError, reason
from logreg_tf.rundir import durable


def served_module(trained):
  """A tf.Module with the two serving functions and the trained weights."""
  import tensorflow as tf
  spec = trained.spec
  shape = [int(s) for s in spec["image_shape"]]
  features = int(tf.reduce_prod(shape))
  binomial = spec["num_outputs"] == 1

  class Served(tf.Module):
    def __init__(self):
      super().__init__(name="logreg_tf")
      self.kernel = tf.Variable(trained.model.kernel.numpy(), name="kernel")
      self.bias = (tf.Variable(trained.model.bias.numpy(), name="bias")
                   if trained.model.bias is not None else None)
      # A variable, so that the SavedModel carries every class's name too.
      self.class_names = tf.Variable(list(spec["classes"]), trainable=False,
                                     name="class_names")

    def _predict(self, x):
      logits = tf.matmul(x, self.kernel)
      if self.bias is not None:
        logits += self.bias
      if binomial:
        p = tf.sigmoid(logits[:, 0])
        probabilities = tf.stack([1 - p, p], axis=1)
      else:
        probabilities = tf.nn.softmax(logits)
      ids = tf.argmax(probabilities, axis=1, output_type=tf.int64)
      return {"class_ids": ids,
              "class_names": tf.gather(self.class_names, ids),
              "probabilities": probabilities}

    @staticmethod
    def _scaled(images):
      return tf.cast(tf.reshape(images, [-1, features]), tf.float32) / 255.0

    @tf.function(input_signature=[tf.TensorSpec([None, *shape], tf.uint8,
                                                name="images")])
    def serve_images(self, images):
      return self._predict(self._scaled(images))

    @tf.function(input_signature=[tf.TensorSpec([None, features],
                                                tf.float32,
                                                name="features")])
    def serve_features(self, features_in):
      return self._predict(features_in)

    @tf.function(input_signature=[tf.TensorSpec([None, *shape], tf.uint8,
                                                name="images")])
    def explain(self, images):
      x = self._scaled(images)
      out = self._predict(x)
      ids = out["class_ids"]
      if binomial:  # class 1 has logit w.x + b; class 0 its negative
        sign = tf.cast(2 * ids - 1, tf.float32)[:, None]
        template = sign * tf.transpose(self.kernel)
        bias = (sign[:, 0] * self.bias[0] if self.bias is not None
                else tf.zeros_like(sign[:, 0]))
      else:
        template = tf.gather(tf.transpose(self.kernel), ids)
        bias = (tf.gather(self.bias, ids) if self.bias is not None
                else tf.zeros(tf.shape(ids), tf.float32))
      batch = tf.shape(ids)[0]
      return {"class_ids": ids,
              "class_names": out["class_names"],
              "all_class_names": tf.tile(self.class_names[None], [batch, 1]),
              "probabilities": out["probabilities"],
              "evidence": tf.reshape(x * template, [-1, *shape]),
              "template": tf.reshape(template, [-1, *shape]),
              "bias": bias}

  return Served()


def signatures(module) -> dict:
  """The SavedModel's signatures, by TensorFlow Serving's names."""
  return {"serving_default": module.serve_images,
          "features": module.serve_features,
          "explain": module.explain}


def newest_version(base: str) -> Optional[str]:
  """The newest numeric version directory of EXPORT_DIR that holds a
  SavedModel (TensorFlow Serving's --model_base_path), or None."""
  try:
    versions = [int(v) for v in os.listdir(base) if v.isdigit() and
                os.path.isfile(os.path.join(base, v, "saved_model.pb"))]
  except OSError:
    return None
  return os.path.join(base, str(max(versions))) if versions else None


def version_dir(path: str) -> str:
  """The SavedModel to load from `path`: `path` itself when it holds one
  (EXPORT_DIR/<version>), else its newest version (EXPORT_DIR); `path` when
  it has neither, so that loading it names the problem."""
  if os.path.isfile(os.path.join(path, "saved_model.pb")):
    return path
  return newest_version(path) or path


def export(trained, export_dir: str, overwrite: bool = False,
           tflite: bool = False) -> str:
  """Writes the SavedModel (and with `tflite` the LiteRT file beside it);
  returns EXPORT_DIR/<version>. Nothing is half-written: it goes to a
  temporary directory renamed into place."""
  import tensorflow as tf
  from logreg_tf.rundir.files import number
  version = number(trained.path)  # the checkpoint's epoch
  target = os.path.join(export_dir, str(version if version >= 0 else 1))
  if os.path.exists(target) and not overwrite:
    raise UserError(f"{target} exists; pass --overwrite to replace it, or "
                    "use another --export_dir")
  module = served_module(trained)
  with durable.replacing(target) as tmp:
    try:
      tf.saved_model.save(module, tmp, signatures=signatures(module))
      if tflite:
        _write_tflite(tmp)
    except tf.errors.OpError as e:
      raise StorageError(f"cannot write {target}: {reason(e)}") from e
  return target


TFLITE_NAME = "model.tflite"


def _write_tflite(saved_model_dir: str) -> None:
  """The `serving_default` signature as a LiteRT flat buffer, in the version
  directory beside saved_model.pb (written before the directory is renamed
  into place, so both appear together or neither)."""
  import tensorflow as tf
  converter = tf.lite.TFLiteConverter.from_saved_model(
      saved_model_dir, signature_keys=["serving_default"])
  with open(os.path.join(saved_model_dir, TFLITE_NAME), "wb") as f:
    f.write(converter.convert())
