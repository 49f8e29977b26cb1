"""Two CPU processes through tools/dist_train.sh and tools/dist_test.sh
(torchrun, gloo): the distributed path runs on a machine without GPUs."""
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest

from conftest import ROOT, metric_values, run_tool, toy_config

pytestmark = pytest.mark.e2e

pytest.importorskip('mmdet')


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return str(sock.getsockname()[1])


RETINANET = 'configs/poolformer/retinanet_poolformer-s12_fpn_1x_coco.py'


def dist_train(config, work_dir, *options, expect_failure=False):
    """``tools/dist_train.sh CONFIG 2`` on CPU; returns (result, env)."""
    env = dict(PYTHON=sys.executable, PORT=free_port(), OMP_NUM_THREADS='1')
    result = run_tool(
        'tools/dist_train.sh',
        config,
        '2',
        '--work-dir',
        work_dir,
        *options,
        env=env,
        interpreter=['bash'],
        expect_failure=expect_failure)
    return result, env


def test_two_process_train_and_test_on_cpu(toy_coco, tmp_path):
    config = toy_config(RETINANET, toy_coco, tmp_path)
    work_dir = str(tmp_path / 'work')
    result, env = dist_train(config, work_dir)
    assert 'Distributed training: True' in result.stdout
    assert 'world_size: 2' in result.stdout or 'GPU number: 2' in (
        result.stdout)
    checkpoint = osp.join(work_dir, 'iter_2.pth')
    assert osp.exists(checkpoint)
    env['PORT'] = free_port()
    result = run_tool(
        'tools/dist_test.sh',
        config,
        checkpoint,
        '2',
        '--work-dir',
        work_dir,
        env=env,
        interpreter=['bash'])
    assert metric_values(result.stdout, r'coco/bbox_mAP:')


END_PROCESS = '''
import atexit
import sys
import torch
import torch.distributed as dist
from mixer_backbones.engine import run_tool_main, shutdown_distributed
atexit.register(print, 'exit handlers ran')


def main():
    dist.init_process_group('gloo', init_method='tcp://127.0.0.1:{port}',
                            rank=0, world_size=1)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
    objects = [None]
    dist.all_gather_object(objects, {{'metric': 1.0}})
    shutdown_distributed()
    assert not dist.is_initialized()
    print('run finished', flush=False)
    if {status}:
        sys.exit({status})


run_tool_main(main)
print('not reached')
'''


@pytest.mark.parametrize('status', [0, 75])
def test_a_distributed_tool_ends_without_interpreter_teardown(status):
    """After a DDP model the gloo worker threads outlive the group; the
    tools leave such a process with the exit handlers run and the output
    flushed, without interpreter teardown, with the run's status (75: a
    pre-empted training, which slurm_train.sh requeues)."""
    script = END_PROCESS.format(port=free_port(), status=status)
    result = run_tool('-c', script, expect_failure=status != 0)
    assert result.returncode == status
    assert 'run finished' in result.stdout
    assert 'exit handlers ran' in result.stdout
    assert 'not reached' not in result.stdout


def test_end_distributed_process_outside_a_run_returns():
    from mixer_backbones.engine import end_distributed_process
    end_distributed_process()


def test_worker_error_reaches_the_launcher_summary(toy_coco, tmp_path):
    config = toy_config(RETINANET, toy_coco, tmp_path)
    result, _ = dist_train(
        config,
        str(tmp_path / 'work'),
        '--cfg-options',
        'model.backbone.arch=s13',
        expect_failure=True)
    # torchrun's own failure summary carries the worker's exception.
    summary = result.stdout.rpartition('Root Cause')[2]
    assert "ValueError: PoolFormer: unknown arch 's13'" in summary


