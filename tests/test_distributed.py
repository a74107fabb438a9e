"""A 2-process gloo DDP step equals the single-process step on the same global batch."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from mlc.config import make_config
from mlc.data.coco import collate
from mlc.models import build_detector


def _model(detector: str, num_classes: int):
    torch.manual_seed(0)
    model, _ = build_detector(make_config(detector, "smoke"), num_classes)
    return model


def _step(model, images, targets):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    loss = sum(model(images, targets).values())
    loss.backward()
    opt.step()


def _worker(rank, world, port, detector, num_classes, images, targets, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = _model(detector, num_classes)
        ddp = DistributedDataParallel(model)
        _step(ddp, images[rank::world], targets[rank::world])
        if rank == 0:
            torch.save(model.state_dict(), out)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("detector", ["fcos", "retinanet"])
def test_ddp_step_matches_single_process(detector, smoke_sets, tmp_path):
    train, _ = smoke_sets
    images, targets = collate([train[i] for i in range(4)])
    out = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(2, _free_port(), detector, train.num_classes, images, targets,
                            out), nprocs=2, join=True)
    single = _model(detector, train.num_classes)
    before = {k: v.clone() for k, v in single.state_dict().items()}
    _step(single, images, targets)
    ddp_state = torch.load(out)
    moved = 0
    for name, value in single.state_dict().items():
        torch.testing.assert_close(ddp_state[name], value, rtol=1e-4, atol=1e-6, msg=name)
        moved += not torch.equal(value, before[name])
    assert moved > 0


def test_torchrun_two_processes_train_the_same_run_as_one(tmp_path):
    """The whole CLI under torchrun (gloo): data, DDP training, sharded evaluation, the record."""
    import json
    import subprocess
    import sys

    from mlc.runs import get_or_train

    args = ["-m", "mlc", "train", "--detector", "fcos", "--scale", "smoke", "--quiet",
            "--set", "epochs=3", "--set", "lr_steps=[2]"]
    env = {**os.environ, "MLC_RUNS": str(tmp_path / "ddp"), "MLC_RESULTS": str(tmp_path / "ddp"),
           "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", str(_free_port())]
    res = subprocess.run(torchrun + args, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    ddp = json.loads(res.stdout)
    assert ddp["run"]["world_size"] == 2 and ddp["trained_now"]

    cfg = make_config("fcos", "smoke", epochs=3, lr_steps=[2])
    single = get_or_train(cfg, tmp_path / "one", progress=False, results_root=tmp_path / "one")
    assert ddp["name"] == single["name"] == cfg.name
    assert set(ddp["metrics"]) == set(single["metrics"])
    a = torch.load(tmp_path / "ddp" / "smoke" / cfg.name / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "one" / "smoke" / cfg.name / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 6
    for name, value in b["model"].items():
        torch.testing.assert_close(a["model"][name], value, rtol=1e-3, atol=1e-5, msg=name)


def test_a_torchrun_job_waits_for_the_run_lock_another_job_holds(tmp_path):
    """Rank 0 of a torchrun job takes the run's lock as a single process does: while another
    holder has it, the job waits (all ranks, without a collective timing out), then trains."""
    import json
    import subprocess
    import sys
    import time

    from mlc.util.lock import file_lock

    cfg = make_config("fcos", "smoke", epochs=2, lr_steps=[1])
    env = {**os.environ, "MLC_RUNS": str(tmp_path), "MLC_RESULTS": str(tmp_path),
           "OMP_NUM_THREADS": "1"}
    job = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(_free_port()), "-m", "mlc", "train", "--detector", "fcos",
           "--scale", "smoke", "--quiet", "--set", "epochs=2", "--set", "lr_steps=[1]"]
    run_dir, err_log = cfg.run_dir(tmp_path), tmp_path / "job.err"
    with file_lock(run_dir / ".lock"), err_log.open("w") as err_file:  # another job has the run
        proc = subprocess.Popen(job, stdout=subprocess.PIPE, stderr=err_file, text=True, env=env)
        deadline = time.monotonic() + 300
        while "another job is training this run" not in err_log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, err_log.read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(5)  # still waiting, all ranks, nothing written
        assert proc.poll() is None and not (run_dir / "config.json").exists()
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, err_log.read_text()[-3000:]
    record = json.loads(out)
    assert record["trained_now"] and record["run"]["world_size"] == 2
