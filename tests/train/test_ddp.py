"""DistributedDataParallel through the engine: two CPU processes (gloo) end with the same weights."""

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from medapt.strategies import Phase, build_for, get
from medapt.train import EngineConfig, train_phase


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, tmp: str, spec: str, cache: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((16, 3, 32, 32)).astype(np.float32)
        y = (np.arange(16) % 2).astype(np.int64)
        torch.manual_seed(0)
        m = build_for(get("DA"), "resnet18")
        train_phase(m, Phase("p", spec, 1e-3, 2, batch_size=4), x, y, task_type="binary",
                    workdir=__import__("pathlib").Path(tmp) / f"rank{rank}",
                    cfg=EngineConfig(device="cpu", cache=cache, progress=False))
        torch.save({k: v for k, v in m.state_dict().items()}, os.path.join(tmp, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("spec, cache", [("last:2", "auto"), ("all", "off")])
def test_ddp_ranks_end_with_identical_weights(tmp_path, spec, cache):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), spec, cache), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    torch.manual_seed(0)  # the workers' starting weights
    start = build_for(get("DA"), "resnet18").state_dict()
    moved = False
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
        moved |= not torch.equal(a[k], start[k]) if a[k].is_floating_point() else False
    assert moved  # the ranks trained (each on half the data) and stayed in sync