def test_two_nodes_with_sync_bn_on_cpu(toy_ade20k, tmp_path):
    """Two one-process "nodes" (NNODES=2, NODE_RANK 0 and 1) meeting at
    MASTER_ADDR: the multi-node path, here with mmseg's SyncBN config,
    whose SyncBN layers become BN without GPUs."""
    config = toy_config(
        'configs/poolformer/fpn_poolformer-s12_8xb4-40k_ade20k-512x512.py',
        toy_ade20k, tmp_path)
    work_dir = str(tmp_path / 'work')
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        PORT=free_port(),
        OMP_NUM_THREADS='1',
        NNODES='2',
        MASTER_ADDR='127.0.0.1')
    nodes = [
        subprocess.Popen([
            'bash', 'tools/dist_train.sh', config, '1', '--work-dir', work_dir
        ],
                         cwd=ROOT,
                         env=dict(env, NODE_RANK=str(rank)),
                         stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT,
                         text=True) for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=900)[0] for node in nodes]
    for node, output in zip(nodes, outputs):
        assert node.returncode == 0, output[-4000:]
    assert 'SyncBN layers become BN' in outputs[0]
    assert 'world_size: 2' in outputs[0] or 'GPU number: 2' in outputs[0]
    assert osp.exists(osp.join(work_dir, 'iter_2.pth'))


FAKE_SRUN = '''#!{python}
"""srun for tests: runs the command once per task with Slurm's task
variables, in parallel, and fails when a task fails."""
import os
import signal
import subprocess
import sys

args, tasks, i = sys.argv[1:], 1, 0
with open(os.environ['SRUN_RECORD'], 'w') as record:
    record.write(' '.join(args))
with open(os.environ['SRUN_RECORD'] + '.pid', 'w') as record:
    record.write(str(os.getpid()))
while args[i].startswith('-'):
    if args[i].startswith('--ntasks='):
        tasks = int(args[i].split('=')[1])
    i += 2 if args[i] in ('-p', '-n', '-N') else 1
procs = [
    subprocess.Popen(
        args[i:],
        env=dict(
            os.environ,
            SLURM_PROCID=str(rank),
            SLURM_LOCALID=str(rank),
            SLURM_NTASKS=str(tasks),
            SLURM_NODELIST='node[1-2]')) for rank in range(tasks)
]


def forward(signum, frame):
    """As Slurm does, signal every task."""
    for p in procs:
        p.send_signal(signum)


signal.signal(signal.SIGUSR1, forward)
signal.signal(signal.SIGTERM, forward)
sys.exit(max(p.wait() for p in procs))
'''
FAKE_SCONTROL = '''#!/usr/bin/env bash
[ "$1 $2 $3" = "show hostnames node[1-2]" ] && printf '127.0.0.1\\nnode2\\n'
[ "$1" = requeue ] && echo "$*" >> "$SCONTROL_RECORD"
exit 0
'''


def run_script(env, *args):
    """``bash args`` from the repository root with exactly ``env``."""
    result = subprocess.run(['bash', *args],
                            cwd=ROOT,
                            env=env,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT,
                            text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-4000:]
    return result


