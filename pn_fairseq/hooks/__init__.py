"""What importing the plugin installs into a fairseq process, and the errors those hooks report.

- :mod:`.errors`: the one-line error types (``PNUserError`` and its kinds) and the excepthook
  that prints them without a traceback inside ``fairseq-*`` commands;
- :mod:`.launch_check`: refuses ``torchrun`` launches that would train independent copies and
  ``--restore-file`` paths that do not exist;
- :mod:`.help`: appends the plugin's flags to ``fairseq-train --help``;
- :mod:`.numpy_compat`: ``numpy.compat.long``, which fairseq 0.12 still names, under numpy 2;
- :mod:`.import_logging`: keeps fairseq's import-time INFO lines out of processes (the ``pn-*``
  tools) that have not set up logging.

The bottom of the plugin's layering: it may import fairseq, torch, the standard library and
:mod:`pn_common`, nothing else of ``pn_fairseq`` (norms and models raise its errors; the help
text is handed in by ``pn_fairseq/__init__.py``). Safe checkpoint loading and atomic
checkpoint copies, also installed on import, belong to :mod:`pn_fairseq.checkpoints`.
"""
