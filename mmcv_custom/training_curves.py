"""Pictures of a training run from its json log: the loss and learning-rate curve, and the validation-mAP curve.

mmcv's ``TextLoggerHook`` writes ``<work_dir>/<timestamp>.log.json``: a first line of run metadata, then one line
per logged training iteration (``mode: train``, ``iter``, ``epoch``, ``lr``, ``loss``, ``loss_*``) and one per
evaluation (``mode: val``, ``bbox_mAP``, ``segm_mAP``, ... or VOC's ``mAP``). :func:`write_training_curves` turns
it into ``loss_lr.png`` and (when the run evaluated) ``val_map.png`` next to the log. ``TrainingCurvesHook``
(registered in mmcv's HOOKS; ``train.py`` adds it to every run) does so at the end of training and after every
evaluation, so a long run has its pictures while it goes. ``python tools/plot_curves.py WORK_DIR`` does it for an
existing work dir.

Matplotlib is used through its object API on an Agg canvas: no display and no global pyplot state are involved.
"""
from __future__ import annotations

import json
import os
import os.path as osp
from collections.abc import Sequence

from mmcv.runner import HOOKS, Hook, get_dist_info

LOSS_LR_PNG = 'loss_lr.png'
VAL_MAP_PNG = 'val_map.png'


def read_json_log(path: str) -> tuple[list[dict], list[dict]]:
    """(training entries, validation entries) of an mmcv json log; lines that are not JSON objects are skipped
    (a run killed mid-write leaves a partial last line).

    A validation entry's ``iter`` is the number of evaluated images, not the training iteration, so each validation
    entry gets ``train_entries_before``: how many training entries precede it (the evaluation ran after the last of
    them; mmcv writes the training log of the iteration before evaluating)."""
    train, val = [], []
    with open(path) as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(entry, dict):
                continue
            if entry.get('mode') == 'train':
                train.append(entry)
            elif entry.get('mode') == 'val':
                val.append({**entry, 'train_entries_before': len(train)})
    return train, val


def global_iterations(entries: Sequence[dict]) -> list[int]:
    """The iteration count of each training entry over the whole run: iteration-based runs log it directly;
    epoch-based runs restart ``iter`` every epoch, so the previous epochs' iterations are added."""
    last_iter_of_epoch: dict[int, int] = {}
    for entry in entries:
        epoch = int(entry.get('epoch', 1))
        last_iter_of_epoch[epoch] = max(last_iter_of_epoch.get(epoch, 0), int(entry['iter']))
    offsets, total = {}, 0
    for epoch in sorted(last_iter_of_epoch):
        offsets[epoch] = total
        total += last_iter_of_epoch[epoch]
    return [offsets[int(entry.get('epoch', 1))] + int(entry['iter']) for entry in entries]


def map_keys(val_entries: Sequence[dict]) -> list[str]:
    """The mAP metrics of the validation entries: VOC's ``mAP`` and COCO's ``<kind>_mAP`` (not AP50 / AP75 / APs...)."""
    keys = []
    for entry in val_entries:
        for key in entry:
            if (key == 'mAP' or key.endswith('_mAP')) and key not in keys:
                keys.append(key)
    return keys


def _figure(rows: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(8, 3.2 * rows), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def plot_loss_lr(train_entries: Sequence[dict], out_file: str, title: str = '') -> str:
    """Total loss (and each ``loss_*`` term, thin) over iterations above the learning rate; returns ``out_file``."""
    if not train_entries:
        raise ValueError('no training entries to plot')
    steps = global_iterations(train_entries)
    figure = _figure(2)
    loss_axes, lr_axes = figure.subplots(2, 1, sharex=True)
    terms = sorted({key for entry in train_entries for key in entry if key.startswith('loss_')})
    for term in terms:
        points = [(s, e[term]) for s, e in zip(steps, train_entries) if term in e]
        loss_axes.plot([p[0] for p in points], [p[1] for p in points], linewidth=0.8, alpha=0.6, label=term)
    totals = [(s, e['loss']) for s, e in zip(steps, train_entries) if 'loss' in e]
    if totals:
        loss_axes.plot([p[0] for p in totals], [p[1] for p in totals], color='black', linewidth=1.8, label='loss')
    loss_axes.set_ylabel('loss')
    loss_axes.set_title(title or 'training loss and learning rate')
    loss_axes.grid(alpha=0.3)
    loss_axes.legend(fontsize=7, ncol=2)
    rates = [(s, e['lr']) for s, e in zip(steps, train_entries) if 'lr' in e]
    lr_axes.plot([p[0] for p in rates], [p[1] for p in rates], color='tab:orange')
    lr_axes.set_ylabel('learning rate')
    lr_axes.set_xlabel('iteration')
    lr_axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out_file)
    return out_file