def slurm_env(tmp_path):
    """The environment of a job step: the srun and scontrol stand-ins
    first on PATH, two CPU tasks."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name, text in (('srun', FAKE_SRUN.format(python=sys.executable)),
                       ('scontrol', FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ('MASTER_ADDR', 'SLURM_JOB_ID', 'SLURM_RESTART_COUNT')
    }
    env.update(
        PATH=f'{bin_dir}:{os.environ["PATH"]}',
        PYTHON=sys.executable,
        MASTER_PORT=free_port(),
        OMP_NUM_THREADS='1',
        GPUS='2',
        GRES='',
        SRUN_RECORD=str(tmp_path / 'srun_args'),
        SCONTROL_RECORD=str(tmp_path / 'scontrol_calls'))
    return env


def test_slurm_scripts_on_cpu(toy_coco, tmp_path):
    """tools/slurm_train.sh and slurm_test.sh through an srun stand-in
    that starts the tasks locally: the slurm launcher on CPUs (gloo), the
    master taken from scontrol as on a cluster."""
    config = toy_config(RETINANET, toy_coco, tmp_path)
    work_dir = str(tmp_path / 'work')
    env = slurm_env(tmp_path)
    result = run_script(env, 'tools/slurm_train.sh', 'cpu', 'toy', config,
                        '--work-dir', work_dir)
    srun_args = (tmp_path / 'srun_args').read_text()
    assert '--ntasks=2' in srun_args and '--gres' not in srun_args
    assert 'world_size: 2' in result.stdout or 'GPU number: 2' in (
        result.stdout)
    checkpoint = osp.join(work_dir, 'iter_2.pth')
    assert osp.exists(checkpoint)
    env['MASTER_PORT'] = free_port()
    result = run_script(env, 'tools/slurm_test.sh', 'cpu', 'toy', config,
                        checkpoint, '--work-dir', work_dir)
    assert metric_values(result.stdout, r'coco/bbox_mAP:')


def test_slurm_preemption_requeues_and_resumes(toy_coco, tmp_path):
    """SIGUSR1 (what --signal=USR1@N sends before the time limit) reaches
    both tasks: they finish the iteration, write a complete checkpoint and
    exit with 75; slurm_train.sh requeues the job, and the requeued job
    (the same command, SLURM_RESTART_COUNT=1) resumes by itself and ends
    with the weights of an uninterrupted two-task run."""
    import signal
    import time

    import torch
    iters = 6
    config = toy_config(RETINANET, toy_coco, tmp_path, iters=iters)
    env = slurm_env(tmp_path)
    straight = str(tmp_path / 'straight')
    run_script(env, 'tools/slurm_train.sh', 'cpu', 'toy', config,
               '--work-dir', straight)

    work_dir = str(tmp_path / 'work')
    env.update(SLURM_JOB_ID='4242', MASTER_PORT=free_port())
    log = tmp_path / 'job.log'
    with open(log, 'w') as out:
        job = subprocess.Popen([
            'bash', 'tools/slurm_train.sh', 'cpu', 'toy', config,
            '--work-dir', work_dir
        ],
                               cwd=ROOT,
                               env=env,
                               stdout=out,
                               stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 600
            while f'[2/{iters}]' not in log.read_text():
                assert job.poll() is None, log.read_text()[-4000:]
                assert time.time() < deadline
                time.sleep(0.2)
            srun_pid = int((tmp_path / 'srun_args.pid').read_text())
            os.kill(srun_pid, signal.SIGUSR1)
            assert job.wait(timeout=600) == 75, log.read_text()[-4000:]
        finally:
            if job.poll() is None:
                job.kill()
    output = log.read_text()
    assert 'SIGUSR1 received' in output
    assert (tmp_path / 'scontrol_calls').read_text().split() == [
        'requeue', '4242'
    ]
    assert '--signal=USR1@300' in (tmp_path / 'srun_args').read_text()
    last = open(osp.join(work_dir, 'last_checkpoint')).read().strip()
    stopped_at = torch.load(last, weights_only=True)['meta']['iter']
    assert 2 <= stopped_at < iters
    assert osp.basename(last) == f'iter_{stopped_at}.pth'
    assert not [n for n in os.listdir(work_dir) if '.tmp' in n]

    env.update(SLURM_RESTART_COUNT='1', MASTER_PORT=free_port())
    result = run_script(env, 'tools/slurm_train.sh', 'cpu', 'toy', config,
                        '--work-dir', work_dir)
    assert 'requeued job (restart 1): resuming' in result.stdout
    assert f'resumed epoch: 0, iter: {stopped_at}' in result.stdout
    expected = torch.load(
        osp.join(straight, f'iter_{iters}.pth'),
        weights_only=True)['state_dict']
    actual = torch.load(
        osp.join(work_dir, f'iter_{iters}.pth'),
        weights_only=True)['state_dict']
    for key, value in expected.items():
        torch.testing.assert_close(
            actual[key], value, rtol=1e-5, atol=1e-6, msg=key)
