"""``train.py --amp``: a bf16 run of the tiny demo config trains with finite losses (the log says bf16 autocast) and
writes float32 checkpoints; ``--amp fp16`` without a GPU is one line and exit status 1."""
from __future__ import annotations

import pytest
import torch


def test_train_with_amp_bf16(shapes_data, helpers, tmp_path):
    work_dir = tmp_path / 'bf16'
    # a subprocess: in-process, a logger another test set up would keep this run's log out of its work dir
    helpers.run_script(['train.py', helpers.demo_config, '--work-dir', str(work_dir), '--amp', 'bf16',
                        '--no-validate', '--cfg-options', *helpers.tiny_cfg_options(shapes_data, max_iters=2)])
    entries = helpers.read_train_log(work_dir)
    assert [e['iter'] for e in entries] == [1, 2]
    assert all(torch.isfinite(torch.tensor(e['loss'])) for e in entries)
    assert 'mixed precision: bf16 autocast on cpu' in next(work_dir.glob('*.log')).read_text()
    state = torch.load(work_dir / 'iter_2.pth', weights_only=False)['state_dict']
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}


def test_amp_fp16_needs_a_gpu(shapes_data, helpers, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip('a GPU is present: fp16 is allowed')
    status = helpers.run_in_process('train', [helpers.demo_config, '--work-dir', str(tmp_path), '--amp', 'fp16',
                                              '--cfg-options', *helpers.tiny_cfg_options(shapes_data)])
    assert status == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ('train.py: error: --amp fp16 (amp.dtype=fp16) needs a CUDA device: mmdet scales fp16 losses '
                       'with torch.cuda.amp; on the CPU use --amp bf16')


@pytest.mark.parametrize('entry_point', ['test', 'image_demo'])
def test_precision_bf16_runs_the_detector_under_autocast(entry_point, trained_run, shapes_data, helpers, tmp_path,
                                                         monkeypatch):
    """``--precision bf16`` of test.py and image_demo.py: the detector's forward runs under CPU bf16 autocast (its
    backbone returns bfloat16) and the run completes with float32 detections."""
    import mmdet_custom.apis.amp as amp
    dtypes = []
    autocast_forward = amp.autocast_forward

    def observed(model, device_type, dtype):
        model.backbone.register_forward_hook(lambda module, args, out: dtypes.append(out[-1].dtype))
        return autocast_forward(model, device_type, dtype)

    monkeypatch.setattr(amp, 'autocast_forward', observed)
    checkpoint = str(trained_run / 'latest.pth')
    if entry_point == 'test':
        argv = [helpers.demo_config, checkpoint, '--eval', 'bbox', '--work-dir', str(tmp_path), '--precision', 'bf16',
                '--cfg-options', *helpers.tiny_cfg_options(shapes_data)]
    else:
        argv = [str(shapes_data / 'val' / 'val_00001.jpg'), helpers.demo_config, checkpoint, '--device', 'cpu',
                '--out-dir', str(tmp_path), '--precision', 'bf16', '--allow-partial-checkpoint']  # tiny depths
    assert helpers.run_in_process(entry_point, argv) == 0
    assert dtypes and set(dtypes) == {torch.bfloat16}
    if entry_point == 'test':
        assert 'bbox_mAP' in helpers.read_metric(tmp_path)
    else:
        assert (tmp_path / 'predictions.json').is_file()


def test_compile_flag_compiles_the_backbone(trained_run, shapes_data, helpers, tmp_path, monkeypatch):
    """``test.py --compile``: the backbone goes through ``nn.Module.compile`` (here on aot_eager, which needs no C++
    build) and the run completes with its metrics."""
    compiled = []
    module_compile = torch.nn.Module.compile

    def observed(module, *args, **kwargs):
        compiled.append(type(module).__name__)
        return module_compile(module, backend='aot_eager')

    monkeypatch.setattr(torch.nn.Module, 'compile', observed)
    argv = [helpers.demo_config, str(trained_run / 'latest.pth'), '--eval', 'bbox', '--work-dir', str(tmp_path),
            '--compile', '--cfg-options', *helpers.tiny_cfg_options(shapes_data)]
    assert helpers.run_in_process('test', argv) == 0
    assert compiled == ['InternImage']
    assert 'bbox_mAP' in helpers.read_metric(tmp_path)
