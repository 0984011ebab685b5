"""tools/plot_curves.py: redraws a work dir's curves; a folder without a log is one clear error."""
from __future__ import annotations

import json

import pytest

from mmcv_custom.cli.errors import UserError
from tools.plot_curves import main


def test_redraws_the_newest_log_of_a_work_dir(tmp_path):
    entries = [dict(mode='train', epoch=1, iter=i, lr=1e-3, loss=1.0 / i) for i in (1, 2, 3)]
    (tmp_path / '20260101_000000.log.json').write_text('\n'.join(json.dumps(e) for e in entries) + '\n')
    assert main([str(tmp_path), '--out-dir', str(tmp_path / 'pictures')]) == [str(tmp_path / 'pictures' /
                                                                                  'loss_lr.png')]
    assert (tmp_path / 'pictures' / 'loss_lr.png').stat().st_size > 0


def test_folder_without_a_log(tmp_path):
    with pytest.raises(UserError, match=f'^{tmp_path}: no \\*.log.json training log in this folder$'):
        main([str(tmp_path)])
