"""One DDP training step of an InternImage with the CUDA DCNv3 kernel, per process (launched by torch.distributed.run
from test_intern_image_cuda.py; not a test module). Checks, on rank 0, that the all-reduced gradients equal the
gradients of the whole batch computed in one process, and that both ranks hold the same gradients."""
from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.models.test_intern_image_cuda import randomised_t  # noqa: E402


def loss_of(model, images: torch.Tensor) -> torch.Tensor:
    return sum(o.square().mean() for o in model(images))


def main() -> int:
    dist.init_process_group('nccl')
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.cuda.set_device(rank)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # compare full float32
    device = torch.device('cuda', rank)
    model = randomised_t(seed=0).to(device)  # the same weights on every rank
    images = torch.randn(2 * world, 3, 64, 96, generator=torch.Generator().manual_seed(1)).to(device)
    ddp = DistributedDataParallel(model, device_ids=[rank])
    loss_of(ddp, images[2 * rank:2 * rank + 2]).backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    gathered = [torch.empty_like(grads) for _ in range(world)]
    dist.all_gather(gathered, grads)
    if rank == 0:
        reference = randomised_t(seed=0).to(device)
        loss_of(reference, images).backward()  # mean over the whole batch = mean of the per-rank means
        expected = torch.cat([p.grad.flatten() for p in reference.parameters()])
        for other in gathered[1:]:
            torch.testing.assert_close(other, gathered[0], rtol=0, atol=0, msg='ranks hold different gradients')
        scale = expected.abs().max().item()
        torch.testing.assert_close(grads, expected, rtol=1e-3, atol=1e-4 * scale,
                                   msg='DDP gradients differ from the single-process whole-batch gradients')
        print('ddp step ok')
    dist.destroy_process_group()
    return 0


if __name__ == '__main__':
    sys.exit(main())
