"""The command line of every entry point, in one home: the error type and its one-line reporter, and the checks of
every input the entry points take.

* ``errors``: :class:`~mmcv_custom.cli.errors.UserError`, :func:`~mmcv_custom.cli.errors.run_cli`, ``--debug``,
  and the argument checks the shell launchers run before torchrun (``python mmcv_custom/cli/errors.py``). Standard
  library only: any module on any floor (the stack check included) may raise a ``UserError``.
* ``checks``: configs, checkpoints, evaluation arguments, work dirs (mmcv and mmdet, never the plugin: the plugin's
  registered names come from its import, which every config asks for with ``custom_imports``).
* ``dataset_checks``: a config's dataset files and COCO-format annotation records.

Nothing is imported here, so that importing ``errors`` stays light.
"""
