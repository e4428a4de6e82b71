"""A training loss that stops being finite ends the run with one clear error, before the
bad step touches the weights."""

from __future__ import annotations

import pytest
import torch

from magneto.data.dataset import Batch
from magneto.errors import MagnetoError, TrainingDiverged
from magneto.model.architectures import build_model
from magneto.model.config import ModelConfig
from magneto.train.loop import train_one_epoch
from magneto.train.loss_registry import build_loss
from magneto.train.total_loss import TotalLoss


def _batch(index: int) -> Batch:
    tags = torch.tensor([[1, 2, 3], [4, 5, 10]])
    mask = tags == 10
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    return Batch([f"a{index}", f"b{index}"], torch.empty(0), tags, mask, targets)


class PoisonedSecondBatch(TotalLoss):
    """The real objective, NaN from the second batch on."""

    calls = 0

    def __call__(self, output, targets, padding_mask):
        loss, parts = super().__call__(output, targets, padding_mask)
        self.calls += 1
        return (loss * float("nan") if self.calls >= 2 else loss), parts


def test_a_nan_loss_stops_training_before_the_step():
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(vocab_size=10, d_model=8, heads=2, d_ff=16, architecture="tf-t")
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    criterion = PoisonedSecondBatch(build_loss("bce_dice"))
    weights: dict[str, torch.Tensor] = {}

    class Snapshot(list):
        def __iter__(self):
            for batch in list.__iter__(self):
                weights.update({n: p.detach().clone() for n, p in model.named_parameters()})
                yield batch

    loader = Snapshot([_batch(0), _batch(1), _batch(2)])
    with pytest.raises(TrainingDiverged) as caught:
        train_one_epoch(
            model, loader, criterion, optimizer, device=torch.device("cpu"),
            description="train epoch 3/8", progress=False,
        )  # fmt: skip
    message = str(caught.value)
    assert isinstance(caught.value, MagnetoError) and "\n" not in message
    assert message.startswith("train epoch 3/8: the training loss became nan after 2 items")
    assert "--amp off" in message and "--lr" in message
    for name, parameter in model.named_parameters():  # the NaN batch changed nothing
        assert torch.equal(parameter, weights[name]), name
        assert torch.isfinite(parameter).all()


RANK_SCRIPT = """
import sys, torch, torch.distributed as dist
sys.path.insert(0, {tests!r})
from test_divergence import PoisonedSecondBatch, _batch
from magneto.errors import TrainingDiverged
from magneto.model.architectures import build_model
from magneto.model.config import ModelConfig
from magneto.train.loop import train_one_epoch
from magneto.train.loss_registry import build_loss
from magneto.train.total_loss import TotalLoss

rank = int(sys.argv[1])
dist.init_process_group("gloo", init_method={init!r}, rank=rank, world_size=2)
torch.manual_seed(0)
model = build_model(ModelConfig(vocab_size=10, d_model=8, heads=2, d_ff=16, architecture="tf-t"))
net = torch.nn.parallel.DistributedDataParallel(model)
loss = build_loss("bce_dice")
criterion = PoisonedSecondBatch(loss) if rank == 1 else TotalLoss(loss)
try:
    train_one_epoch(
        net, [_batch(0), _batch(1), _batch(2)], criterion,
        torch.optim.SGD(net.parameters(), lr=0.1), device=torch.device("cpu"), progress=False,
    )
    print("finished")
except TrainingDiverged as error:
    print(error)
"""


@pytest.mark.slow
def test_every_rank_stops_when_one_diverges(tmp_path):
    """Rank 1's loss turns NaN; rank 0's stays finite and must not wait for it forever."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "rank.py"
    tests = str(Path(__file__).parent)
    script.write_text(RANK_SCRIPT.format(tests=tests, init=f"file://{tmp_path / 'rendezvous'}"))
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "env": env}
    ranks = [subprocess.Popen([sys.executable, str(script), str(r)], **pipes) for r in (0, 1)]
    outputs = []
    for process in ranks:
        try:
            out, err = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for other in ranks:
                other.kill()
            pytest.fail("a rank hung after another rank's loss became NaN")
        assert process.returncode == 0, err[-2000:]
        outputs.append(out.strip())
    assert outputs[1].startswith("train: the training loss became nan after 2 items"), outputs
    assert outputs[0].startswith(
        "train: the training loss became non-finite on another process after 2 items"
    ), outputs
