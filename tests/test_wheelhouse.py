"""scripts/wheelhouse.sh: what it refuses, each time with one line and before changing anything.
(The offline install itself was run as docs/gpus-and-scale.md "Installing on an offline GPU node" describes: a fresh venv with torch,
then `scripts/wheelhouse.sh install` in a network namespace, then tests/test_norm_registry.py.)"""
import subprocess
import sys

from conftest import REPO

SCRIPT = REPO / "scripts" / "wheelhouse.sh"


def wheelhouse(*args):
    proc = subprocess.run(["bash", str(SCRIPT), *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PY": sys.executable})
    errors = [line for line in proc.stderr.splitlines() if line.startswith("wheelhouse: error: ")]
    return proc.returncode, errors


def fake_wheelhouse(path, python_version):
    path.mkdir()
    (path / "wheelhouse.txt").write_text(f"python_version={python_version}\nplatforms=test\n")
    (path / "fairseq_fixed-0.12.3.1.tar.gz").write_bytes(b"")
    return path


def test_install_needs_a_wheelhouse(tmp_path):
    code, errors = wheelhouse("install", "--wheelhouse", tmp_path, "--venv", tmp_path / "venv")
    assert code == 1 and errors == [f"wheelhouse: error: {tmp_path} is no wheelhouse (no wheelhouse.txt): make one "
                                    "with `make wheelhouse` where pip can reach PyPI"]
    assert not (tmp_path / "venv").exists()


def test_install_needs_a_base_python_with_torch(tmp_path):
    wh = fake_wheelhouse(tmp_path / "wh", "3.11")
    no_torch = subprocess.run(["/usr/bin/python3", "-c", "import torch"], capture_output=True).returncode != 0
    assert no_torch, "this test needs a system python3 without torch"
    code, errors = wheelhouse("install", "--wheelhouse", wh, "--python", "/usr/bin/python3", "--venv", tmp_path / "v")
    assert code == 1 and len(errors) == 1
    assert errors[0].startswith("wheelhouse: error: /usr/bin/python3 cannot import torch: install your CUDA build")
    assert not (tmp_path / "v").exists()


def test_install_refuses_wheels_for_another_python(tmp_path):
    wh = fake_wheelhouse(tmp_path / "wh", "3.12")
    venv = tmp_path / "venv"
    code, errors = wheelhouse("install", "--wheelhouse", wh, "--python", sys.executable, "--venv", venv)
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert code == 1 and len(errors) == 1
    assert errors[0].startswith(f"wheelhouse: error: {wh} holds wheels for Python 3.12, {venv}/bin/python is "
                                f"Python {here}")
    # The venv layered on the base sees the base's torch, and got nothing installed.
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch, sys; print(sys.prefix)"],
                           capture_output=True, text=True)
    assert probe.returncode == 0 and probe.stdout.strip() == str(venv)
    assert not list((venv / "lib").glob("python*/site-packages/fairseq"))


def test_download_checks_its_arguments_first(tmp_path):
    code, errors = wheelhouse("download", "--dest", tmp_path / "wh", "--python-version", "312")
    assert code == 1 and errors == ["wheelhouse: error: --python-version 312: expected X.Y, e.g. 3.12"]
    code, errors = wheelhouse("download", "--dest", tmp_path / "wh", "--platform", "manylinux2014_x86_64")
    assert code == 1 and errors == ["wheelhouse: error: --platform needs --python-version"]
    code, errors = wheelhouse("download", "--have", tmp_path / "missing.txt")
    assert code == 1 and errors == [f"wheelhouse: error: --have {tmp_path / 'missing.txt'}: no such file"]
    assert not (tmp_path / "wh").exists()
