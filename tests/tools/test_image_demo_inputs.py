"""image_demo.py on a folder, a glob and a video: pictures / an annotated video under --out-dir, predictions.json
with one record per detection, --batch-size; the original single-image form is tested in
test_image_demo_and_flops.py."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

import image_demo
from mmcv_custom.cli.errors import UserError
from mmdet_custom.apis.inference import load_detector, predict
from tests.apis.test_inference import CLASSES, shapes_image, write_tiny_model


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    return write_tiny_model(tmp_path_factory.mktemp('tiny_model'))


def test_folder_with_batches_writes_pictures_and_records(tiny, tmp_path):
    config, checkpoint = tiny
    folder = tmp_path / 'images'
    (folder / 'sub').mkdir(parents=True)
    names = ['a.png', 'b.png', 'sub/a.png']
    for seed, name in enumerate(names):
        cv2.imwrite(str(folder / name), shapes_image(seed))
    out = tmp_path / 'out'
    json_file = image_demo.main([str(folder), config, checkpoint, '--out-dir', str(out), '--batch-size', '2',
                                 '--device', 'cpu', '--score-thr', '0.02'])
    for name in names:
        picture = cv2.imread(str(out / name))
        assert picture.shape == (96, 128, 3)
        assert np.abs(picture.astype(int) - shapes_image(names.index(name)).astype(int)).mean() > 0.5  # drawn
    records = json.loads((out / 'predictions.json').read_text())
    assert json_file == str(out / 'predictions.json')
    # the same detections as the Python API gives
    model = load_detector(config, checkpoint, device='cpu')
    expected = predict(model, [str(folder / name) for name in names], score_thr=0.02)
    assert len(records) == sum(len(p) for p in expected) > 0
    for name, prediction in zip(names, expected):
        mine = [r for r in records if r['file'] == str(folder / name)]
        assert len(mine) == len(prediction)
        first, box = mine[0], prediction.boxes[0]
        assert first['bbox'] == pytest.approx([box[0], box[1], box[2] - box[0], box[3] - box[1]], abs=0.01)
        assert first['score'] == pytest.approx(float(prediction.scores[0]), abs=1e-5)
        assert first['category_name'] == CLASSES[prediction.labels[0]]
        assert first['category_id'] == prediction.labels[0] + 1
    assert all(r['score'] >= 0.02 for r in records)


def test_glob_picks_only_matching_images(tiny, tmp_path):
    config, checkpoint = tiny
    cv2.imwrite(str(tmp_path / 'x.png'), shapes_image(0))
    cv2.imwrite(str(tmp_path / 'y.jpg'), shapes_image(1))
    out = tmp_path / 'out'
    image_demo.main([str(tmp_path / '*.png'), config, checkpoint, '--out-dir', str(out), '--device', 'cpu'])
    assert (out / 'x.png').is_file() and not (out / 'y.jpg').exists()
    assert {r['file'] for r in json.loads((out / 'predictions.json').read_text())} <= {str(tmp_path / 'x.png')}


def test_video_gives_an_annotated_video_and_per_frame_records(tiny, tmp_path):
    config, checkpoint = tiny
    video = tmp_path / 'clip.avi'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 5.0, (128, 96))
    for seed in range(4):
        writer.write(shapes_image(seed))
    writer.release()
    out = tmp_path / 'out'
    image_demo.main([str(video), config, checkpoint, '--out-dir', str(out), '--batch-size', '3', '--device', 'cpu',
                     '--score-thr', '0.0'])
    capture = cv2.VideoCapture(str(out / 'clip.mp4'))
    frames = []
    while (frame := capture.read())[0]:
        frames.append(frame[1])
    capture.release()
    assert len(frames) == 4 and all(f.shape == (96, 128, 3) for f in frames)
    records = json.loads((out / 'predictions.json').read_text())
    assert {r['frame'] for r in records} == {0, 1, 2, 3} and {r['file'] for r in records} == {str(video)}


def test_bad_multi_input_arguments_are_one_line_errors(tiny, tmp_path):
    config, checkpoint = tiny
    cv2.imwrite(str(tmp_path / 'x.png'), shapes_image(0))
    with pytest.raises(UserError, match='--out-file names one picture and .* is several images: use --out-dir'):
        image_demo.main([str(tmp_path), config, checkpoint, '--out-file', str(tmp_path / 'o.jpg')])
    with pytest.raises(UserError, match='--batch-size 0: must be a positive integer'):
        image_demo.main([str(tmp_path), config, checkpoint, '--batch-size', '0'])
    (tmp_path / 'broken.mp4').write_bytes(b'not a video')
    with pytest.raises(UserError, match='cannot be opened'):
        image_demo.main([str(tmp_path / 'broken.mp4'), config, checkpoint, '--out-dir', str(tmp_path / 'o'),
                         '--device', 'cpu'])


def test_an_undecodable_image_in_a_folder_is_skipped_and_named(tiny, tmp_path, capsys):
    config, checkpoint = tiny
    folder = tmp_path / 'images'
    folder.mkdir()
    cv2.imwrite(str(folder / 'good.png'), shapes_image(0))
    (folder / 'broken.png').write_bytes(b'not a png')
    out = tmp_path / 'out'
    image_demo.main([str(folder), config, checkpoint, '--out-dir', str(out), '--device', 'cpu', '--score-thr', '0.0'])
    assert (out / 'good.png').is_file() and not (out / 'broken.png').exists()
    assert f'skipped: image file {folder / "broken.png"} cannot be read or decoded' in capsys.readouterr().err
    records = json.loads((out / 'predictions.json').read_text())
    assert records and {r['file'] for r in records} == {str(folder / 'good.png')}
    (folder / 'good.png').write_bytes(b'broken too')
    with pytest.raises(UserError, match='none of the 2 images of .* can be read or decoded'):
        image_demo.main([str(folder), config, checkpoint, '--out-dir', str(out), '--device', 'cpu'])
