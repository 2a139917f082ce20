"""`cxr-cascade --help` builds every command's parser without TensorFlow, Keras, OpenCV,
matplotlib or JAX: each `cxr_cascade.commands` module registers its parser at import, so its top
level imports only light modules (the heavy ones are imported where the command runs).

The probe runs in a fresh interpreter (this test process has long imported TensorFlow) and
reports which heavy libraries are in `sys.modules` after its code ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cxr_cascade import registry

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("tensorflow", "keras", "cv2", "matplotlib", "jax")


def loaded_after(code: str) -> dict:
    """``{"heavy": [...], "commands": [...]}``: the heavy libraries, and the command modules,
    imported by a fresh interpreter after running `code`."""
    probe = (
        "import json, sys\n"
        f"{code}\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "commands = sorted(m for m in sys.modules if m.startswith('cxr_cascade.commands.'))\n"
        "print(json.dumps({'heavy': heavy, 'commands': commands}))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_building_the_parser_loads_no_heavy_library():
    found = loaded_after("import cxr_cascade.cli\ncxr_cascade.cli.build_parser()")
    assert found["heavy"] == []
    # every command registered its own parser (none fell back to "unavailable here")
    from cxr_cascade.cli import COMMANDS
    from cxr_cascade.commands.data import DATA_COMMANDS

    expected = {f"cxr_cascade.commands.{module}" for _, module in COMMANDS + DATA_COMMANDS}
    assert expected <= set(found["commands"])


def test_the_probe_sees_a_heavy_import():
    """Negative control: the same probe reports TensorFlow once a module that loads it is imported."""
    found = loaded_after("import cxr_cascade.cli\ncxr_cascade.cli.build_parser()\nimport pipelines.decode")
    assert "tensorflow" in found["heavy"]


def test_the_cli_error_is_the_commands_error():
    from cxr_cascade import cli, commands

    assert cli.CLIError is commands.CLIError
    assert cli.register_command is commands.register_command


def test_ood_sets_are_the_registry():
    from cxr_cascade.evaluation import ood

    assert ood.OOD_SETS is registry.OOD_SETS


def test_phantom_names_are_the_registry():
    """The CLI lists the phantoms' layouts and shortcuts from the registry (the phantom modules
    need OpenCV); each one listed is one the generator implements: a layout folder per format, and
    each shortcut changes the rendered film."""
    import numpy as np

    from cxr_cascade import phantoms

    assert set(phantoms.LAYOUT_DIRS) == set(registry.PHANTOM_FORMATS)
    plain = phantoms.render_phantom("normal", 64, np.random.default_rng(0)).image
    for shortcut in registry.PHANTOM_SHORTCUTS:
        marked = phantoms.render_phantom("normal", 64, np.random.default_rng(0), shortcut=shortcut).image
        assert not np.array_equal(plain, marked), shortcut
