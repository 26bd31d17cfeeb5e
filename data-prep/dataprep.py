#!/usr/bin/env python3
"""Run the pn_fairseq.dataprep helpers of this checkout without importing the plugin.

``import pn_fairseq`` registers the fairseq models, which imports torch and fairseq (about 3 s
and a screenful of log lines per call); the data-prep scripts call the helpers dozens of times.
A bare package object stands in for ``pn_fairseq`` so that only ``pn_fairseq.dataprep`` loads.
"""
import pathlib
import sys
import types

if "pn_fairseq" not in sys.modules:
    package = types.ModuleType("pn_fairseq")
    package.__path__ = [str(pathlib.Path(__file__).resolve().parents[1] / "pn_fairseq")]
    sys.modules["pn_fairseq"] = package

from pn_fairseq.dataprep.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
