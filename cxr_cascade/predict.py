"""Diagnoses for image files from the exported SavedModels (what `cxr-cascade predict` runs).

The models are the ones TF Serving would serve (`cxr-cascade export`), called through their
``serving_default`` signature with the files' bytes, so a prediction here is the prediction a TF
Serving client gets. Optional Grad-CAM overlays use the models' ``preprocess`` and ``explain_*``
signatures and `cxr_cascade.explain` (Selvaraju et al. 2017), so they too need only the export.

Research software, not a medical device: a probability here is what a model learned from its
training data, not a diagnosis.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import tensorflow as tf

from cxr_cascade.explain.gradcam import cam_from_gradients, normalise_maps
from cxr_cascade.explain.overlay import save_png, side_by_side
from cxr_cascade.export.archive import INFO_FILE, existing_versions
from cxr_cascade.models.cascade import cascade_decision, check_rule, combine_probabilities, route_indices
from pipelines.decode import upright_bytes
from pipelines.image_policy import ORIENTATIONS, image_bytes_problem, shape_warning

__all__ = ["Failure", "Prediction", "Predictor", "find_model", "format_table"]

PathLike = Union[str, os.PathLike]


@dataclasses.dataclass
class Prediction:
    """One file's result.

    Attributes:
        file: the input path.
        class_name: the predicted class; class_index its index.
        probabilities: {class name: probability} over the model's classes.
        stage1, stage2: the cascade's per-stage probabilities (stage 2 conditional on the refined
            class), or None for a single classifier.
        rule: the cascade rule that made the call (`cxr_cascade.registry.CASCADE_RULES`), or None
            for a single classifier.
        heatmap: path of the Grad-CAM overlay, when requested and written.
        heatmap_error: ``PATH: reason`` when the overlay could not be written (the diagnosis
            stands; the command reports the line and exits 1).
        notes: one-line remarks on the input (EXIF orientation applied, an unusual shape).
    """

    file: str
    class_name: str
    class_index: int
    probabilities: dict
    stage1: Optional[dict] = None
    stage2: Optional[dict] = None
    rule: Optional[str] = None
    heatmap: Optional[str] = None
    heatmap_error: Optional[str] = None
    notes: list = dataclasses.field(default_factory=list)

    def to_json(self) -> dict:
        data = {
            "file": self.file,
            "diagnosis": self.class_name,
            "class_index": self.class_index,
            "probabilities": self.probabilities,
        }
        if self.stage1 is not None:
            data["stage1_probabilities"] = self.stage1
            data["stage2_probabilities"] = self.stage2
        if self.rule is not None:
            data["rule"] = self.rule
        if self.heatmap is not None:
            data["heatmap"] = self.heatmap
        if self.heatmap_error is not None:
            data["heatmap_error"] = self.heatmap_error
        if self.notes:
            data["notes"] = list(self.notes)
        return data


@dataclasses.dataclass
class Failure:
    """A file that could not be diagnosed, and why (one line)."""

    file: str
    reason: str

    def to_json(self) -> dict:
        return {"file": self.file, "error": self.reason}

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


def find_model(models_dir: PathLike, name: str) -> Path:
    """The highest version folder of ``models_dir/name`` (what TF Serving would serve).

    Raises:
        FileNotFoundError: naming the folder, when there is no exported version.
    """
    versions = existing_versions(models_dir, name)
    versions = [v for v in versions if (Path(models_dir) / name / str(v) / "saved_model.pb").is_file()]
    if not versions:
        available = sorted(
            p.name for p in Path(models_dir).glob("*") if p.is_dir() and existing_versions(models_dir, p.name)
        ) if Path(models_dir).is_dir() else []
        hint = f" (exported models there: {', '.join(available)})" if available else (
            "; export one with `cxr-cascade export RUN... --out MODELS_DIR`"
        )
        raise FileNotFoundError(f"no exported model {name!r} in {models_dir}{hint}")
    return Path(models_dir) / name / str(versions[-1])


def _first_line(error: Exception) -> str:
    message = getattr(error, "message", None) or str(error)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    # TensorFlow prefixes "Graph execution error:" and node details; keep the informative line.
    for line in lines:
        if line.startswith(("assertion failed:", "Invalid", "Unknown image", "Input", "jpeg", "PNG")):
            return line.replace("assertion failed: ", "").replace("] [", " ").strip("[]")
    informative = [l for l in lines if not l.startswith(("Graph execution error", "Detected at node", "<stack", "[[", "{{"))]
    return informative[0] if informative else type(error).__name__


class Predictor:
    """Runs an exported model on image files.

    Args:
        models_dir: the export folder (``MODELS_DIR`` of `cxr-cascade export`).
        name: which model: "cascade" (default), "stage1" or "stage2".
        rule: the cascade's decision, one of `cxr_cascade.registry.CASCADE_RULES` ("gate", "soft",
            "pneumonia"); None keeps the export's own (its ``decision_rule``, "gate" by default).
            Another rule is computed from the stage probabilities by
            `cxr_cascade.models.cascade.cascade_decision` (and, to or from "pneumonia", whose
            scores differ, its probabilities by `combine_probabilities`).
    """

    def __init__(self, models_dir: PathLike, name: str = "cascade", rule: Optional[str] = None):
        self.path = find_model(models_dir, name)
        self.name = name
        info_path = self.path / INFO_FILE
        self.info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        self.loaded = tf.saved_model.load(str(self.path))
        self.serve = self.loaded.signatures["serving_default"]
        outputs = set(self.serve.structured_outputs)
        if "probabilities" not in outputs:
            raise ValueError(
                f"{self.path}: not a classifier export (outputs {sorted(outputs)}); use "
                "--model cascade, stage1 or stage2"
            )
        self.class_names = list(self.info.get("class_names") or [])
        self.is_cascade = "stage1_probabilities" in outputs
        if rule is not None:
            check_rule(rule)
        self.rule = rule if self.is_cascade else None
        # A release's chance-level marks, carried into the export's info file.
        self.chance_level = {
            role: part["chance_level"]
            for role, part in (("model", self.info), ("stage1", self.info.get("stage1") or {}),
                               ("stage2", self.info.get("stage2") or {}))
            if isinstance(part, dict) and part.get("chance_level")
        }

    def _names(self, key: Optional[str], width: int) -> list[str]:
        info = self.info.get(key, {}) if key else self.info
        names = list(info.get("class_names") or [])
        return names if len(names) == width else [f"class_{i}" for i in range(width)]

    def predict_bytes(self, data: bytes, file: str = "<bytes>") -> Prediction:
        """Raises tf.errors.InvalidArgumentError for bytes that are not a decodable PNG/JPEG."""
        out = self.serve(image_bytes=tf.constant([data]))
        probs = out["probabilities"].numpy()[0]
        names = self._names(None, len(probs))
        result = Prediction(
            file=file,
            class_name=out["class_name"].numpy()[0].decode("utf-8"),
            class_index=int(out["class_index"].numpy()[0]),
            probabilities={n: float(p) for n, p in zip(names, probs)},
        )
        if self.is_cascade:
            p1 = out["stage1_probabilities"].numpy()[0]
            p2 = out["stage2_probabilities"].numpy()[0]
            result.stage1 = {n: float(p) for n, p in zip(self._names("stage1", len(p1)), p1)}
            result.stage2 = {n: float(p) for n, p in zip(self._names("stage2", len(p2)), p2)}
            exported = self.info.get("decision_rule", "soft")
            result.rule = self.rule or exported
            if self.rule is not None and self.rule != exported:
                route = route_indices(self._names("stage1", len(p1)), self._names("stage2", len(p2)),
                                      self.info.get("refined_class", "viral"), self.rule)
                index = int(cascade_decision(p1[None], p2[None], rule=self.rule, **route)[0])
                result.class_index, result.class_name = index, names[index]
                if "pneumonia" in (self.rule, exported):  # that rule has its own scores
                    probs = combine_probabilities(p1[None], p2[None], rule=self.rule, **route)[0]
                    result.probabilities = {n: float(p) for n, p in zip(names, probs)}
        return result

    def heatmap(self, data: bytes, prediction: Prediction, out_path: Path) -> Path:
        """Writes the Grad-CAM overlay (original | overlay) of the stage that decided.

        For the cascade that is stage 2 when the diagnosis is one of stage 2's classes (the
        paper's Fig. 17), else stage 1 (Fig. 11).
        """
        pre = self.loaded.signatures["preprocess"](image_bytes=tf.constant([data]))
        if self.is_cascade:
            stage2_names = list((self.info.get("stage2") or {}).get("class_names") or [])
            stage = "stage2" if prediction.class_name in stage2_names else "stage1"
            images = pre[f"{stage}_images"]
            explain = self.loaded.signatures[f"explain_{stage}"](**{f"{stage}_images": images})
        else:
            images = pre["images"]
            explain = self.loaded.signatures["explain_images"](images=images)
        cam = cam_from_gradients(explain["cam_features"].numpy(), explain["gradients"].numpy())
        cam = tf.image.resize(cam[..., None], images.shape[1:3], method="bilinear")[..., 0].numpy()
        cam = normalise_maps(cam)[0]
        return save_png(out_path, side_by_side(images.numpy()[0, ..., 0], cam))

    def predict_files(
        self, files: Sequence[PathLike], heatmap_dir: Optional[PathLike] = None
    ) -> Iterable[Union[Prediction, Failure]]:
        """Yields a Prediction or a Failure per file, in order; a bad file never stops the rest."""
        used: set[str] = set()
        for file in files:
            file = os.fspath(file)
            try:
                data = Path(file).read_bytes()
            except FileNotFoundError:
                yield Failure(file, "file not found")
                continue
            except IsADirectoryError:
                yield Failure(file, "is a directory, not an image file")
                continue
            except OSError as err:
                yield Failure(file, f"cannot read file ({err.strerror or err})")
                continue
            if not data:
                yield Failure(file, "empty file (0 bytes)")
                continue
            # The shared decode policy, from the header (the SavedModel applies it too).
            problem = image_bytes_problem(data)
            if problem is not None:
                yield Failure(file, problem)
                continue
            notes = [note for note in (shape_warning(data),) if note]
            try:  # what a viewer shows; the SavedModel reads stored pixels (see upright_bytes)
                data, orientation = upright_bytes(data)
            except tf.errors.InvalidArgumentError:
                orientation = 1  # predict_bytes reports the corrupt file
            if orientation != 1:
                notes.append(f"EXIF orientation {orientation} ({ORIENTATIONS[orientation]} when "
                             "displayed): read upright, as viewers show it")
            try:
                prediction = self.predict_bytes(data, file)
            except tf.errors.InvalidArgumentError as err:
                detail = _first_line(err)
                if "is not a PNG or JPEG file" in detail:
                    reason = "not a PNG or JPEG file (unknown file signature)"
                else:
                    reason = f"corrupt or truncated image ({detail})"
                yield Failure(file, reason)
                continue
            prediction.notes = notes
            if heatmap_dir is not None:
                stem = Path(file).stem
                name, i = f"{stem}_gradcam.png", 1
                while name in used:
                    i += 1
                    name = f"{stem}_{i}_gradcam.png"
                used.add(name)
                try:
                    prediction.heatmap = str(self.heatmap(data, prediction, Path(heatmap_dir) / name))
                except OSError as error:  # the diagnosis stands; the write is reported
                    where = error.filename if error.filename is not None else Path(heatmap_dir) / name
                    prediction.heatmap_error = f"{where}: {error.strerror or error}"
            yield prediction


def format_table(results: Sequence[Union[Prediction, Failure]], class_names: Sequence[str]) -> str:
    """A fixed-width table: file, diagnosis, one probability column per class."""
    rows = [r for r in results if isinstance(r, Prediction)]
    if not rows:
        return ""
    names = list(class_names) or list(rows[0].probabilities)
    width = max(4, *(len(r.file) for r in rows))
    diag = max(9, *(len(r.class_name) for r in rows))
    cols = [max(8, len(n) + 2) for n in names]
    header = f"{'file':<{width}}  {'diagnosis':<{diag}}  " + "  ".join(
        f"{'p(' + n + ')':>{c}}" for n, c in zip(names, cols)
    )
    lines = [header]
    for r in rows:
        lines.append(
            f"{r.file:<{width}}  {r.class_name:<{diag}}  "
            + "  ".join(f"{r.probabilities.get(n, float('nan')):>{c}.4f}" for n, c in zip(names, cols))
        )
    return "\n".join(lines)
