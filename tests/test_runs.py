"""Run management without training: which checkpoint ``--resume`` takes,
the work-dir lock, atomic writes, random states, and the newcomer's path
(shell tools finding the project's .venv, --amp without a GPU, the demo's
last line)."""
import json
import os
import os.path as osp
import random
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from mmengine.config import Config

from conftest import ROOT, run_tool

from mixer_backbones import runs
from mixer_backbones.engine import set_resume


def fake_checkpoint(path, iteration, epoch=0):
    torch.save({'meta': {'iter': iteration, 'epoch': epoch},
                'state_dict': {'w': torch.full((2,), float(iteration))}},
               str(path))
    return str(path)


def truncated(path, keep=0.5):
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * keep)])
    return str(path)


def resume_config(work_dir):
    return Config(dict(work_dir=str(work_dir), load_from=None))


# -- case 2: resume that never restarts silently ----------------------------
def test_resume_without_last_checkpoint_takes_the_highest_iteration(
        tmp_path):
    # Names, file times and iterations disagree: the iteration decides.
    fake_checkpoint(tmp_path / 'iter_10.pth', 10)
    time.sleep(0.01)
    fake_checkpoint(tmp_path / 'iter_9.pth', 9)
    fake_checkpoint(tmp_path / 'epoch_1.pth', 4, epoch=1)
    # The highest iteration, but cut short: not complete, not taken.
    truncated(fake_checkpoint(tmp_path / 'iter_12.pth', 12))
    cfg = resume_config(tmp_path)
    set_resume(cfg, 'auto')
    assert cfg.resume is True
    assert cfg.load_from == str(tmp_path / 'iter_10.pth')


def test_resume_falls_back_when_last_checkpoint_is_partial(tmp_path):
    fake_checkpoint(tmp_path / 'iter_2.pth', 2)
    last = truncated(fake_checkpoint(tmp_path / 'iter_4.pth', 4))
    (tmp_path / 'last_checkpoint').write_text(last)
    cfg = resume_config(tmp_path)
    set_resume(cfg, 'auto')
    assert cfg.load_from == str(tmp_path / 'iter_2.pth')


def test_resume_with_nothing_to_resume_says_so(tmp_path, monkeypatch):
    logged = []
    monkeypatch.setattr(runs, '_log', lambda text, *a: logged.append(text))
    (tmp_path / 'notes.txt').write_text('no checkpoints here')
    cfg = resume_config(tmp_path)
    set_resume(cfg, 'auto')
    assert not cfg.resume
    assert len(logged) == 1 and '\n' not in logged[0], logged
    assert 'nothing to resume' in logged[0]
    assert 'starting fresh' in logged[0]


def test_copied_work_dir_is_refused_with_the_fix(tmp_path):
    original = tmp_path / 'original'
    copy = tmp_path / 'copy'
    original.mkdir()
    fake_checkpoint(original / 'iter_4.pth', 4)
    (original / 'last_checkpoint').write_text(str(original / 'iter_4.pth'))
    shutil.copytree(original, copy)
    cfg = resume_config(copy)
    with pytest.raises(ValueError) as error:
        set_resume(cfg, 'auto')
    message = str(error.value)
    assert str(original / 'iter_4.pth') in message
    assert 'outside the work dir' in message
    assert f'--resume {copy / "iter_4.pth"}' in message


def test_resume_from_a_partial_file_names_it(tmp_path):
    path = truncated(fake_checkpoint(tmp_path / 'iter_4.pth', 4))
    with pytest.raises(ValueError, match='iter_4.pth'):
        set_resume(resume_config(tmp_path), path)
    with pytest.raises(FileNotFoundError, match='iter_6.pth'):
        set_resume(resume_config(tmp_path), str(tmp_path / 'iter_6.pth'))


# -- case 3: one training per work dir --------------------------------------
HOLD_LOCK = '''
import sys, time
from mixer_backbones.runs import WorkDirLock
WorkDirLock(sys.argv[1]).acquire()
print('locked', flush=True)
time.sleep(120)
'''


