"""TensorFlow Serving's REST JSON, for the signatures of one Servable.

Requests: {"signature_name": optional, "instances": [...]} (row format: one
entry per example, the input's value or {"images": value}) or {"inputs":
value or {"images": value}} (columnar: the batch in one value). Answers:
{"predictions": [{output: value}, ...]} or {"outputs": {output: value}}.
Strings come back as UTF-8 text. What the input's dtype accepts: uint8 takes
integers 0..255 (a float is refused rather than rounded); float32 takes any
finite number.
"""

import json
from typing import Tuple

import numpy as np

_DTYPES = {"uint8": "DT_UINT8", "float32": "DT_FLOAT", "int64": "DT_INT64",
           "string": "DT_STRING", "int32": "DT_INT32"}


class BadRequest(Exception):
  """A request this API refuses (HTTP 400)."""


def parse(body: bytes, servable) -> Tuple[str, np.ndarray, bool]:
  """(signature name, the input as an array, row format?)."""
  try:
    doc = json.loads(body)
  except (ValueError, UnicodeDecodeError) as e:
    raise BadRequest(f"the body is not JSON: {e}") from e
  if not isinstance(doc, dict):
    raise BadRequest("the body must be a JSON object with \"instances\" or "
                     "\"inputs\"")
  name = doc.get("signature_name", "serving_default")
  if name not in servable.signatures:
    raise BadRequest(f"no signature {name!r}; this model has "
                     f"{', '.join(sorted(servable.signatures))}")
  signature = servable.signatures[name]
  keys = [k for k in ("instances", "inputs") if k in doc]
  if len(keys) != 1:
    raise BadRequest("give exactly one of \"instances\" (row format) and "
                     "\"inputs\" (columnar format)")
  row = keys[0] == "instances"
  value = doc[keys[0]]
  if row:
    if not isinstance(value, list):
      raise BadRequest("\"instances\" must be a list, one entry per example")
    if not value:
      raise BadRequest("\"instances\" is empty: give at least one example")
    value = [_unwrap(v, signature.input_name) for v in value]
  else:
    value = _unwrap(value, signature.input_name)
  return name, to_array(value, signature), row


def _unwrap(value, input_name: str):
  if isinstance(value, dict):
    if set(value) != {input_name}:
      raise BadRequest(f"this signature has one input, {input_name!r}; got "
                       f"{', '.join(map(repr, sorted(value))) or 'none'}")
    return value[input_name]
  return value


def to_array(value, signature) -> np.ndarray:
  """The input checked against the signature's dtype and shape."""
  spec = signature.input_spec
  want = spec.dtype.name
  try:
    array = np.asarray(value)
  except ValueError as e:
    raise BadRequest(f"{signature.input_name!r} is not a rectangular array "
                     f"(its examples differ in shape): {e}") from e
  if array.dtype.kind not in "iuf" or array.dtype == np.bool_:
    raise BadRequest(f"{signature.input_name!r} must hold numbers only "
                     f"({want}); got {_kind(array)}")
  expected = [d for d in spec.shape[1:]]
  if array.ndim != len(spec.shape) or any(
      e is not None and e != a for e, a in zip(expected, array.shape[1:])):
    raise BadRequest(
        f"{signature.input_name!r} has shape {list(array.shape)}; this "
        f"signature takes [batch, {', '.join(map(str, expected))}]")
  if array.shape[0] == 0:
    raise BadRequest(f"{signature.input_name!r} holds no example")
  if want == "uint8":
    if array.dtype.kind == "f":
      raise BadRequest(
          f"{signature.input_name!r} takes uint8 pixels, integers 0..255; "
          "got floats (send integers, or use signature_name \"features\" "
          "for floats in [0, 1])")
    if array.min() < 0 or array.max() > 255:
      raise BadRequest(f"{signature.input_name!r} takes integers 0..255; "
                       f"got {array.min()}..{array.max()}")
    return array.astype(np.uint8)
  with np.errstate(over="ignore"):
    array = array.astype(np.float32)
  if not np.isfinite(array).all():
    raise BadRequest(f"{signature.input_name!r} holds NaN or infinity (or "
                     "a number beyond float32)")
  return array


def _kind(array: np.ndarray) -> str:
  if array.dtype.kind == "U":
    return "strings"
  if array.dtype == np.bool_:
    return "true/false"
  return "null, strings, objects or a mix"


def _json_value(array: np.ndarray):
  if array.dtype.kind in "OSU":
    return np.vectorize(
        lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else
        str(v), otypes=[object])(array).tolist()
  return array.tolist()


def answer(outputs: dict, row: bool) -> dict:
  """TensorFlow Serving's answer for the outputs of one call: one output is
  given bare, several by name."""
  values = {k: _json_value(v) for k, v in outputs.items()}
  only = next(iter(values.values())) if len(values) == 1 else None
  if not row:
    return {"outputs": values if only is None else only}
  if only is not None:
    return {"predictions": only}
  n = len(next(iter(values.values())))
  return {"predictions": [{k: v[i] for k, v in values.items()}
                          for i in range(n)]}


def _tensor_info(spec, name: str) -> dict:
  return {"dtype": _DTYPES.get(spec.dtype.name, spec.dtype.name.upper()),
          "tensor_shape": {"dim": [{"size": str(-1 if d is None else d),
                                    "name": ""} for d in spec.shape],
                           "unknown_rank": False},
          "name": name}


def status(servable) -> dict:
  """GET /v1/models/NAME: the served version's status."""
  return {"model_version_status": [{
      "version": str(servable.version), "state": "AVAILABLE",
      "status": {"error_code": "OK", "error_message": ""}}]}


def metadata(name: str, servable) -> dict:
  """GET /v1/models/NAME/metadata: the signatures, as TensorFlow Serving
  writes a SignatureDef map."""
  defs = {}
  for key, sig in servable.signatures.items():
    defs[key] = {
        "inputs": {sig.input_name: _tensor_info(
            sig.input_spec, f"{key}_{sig.input_name}:0")},
        "outputs": {k: _tensor_info(v, f"StatefulPartitionedCall:{i}")
                    for i, (k, v) in enumerate(sorted(sig.outputs.items()))},
        "method_name": "tensorflow/serving/predict"}
  return {"model_spec": {"name": name, "signature_name": "",
                         "version": str(servable.version)},
          "metadata": {"signature_def": {"signature_def": defs}}}
