"""Importing the plugin in a process without logging set up: no fairseq INFO lines on stderr, the
root logger left as it was, warnings still shown."""
import logging
import subprocess
import sys

from conftest import BIN
from pn_fairseq.hooks.import_logging import warnings_only_while_importing


def test_tools_start_with_a_clean_stderr():
    for tool in ("pn-score", "pn-results"):
        proc = subprocess.run([str(BIN / tool), "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr  # was: INFO:fairseq.tasks.text_to_speech:...
    # fairseq is imported after the plugin, which registers with it then (after_import)
    proc = subprocess.run([sys.executable, "-c", "import logging, pn_fairseq, fairseq; r = logging.getLogger(); "
                           "print(logging.getLevelName(r.level), len(r.handlers))"], capture_output=True, text=True)
    assert (proc.stdout.split(), proc.stderr) == (["WARNING", "0"], "")  # fairseq left it at DEBUG, with a handler


def test_warnings_pass_info_does_not_and_basic_config_is_a_no_op(capsys):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers.clear()  # as in a process that never set up logging (pytest installs its own)
    try:
        with warnings_only_while_importing():
            logging.basicConfig(level=logging.DEBUG)  # what fairseq's wav2vec module does on import
            logging.getLogger("lib").info("an info line")
            logging.getLogger("lib").warning("a warning line")
        assert root.handlers == [] and root.level == saved[1]
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    err = capsys.readouterr().err
    assert "a warning line" in err and "an info line" not in err


def test_configured_logging_is_left_alone():
    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    try:
        with warnings_only_while_importing():
            assert root.handlers[-1] is handler
    finally:
        root.removeHandler(handler)
