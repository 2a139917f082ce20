"""Synthetic chest radiograph phantoms in the three real data layouts.

The phantoms exist so that every part of the project (readers, splits, tf.data pipelines, U-Net,
classifiers, Grad-CAM, shortcut audits) can be built and tested without patient data. They are
drawn, not simulated: grey-level cartoons of a frontal chest film (body outline, lung fields, ribs,
clavicles, spine, mediastinum and trachea, heart, diaphragm domes, vessels, noise, burned-in text)
on which each class gets a lesion pattern that mimics the textbook description of the disease:

* ``normal``: clear lungs.
* ``bacterial``: dense lobar consolidation, usually in one lower zone (side fixed per patient).
* ``viral``: diffuse bilateral reticular / interstitial streaks, perihilar predominance.
* ``covid19``: bilateral, peripheral, lower-zone ground-glass haze.

**Phantoms are synthetic and mean nothing medically.** A model that reads them well shows that the
machinery works, never that it diagnoses anything.

Every image comes with its ground truth: a lung mask (255 = lung, including the lung behind the
heart down to the diaphragm, as the V7 masks draw it) and a lesion mask (255 = lesion, always inside
the lung mask, empty for ``normal``). An optional *planted shortcut* (a bright square or a token
word burned in outside the lungs whose position or text follows the label with a chosen strength)
lets later checks prove that they catch shortcut learning (DeGrave et al., Nat. Mach. Intell. 2021).

Layouts written by :func:`write_phantom_dataset` under ``out``, imitating the publishers' layouts
described in ``shared/data/README.md``:

* ``chest_xray/{train,test}/{NORMAL,PNEUMONIA}/...jpeg`` (Kermany et al. 2018 names: ``IM-0001-0001``,
  ``NORMAL2-IM-0012-0001``, ``person12_bacteria_45``, ``person12_virus_46``; RGB JPEG with R=G=B).
* ``covid-chestxray-dataset/metadata.csv`` + ``images/`` (ieee8023 / Cohen et al.: the published
  29-column header, lateral and CT rows, a missing file; JPEG and PNG, RGB / L / RGBA).
* ``lung-masks/images/<stem>.jpeg`` + ``lung-masks/masks/<stem>_mask.png`` (V7 Labs / Kaggle layout,
  made of the Kermany train images and the ieee8023 frontal images, as the real set is).
* ``ground_truth/`` (lung and lesion masks of every image), ``phantoms.csv`` (one row per image file,
  readable as a project manifest: path,label,patient_id,source,split,mask_path plus the ground
  truth) and ``README.txt``.

Determinism: each patient and each image draws from its own ``numpy.random.Generator`` seeded by
``SeedSequence(seed, spawn_key=(layout, patient[, image]))``, so the same seed gives byte-identical
files and a larger ``n`` leaves the earlier images unchanged.

Modules: `draw` (one image: `render_phantom`, `render_lateral`, `sample_anatomy`), `layouts`
(which files, names, patients and splits), `write` (`write_phantom_dataset`, atomic files).
"""

from __future__ import annotations

from cxr_cascade.phantoms.draw import (
    _MARKER_SLOTS_X,
    _SHORTCUT_TOKENS,
    LABELS,
    SHORTCUTS,
    Anatomy,
    Phantom,
    render_lateral,
    render_phantom,
    sample_anatomy,
)
from cxr_cascade.phantoms.layouts import FORMATS, GENERATOR_VERSION, IEEE8023_COLUMNS, LAYOUT_DIRS
from cxr_cascade.phantoms.write import (
    GROUND_TRUTH_DIR,
    README_FIRST_LINE,
    README_NAME,
    TABLE_COLUMNS,
    TABLE_NAME,
    PhantomSummary,
    readme_text,
    write_phantom_dataset,
)

__all__ = [
    "FORMATS",
    "GENERATOR_VERSION",
    "GROUND_TRUTH_DIR",
    "IEEE8023_COLUMNS",
    "LABELS",
    "LAYOUT_DIRS",
    "README_FIRST_LINE",
    "README_NAME",
    "SHORTCUTS",
    "TABLE_COLUMNS",
    "TABLE_NAME",
    "Anatomy",
    "Phantom",
    "PhantomSummary",
    "readme_text",
    "render_lateral",
    "render_phantom",
    "sample_anatomy",
    "write_phantom_dataset",
]
