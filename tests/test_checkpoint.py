"""Reading checkpoints: never runs code from a file, names the file that
cannot be read, and loads what mmengine's own checkpoints carry."""
import os
import pickle

import numpy as np
import pytest
import torch

from mixer_backbones import PoolFormer
from mixer_backbones.checkpoint import (CheckpointError, extract_state_dict,
                                        load_checkpoint_file)

TINY = dict(depths=[1, 1, 1, 1], widths=[8, 8, 8, 8])
MARKER = 'mixer_backbones_code_ran'


class RunsCode:
    """Unpickling this calls os.system: what a malicious file would do."""

    def __reduce__(self):
        return (os.system, (f'touch {MARKER}', ))


def test_file_that_carries_code_is_refused_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'x': RunsCode()}, path)
    with pytest.raises(CheckpointError,
                       match='refusing to load.*evil.pth.*posix.system'):
        load_checkpoint_file(str(path))
    assert not (tmp_path / MARKER).exists()
    model = PoolFormer(
        TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointError, match='refusing'):
        model.init_weights()
    assert not (tmp_path / MARKER).exists()


def test_missing_file_is_named(tmp_path):
    missing = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_checkpoint_file(missing)


@pytest.mark.parametrize('damage', ['truncated', 'garbage', 'empty'])
def test_damaged_file_is_named(tmp_path, damage):
    path = tmp_path / f'{damage}.pth'
    torch.save(PoolFormer(TINY).state_dict(), path)
    data = path.read_bytes()
    path.write_bytes({
        'truncated': data[:len(data) // 2],
        'garbage': b'not a checkpoint at all' * 10,
        'empty': b''
    }[damage])
    with pytest.raises(CheckpointError,
                       match=rf'{damage}.pth.*\(truncated or corrupt\?\)'):
        load_checkpoint_file(str(path))


def test_random_bytes_are_corrupt_not_code(tmp_path):
    path = tmp_path / 'random.pth'
    path.write_bytes(bytes(
        torch.randint(0, 256, (5000, ), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0)).tolist()))
    with pytest.raises(CheckpointError, match='truncated or corrupt'):
        load_checkpoint_file(str(path))


def test_damaged_safetensors_is_named(tmp_path):
    path = tmp_path / 'broken.safetensors'
    path.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": 1')
    with pytest.raises(CheckpointError, match='broken.safetensors'):
        load_checkpoint_file(str(path))


def test_mmengine_checkpoint_contents_load(tmp_path):
    from mmengine.logging import HistoryBuffer
    buffer = HistoryBuffer()
    buffer.update(1.5)
    buffer.update(2.5)
    path = tmp_path / 'iter_2.pth'
    torch.save(
        dict(
            meta=dict(
                epoch=1, iter=2, seed=np.int64(3), score=np.float64(0.5)),
            state_dict=PoolFormer(TINY).state_dict(),
            message_hub=dict(log_scalars={'train/loss': buffer}),
            history=np.arange(4.)), path)
    loaded = load_checkpoint_file(str(path))
    assert loaded['message_hub']['log_scalars']['train/loss'].mean() == 2.0
    assert loaded['meta']['seed'] == 3
    # torch's own loader (what mmengine's runner calls) accepts it too.
    torch.load(path, weights_only=True)


def test_history_buffer_pickles_without_callables():
    from mmengine.logging import HistoryBuffer
    buffer = HistoryBuffer()
    buffer.update(1.0)
    assert b'getattr' not in pickle.dumps(buffer)
    restored = pickle.loads(pickle.dumps(buffer))
    assert restored.statistics('max') == 1.0


def test_state_dict_is_found_in_wrappers():
    tensors = {'a': torch.zeros(1)}
    for wrapped in (tensors, {
            'state_dict': tensors
    }, {
            'model': tensors
    }, {
            'state_dict': {
                'module.a': torch.zeros(1)
            }
    }):
        assert list(extract_state_dict(wrapped)) == ['a']
    with pytest.raises(CheckpointError, match='no tensors'):
        extract_state_dict({'epoch': 3})