def start_lock_holder(work_dir):
    """A process holding ``work_dir``'s lock, once this returns."""
    holder = subprocess.Popen([sys.executable, '-c', HOLD_LOCK,
                               str(work_dir)],
                              cwd=ROOT,
                              stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == 'locked'
    return holder


def test_live_lock_is_refused_naming_the_holder(tmp_path):
    holder = start_lock_holder(tmp_path)
    try:
        with pytest.raises(RuntimeError) as error:
            runs.WorkDirLock(str(tmp_path)).acquire()
        message = str(error.value)
        assert f'pid {holder.pid}' in message
        assert socket.gethostname() in message
        assert 'started' in message
    finally:
        holder.kill()
        holder.wait()
    # Killed: its lock is stale now and taken over.
    lock = runs.WorkDirLock(str(tmp_path)).acquire()
    assert json.load(open(lock.path))['pid'] == os.getpid()
    lock.release()
    assert not osp.exists(lock.path)


def _is_zombie(pid):
    with open(f'/proc/{pid}/stat') as f:
        return f.read().rpartition(')')[2].split()[0] == 'Z'


def test_lock_of_a_killed_unreaped_holder_is_taken_over(tmp_path):
    """A holder killed but not reaped (a zombie, as a killed worker stays in
    a container whose init reaps nothing) no longer holds the lock."""
    holder = start_lock_holder(tmp_path)
    try:
        holder.kill()
        # Not waited for: the pid stays, as a zombie.
        deadline = time.time() + 30
        while not _is_zombie(holder.pid) and time.time() < deadline:
            time.sleep(0.05)
        assert _is_zombie(holder.pid)
        with runs.WorkDirLock(str(tmp_path)) as lock:
            assert json.load(open(lock.path))['pid'] == os.getpid()
    finally:
        holder.wait()


def test_stale_lock_of_a_dead_pid_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    (tmp_path / runs.LOCK_NAME).write_text(
        json.dumps(
            dict(pid=dead.pid, host=socket.gethostname(),
                 started='earlier')))
    with runs.WorkDirLock(str(tmp_path)) as lock:
        assert json.load(open(lock.path))['pid'] == os.getpid()


def test_lock_of_another_host_is_not_taken_over(tmp_path):
    (tmp_path / runs.LOCK_NAME).write_text(
        json.dumps(dict(pid=1, host='elsewhere-node', started='earlier')))
    with pytest.raises(RuntimeError, match='elsewhere-node.*delete'):
        runs.WorkDirLock(str(tmp_path)).acquire()


def test_train_refuses_a_work_dir_in_use(tmp_path):
    pytest.importorskip('mmdet')
    holder = start_lock_holder(tmp_path)
    try:
        result = run_tool(
            'tools/train.py',
            'configs/poolformer/retinanet_poolformer-s12_fpn_1x_coco.py',
            '--work-dir',
            tmp_path,
            # No download: the pretrained file is fetched before the lock.
            '--cfg-options',
            'model.backbone.init_cfg=None',
            expect_failure=True,
            timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert f'in use by another training: pid {holder.pid}' in result.stdout
    assert not any(name.endswith('.pth') for name in os.listdir(tmp_path))


def test_only_rank_zero_locks(monkeypatch):
    monkeypatch.setenv('RANK', '1')
    assert runs.launch_rank('pytorch') == 1
    monkeypatch.delenv('RANK')
    monkeypatch.setenv('SLURM_PROCID', '3')
    assert runs.launch_rank('slurm') == 3
    assert runs.launch_rank('none') == 0


# -- case 9: atomic checkpoints ----------------------------------------------
def test_interrupted_write_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / 'iter_2.pth'
    runs.save_checkpoint_atomic({'meta': {'iter': 2}}, str(path))
    before = path.read_bytes()

    def killed(fd):
        raise KeyboardInterrupt  # the signal arrives mid-save

    monkeypatch.setattr(os, 'fsync', killed)
    with pytest.raises(KeyboardInterrupt):
        runs.save_checkpoint_atomic({'meta': {'iter': 4}, 'x': b'1' * 10**6},
                                    str(path))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ['iter_2.pth']
    assert runs.checkpoint_problem(str(path)) is None


def test_checkpoint_hook_writes_through_the_atomic_backend(tmp_path):
    from mmengine.fileio import get_file_backend
    backend = get_file_backend(
        str(tmp_path), backend_args=dict(backend=runs.ATOMIC_BACKEND))
    assert isinstance(backend, runs.AtomicLocalBackend)
    backend.put(b'abc', str(tmp_path / 'a' / 'f.pth'))
    backend.put_text('x', str(tmp_path / 'last_checkpoint'))
    assert (tmp_path / 'a' / 'f.pth').read_bytes() == b'abc'
    assert oct((tmp_path / 'a' / 'f.pth').stat().st_mode & 0o777) == oct(
        0o644 & ~runs._umask())
    assert sorted(os.listdir(tmp_path)) == ['a', 'last_checkpoint']


# -- case 8: random states ----------------------------------------------------
def test_random_states_round_trip_through_a_weights_only_load(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    states = runs.get_random_states()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    torch.save({'meta': {'random_states': {'states': [states]}}},
               tmp_path / 'c.pth')
    loaded = torch.load(tmp_path / 'c.pth', weights_only=True)
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    runs.set_random_states(loaded['meta']['random_states']['states'][0])
    assert (random.random(), np.random.rand(),
            torch.rand(1).item()) == expected


def test_seeded_pipeline_keeps_its_stream_apart(tmp_path):
    """In the main process the pipeline draws from its own stream, seeded
    from (seed, epoch, rank, worker): the model's stream is untouched and
    the same key gives the same draws."""
    from multiprocessing import RawArray
    shared = RawArray('q', 2)
    shared[0], shared[1] = 5, 0

    def draws(_):
        return (random.random(), np.random.rand(), torch.rand(1).item())

    pipeline = runs.SeededPipeline(draws, shared, rank=0)
    torch.manual_seed(0)
    model_before = torch.get_rng_state()
    first = [pipeline({}) for _ in range(3)]
    assert torch.equal(torch.get_rng_state(), model_before)
    again = runs.SeededPipeline(draws, shared, rank=0)
    assert [again({}) for _ in range(3)] == first
    shared[1] = 1  # the next epoch draws anew
    assert pipeline({}) != first[0]
    other_rank = runs.SeededPipeline(draws, shared, rank=1)
    assert other_rank({}) != pipeline({})


# -- case 10: the newcomer's path ---------------------------------------------
FAKE_PYTHON = '''#!/usr/bin/env bash
echo "venv python: $*"
'''


@pytest.mark.parametrize('script,args', [
    ('dist_train.sh', ['cfg.py', '2']),
    ('dist_test.sh', ['cfg.py', 'ckpt.pth', '2']),
])
def test_shell_tools_use_the_project_venv(tmp_path, script, args):
    """With no environment active and no PYTHON, the tools run the
    project's .venv python (the README's commands after `make demo`)."""
    (tmp_path / 'tools').mkdir()
    shutil.copy(osp.join(ROOT, 'tools', script), tmp_path / 'tools')
    venv_python = tmp_path / '.venv' / 'bin' / 'python'
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text(FAKE_PYTHON)
    venv_python.chmod(0o755)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ('PYTHON', 'VIRTUAL_ENV', 'CONDA_PREFIX')
    }
    result = subprocess.run(['bash', f'tools/{script}', *args],
                            cwd=tmp_path,
                            env=env,
                            capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('venv python: -m torch.distributed.run')


def test_amp_without_gpu_stops_before_building(tmp_path):
    if torch.cuda.is_available():
        pytest.skip('a GPU is visible')
    started = time.time()
    result = run_tool(
        'tools/train.py',
        'configs/poolformer/retinanet_poolformer-s12_fpn_1x_coco.py',
        '--work-dir',
        tmp_path / 'work',
        '--amp',
        expect_failure=True,
        timeout=300)
    assert '--amp: mixed precision training needs a CUDA GPU' in (
        result.stdout)
    assert 'Traceback' not in result.stdout
    assert not osp.exists(tmp_path / 'work')
    assert time.time() - started < 120


def test_unreachable_pretrained_url_stops_before_the_work_dir(tmp_path):
    result = run_tool(
        'tools/train.py',
        'configs/poolformer/retinanet_poolformer-s12_fpn_1x_coco.py',
        '--work-dir',
        tmp_path / 'work',
        '--cfg-options',
        'model.backbone.init_cfg.checkpoint=http://127.0.0.1:9/x.pth',
        expect_failure=True,
        timeout=300)
    assert 'http://127.0.0.1:9/x.pth' in result.stdout
    assert 'Traceback' not in result.stdout
    assert not osp.exists(tmp_path / 'work')


def test_demo_prints_a_command_that_runs(tmp_path, monkeypatch):
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        import demo
    finally:
        sys.path.pop(0)
    venv_python = osp.join(ROOT, '.venv', 'bin', 'python')
    monkeypatch.setattr(sys, 'executable', venv_python)
    monkeypatch.chdir(ROOT)
    command = demo.evaluate_again_command(
        '/w/iter_300.pth', osp.join(ROOT, 'data', 'toy'), {})
    assert command == ('.venv/bin/python tools/test.py configs/demo/'
                       'retinanet_poolformer-s12_fpn_300i_toy-coco.py '
                       '/w/iter_300.pth')
    monkeypatch.chdir(tmp_path)
    command = demo.evaluate_again_command(
        '/w/iter_300.pth', osp.join(ROOT, 'data', 'toy'), {})
    assert command.startswith(f'cd {ROOT} && .venv/bin/python tools/test.py')


def test_readme_says_to_activate_the_venv():
    readme = open(osp.join(ROOT, 'README.md')).read()
    quick_start = readme.split('## Quick start')[1].split('\n## ')[0]
    assert 'source .venv/bin/activate' in quick_start


def test_psutil_is_installed_with_the_package():
    setup = open(osp.join(ROOT, 'setup.py')).read()
    requires = setup.split('install_requires=[')[1].split(']')[0]
    assert "'psutil'" in requires
