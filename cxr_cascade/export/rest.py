"""TF Serving's REST predict API, reproduced in-process: decode a request body, run a signature.

TF Serving's ``POST /v1/models/<name>:predict`` accepts either the row format
``{"instances": [{"image_bytes": {"b64": "..."}}, ...]}`` (or, for a one-input signature, the bare
values ``{"instances": [{"b64": "..."}]}``) or the columnar format
``{"inputs": {"image_bytes": [{"b64": "..."}]}}``; binary strings travel as ``{"b64": ...}``. The
answer is ``{"predictions": [...]}`` (row format: one dict per instance, or the bare value when the
signature has one output) or ``{"outputs": {...}}``. Used by the tests and by `cxr-cascade predict`
so that the exported models are exercised exactly as a TF Serving client would.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Mapping, Union

import numpy as np
import tensorflow as tf

__all__ = ["decode_request", "encode_response", "predict_rest", "signature_inputs"]


def signature_inputs(signature) -> dict[str, tf.TensorSpec]:
    """{input name: TensorSpec} of a loaded SavedModel signature (a ConcreteFunction)."""
    _, kwargs = signature.structured_input_signature
    return dict(kwargs)


def _decode_value(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        if set(value) != {"b64"}:
            raise ValueError(
                f'{where}: an object value must be {{"b64": ...}}. Received keys: {sorted(value)}'
            )
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, TypeError) as err:
            raise ValueError(f"{where}: invalid base64 ({err})") from None
    if isinstance(value, list):
        return [_decode_value(v, where) for v in value]
    return value


def _to_tensor(values: list, spec: tf.TensorSpec, name: str) -> tf.Tensor:
    try:
        if spec.dtype == tf.string:
            return tf.constant(values, dtype=tf.string)
        return tf.constant(np.asarray(values, dtype=spec.dtype.as_numpy_dtype))
    except (ValueError, TypeError) as err:
        raise ValueError(f"input {name!r}: cannot make a {spec.dtype.name} tensor ({err})") from None


def _parse_body(body: Union[str, bytes, Mapping]) -> Mapping:
    """The request body as a JSON object (parsed from text or bytes, or given as one)."""
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body)
        except json.JSONDecodeError as err:
            raise ValueError(f"request body is not JSON ({err})") from None
    if not isinstance(body, Mapping):
        raise ValueError(f"request body must be a JSON object. Received: {type(body).__name__}")
    return body


def decode_request(body: Union[str, bytes, Mapping], signature) -> dict[str, tf.Tensor]:
    """Turns a TF Serving REST predict body into the signature's keyword tensors.

    Args:
        body: the JSON text or the parsed object.
        signature: a loaded signature (``loaded.signatures["serving_default"]``).

    Returns:
        {input name: tensor}, ready for ``signature(**inputs)``.

    Raises:
        ValueError: malformed JSON, neither/both of "instances" and "inputs", unknown or missing
            input names, bad base64.
    """
    body = _parse_body(body)
    specs = signature_inputs(signature)
    names = sorted(specs)
    if ("instances" in body) == ("inputs" in body):
        raise ValueError('request body must have exactly one of "instances" and "inputs"')
    columns: dict[str, list] = {}
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise ValueError('"instances" must be a non-empty list')
        for i, instance in enumerate(instances):
            where = f"instances[{i}]"
            if isinstance(instance, Mapping) and not (set(instance) == {"b64"}):
                unknown = set(instance) - set(names)
                missing = set(names) - set(instance)
                if unknown or missing:
                    raise ValueError(
                        f"{where}: inputs must be {names}. Received: {sorted(instance)}"
                    )
                for name in names:
                    columns.setdefault(name, []).append(_decode_value(instance[name], where))
            elif len(names) == 1:
                columns.setdefault(names[0], []).append(_decode_value(instance, where))
            else:
                raise ValueError(f"{where}: must be an object with inputs {names}")
    else:
        inputs = body["inputs"]
        if len(names) == 1 and not (isinstance(inputs, Mapping) and set(inputs) == set(names)):
            inputs = {names[0]: inputs}
        if not isinstance(inputs, Mapping) or set(inputs) != set(names):
            raise ValueError(f'"inputs" must name the inputs {names}')
        for name in names:
            value = inputs[name]
            columns[name] = _decode_value(value if isinstance(value, list) else [value], "inputs")
    return {name: _to_tensor(columns[name], specs[name], name) for name in names}


def _jsonable(array: np.ndarray) -> Any:
    """Nested lists; tf.string values become text, as TF Serving writes them."""
    if array.dtype == object or array.dtype.kind == "S":
        decode = np.vectorize(
            lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else v, otypes=[object]
        )
        return decode(array).tolist() if array.size else array.tolist()
    return array.tolist()


def encode_response(outputs: Mapping[str, tf.Tensor], row_format: bool = True) -> dict:
    """TF Serving's JSON answer for the signature `outputs`."""
    arrays = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in outputs.items()}
    if not row_format:
        return {"outputs": {k: _jsonable(a) for k, a in arrays.items()}}
    if len(arrays) == 1:
        return {"predictions": _jsonable(next(iter(arrays.values())))}
    n = len(next(iter(arrays.values())))
    lists = {k: _jsonable(a) for k, a in arrays.items()}
    return {"predictions": [{k: lists[k][i] for k in sorted(lists)} for i in range(n)]}


def predict_rest(
    loaded, body: Union[str, bytes, Mapping], signature_name: str = "serving_default"
) -> dict:
    """Runs a REST predict body through a loaded SavedModel, as TF Serving would.

    Args:
        loaded: ``tf.saved_model.load(...)`` result.
        body: TF Serving REST request (JSON text or object).
        signature_name: the signature to run (TF Serving's ``signature_name`` field in the body
            takes precedence).

    Returns:
        The response object ({"predictions": ...} or {"outputs": ...}).

    Raises:
        ValueError: malformed request; tf.errors.InvalidArgumentError: bad image bytes.
    """
    body = _parse_body(body)
    name = body.get("signature_name", signature_name)
    if name not in loaded.signatures:
        raise ValueError(
            f"unknown signature_name. Allowed: {sorted(loaded.signatures)}. Received: {name!r}"
        )
    signature = loaded.signatures[name]
    inputs = decode_request(body, signature)
    outputs = signature(**inputs)
    return encode_response(outputs, row_format="instances" in body)
