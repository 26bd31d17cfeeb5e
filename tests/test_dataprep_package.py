"""pn_dataprep is a package of its own: light to import, and the scripts find the project's venv."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from conftest_dataprep import DATA_PREP, REPO, VENV_BIN, describe, prep_json

PROJECT_VENV_BIN = REPO / ".venv" / "bin"


def test_import_loads_neither_torch_nor_fairseq(tmp_path):
    # A fresh interpreter, outside the checkout and without PYTHONPATH: the installed package.
    code = ("import json, sys; import pn_dataprep, pn_dataprep.cli, pn_common.atomic; "
            "print(json.dumps({'file': pn_dataprep.__file__, 'modules': sorted(sys.modules)}))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert pathlib.Path(info["file"]).resolve() == (DATA_PREP / "pn_dataprep" / "__init__.py").resolve()
    top_level = {name.split(".")[0] for name in info["modules"]}
    assert not top_level & {"torch", "fairseq", "pn_fairseq"}


def test_plugin_package_holds_no_data_prep_code():
    import pkgutil

    import pn_fairseq

    names = [m.name for m in pkgutil.walk_packages(pn_fairseq.__path__, "pn_fairseq.")]
    assert "pn_fairseq.cli" in names
    assert not [name for name in names if "dataprep" in name]


def test_module_command_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pn_dataprep", "--help"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "synthetic" in proc.stdout and "finalize" in proc.stdout


@pytest.mark.skipif(not (PROJECT_VENV_BIN / "fairseq-preprocess").exists(),
                    reason="no project .venv (make install) in this checkout")
def test_script_finds_project_venv_without_activation(tmp_path):
    """data-prep/README.md's command with the venv neither activated nor on PATH, and a python on PATH
    that cannot run the helpers (as a system python without sacremoses)."""
    impostor = tmp_path / "other-bin"
    impostor.mkdir()
    for name in ("python", "python3"):
        fake = impostor / name
        fake.write_text("#!/bin/sh\necho 'not the project python' >&2\nexit 97\n")
        fake.chmod(0o755)
    venv_dirs = {str(VENV_BIN), str(PROJECT_VENV_BIN)}
    if os.environ.get("VIRTUAL_ENV"):
        venv_dirs.add(str(pathlib.Path(os.environ["VIRTUAL_ENV"]) / "bin"))
    path = [str(impostor)] + [d for d in os.environ.get("PATH", "").split(os.pathsep)
                              if d and os.path.realpath(d) not in {os.path.realpath(v) for v in venv_dirs}]
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHON", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "RAW_DIR", "DEST", "WORK_DIR",
                        "MIRROR", "BPE_MERGES", "CHECK_SIZES", "KEEP_WORK")}
    dest = tmp_path / "data-bin" / "synthetic.de-en"
    env.update(PATH=os.pathsep.join(path), WORKERS="1", DEST=str(dest), WORK_DIR=str(tmp_path / "work"),
               SYNTH_TRAIN="300", SYNTH_VALID="20", SYNTH_TEST="20", BPE_MERGES="100")
    proc = subprocess.run(["bash", str(DATA_PREP / "prepare-synthetic.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, describe(proc)
    assert prep_json(dest)["counts"] == {"train": 300, "valid": 20, "test": 20}
