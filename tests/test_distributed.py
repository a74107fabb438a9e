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