def val_steps(train_entries: Sequence[dict], val_entries: Sequence[dict]) -> list[int]:
    """The training iteration at which each validation entry was evaluated (see :func:`read_json_log`)."""
    steps = global_iterations(train_entries)
    return [steps[e['train_entries_before'] - 1] if e.get('train_entries_before') else 0 for e in val_entries]


def plot_val_map(val_entries: Sequence[dict], out_file: str, steps: Sequence[int] | None = None,
                 title: str = '') -> str:
    """Each mAP metric of the validation entries over the training iterations ``steps`` (one per entry), or over
    epochs when ``steps`` is None; returns ``out_file``."""
    keys = map_keys(val_entries)
    if not keys:
        raise ValueError('no mAP in the validation entries')
    xs = [e.get('epoch', 0) for e in val_entries] if steps is None else list(steps)
    figure = _figure(1)
    axes = figure.subplots(1, 1)
    for key in keys:
        points = [(x, e[key]) for x, e in zip(xs, val_entries) if key in e]
        axes.plot([p[0] for p in points], [p[1] for p in points], marker='o', label=key)
        if points:
            axes.annotate(f'{points[-1][1]:.3f}', points[-1], textcoords='offset points', xytext=(4, 4), fontsize=8)
    axes.set_xlabel('epoch' if steps is None else 'iteration')
    axes.set_ylabel('mAP')
    axes.set_ylim(0, 1)
    axes.set_title(title or 'validation mAP')
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out_file)
    return out_file


def write_training_curves(json_log: str, out_dir: str | None = None) -> list[str]:
    """``loss_lr.png`` and, when the run evaluated, ``val_map.png`` for ``json_log`` (in ``out_dir``, default the
    log's folder). Returns the files written (none when the log has no training entry yet)."""
    out_dir = out_dir or osp.dirname(osp.abspath(json_log))
    os.makedirs(out_dir, exist_ok=True)
    train, val = read_json_log(json_log)
    written = []
    name = osp.basename(json_log)
    if train:
        written.append(plot_loss_lr(train, osp.join(out_dir, LOSS_LR_PNG), title=f'{name}: loss and lr'))
    if map_keys(val):
        by_epoch = len({int(e.get('epoch', 1)) for e in train}) > 1   # epoch-based runs evaluate per epoch
        steps = None if by_epoch else val_steps(train, val)
        written.append(plot_val_map(val, osp.join(out_dir, VAL_MAP_PNG), steps, title=f'{name}: validation mAP'))
    return written


@HOOKS.register_module()
class TrainingCurvesHook(Hook):
    """Write ``loss_lr.png`` / ``val_map.png`` into the work dir after every evaluation and at the end of the run
    (rank 0 only). Register it with ``priority='VERY_LOW'`` (as ``train.py`` does), so that it runs after the logger
    hooks have written the json log."""

    def _json_log(self, runner) -> str | None:
        path = osp.join(runner.work_dir, f'{runner.timestamp}.log.json')
        return path if osp.isfile(path) else None

    def _write(self, runner) -> None:
        rank, _ = get_dist_info()
        json_log = self._json_log(runner)
        if rank != 0 or json_log is None:
            return
        try:
            written = write_training_curves(json_log)
        except (OSError, ValueError) as error:   # a picture must never stop a training run
            runner.logger.warning(f'training curves not written: {error}')
            return
        if written:
            runner.logger.info(f'training curves: {", ".join(written)}')

    def after_train_epoch(self, runner) -> None:
        if self._has_new_val_entry(runner):
            self._write(runner)

    def after_train_iter(self, runner) -> None:
        if self._has_new_val_entry(runner):
            self._write(runner)

    def after_run(self, runner) -> None:
        self._write(runner)

    def _has_new_val_entry(self, runner) -> bool:
        """Whether the json log gained a validation entry since the last call (reads only the new bytes)."""
        json_log = self._json_log(runner)
        if json_log is None:
            return False
        with open(json_log, 'rb') as f:
            f.seek(getattr(self, '_read_up_to', 0))
            new_text = f.read()
            self._read_up_to = f.tell()
        return b'"mode": "val"' in new_text
