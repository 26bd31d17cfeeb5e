"""pn_fairseq: PowerNorm / BatchNorm / Pre-LN transformers as a fairseq --user-dir plugin,
plus pn_dataprep, the data-preparation helpers (python -m pn_dataprep; no torch, no fairseq),
and pn_common, the atomic file writer both use.

fairseq itself is *not* listed in install_requires: the only build that imports on
Python 3.11 (fairseq-fixed 0.12.3.1) declares torchaudio, which does not load with
current torch, and needs torch inside its build environment. `make install` installs
it with --no-build-isolation --no-deps first; its real run-time dependencies are
listed here instead.
"""
from setuptools import find_packages, setup

FAIRSEQ_RUNTIME_DEPS = [
    "cffi",
    "cython",
    "hydra-core==1.3.2",
    "omegaconf==2.3.0",
    "numpy>=1.21.3",
    "regex",
    "tqdm",
    "bitarray",
    "scikit-learn",
    "packaging",
]

setup(
    name="pn_fairseq",
    version="0.1.0",
    description="PowerNorm, BatchNorm and Pre-LN transformers for fairseq (--user-dir plugin)",
    python_requires=">=3.9",
    # Three packages: the plugin (and the console tools' library) and pn_common (what the plugin
    # and data preparation share) at the top level, and the data-prep helpers, whose source sits
    # in data-prep/ next to the scripts that call them.
    packages=find_packages(include=["pn_fairseq", "pn_fairseq.*", "pn_common"])
    + find_packages("data-prep", include=["pn_dataprep", "pn_dataprep.*"]),
    package_dir={"pn_dataprep": "data-prep/pn_dataprep"},
    # The fused norms' C source, compiled on first use (pn_fairseq/norms/kernels/__init__.py).
    package_data={"pn_fairseq.norms.kernels": ["norm_kernels.c"]},
    install_requires=[
        "torch>=2.1",
        "sacrebleu>=2.0",
        "sacremoses>=0.1",
        "subword-nmt>=0.3.8",
        "sentencepiece",
        "matplotlib",
    ]
    + FAIRSEQ_RUNTIME_DEPS,
    extras_require={"test": ["pytest", "pytest-xdist"]},
    entry_points={
        "console_scripts": [
            "pn-average-checkpoints = pn_fairseq.cli.average_checkpoints:main",
            "pn-results = pn_fairseq.cli.results:main",
            "pn-score = pn_fairseq.cli.score:main",
            "pn-plot = pn_fairseq.cli.plot:main",
            "pn-analyze = pn_fairseq.cli.analyze:main",
            "pn-fold = pn_fairseq.cli.fold:main",
        ]
    },
)
