import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from surgclip.loss import InfoNCELoss, PairMeta


def _features(b=6, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(b, d, generator=g), dim=-1), F.normalize(torch.randn(b, d, generator=g), dim=-1)


def test_equals_open_clip_cliploss():
    from open_clip.loss import ClipLoss

    v, t = _features()
    scale = torch.tensor(14.3)
    ours = InfoNCELoss()(v, t, scale)["loss"]
    ref = ClipLoss()(v, t, scale)
    torch.testing.assert_close(ours, ref)


def _brute_force(v, t, scale, positives, excluded):
    """Loop over rows: -mean over positives of log p, with excluded pairs removed from the softmax."""
    n = v.shape[0]
    total = 0.0
    for logits in (scale * v @ t.T, scale * t @ v.T):
        for i in range(n):
            keep = [j for j in range(n) if not excluded[i][j]]
            denom = math.log(sum(math.exp(logits[i, j].item()) for j in keep))
            pos = [j for j in range(n) if positives[i][j]]
            total += -sum(logits[i, j].item() - denom for j in pos) / len(pos) / 2
    return total / n


def test_multi_positive_and_overlap_masking_against_brute_force():
    v, t = _features(b=5)
    scale = 10.0
    groups = torch.tensor([0, 1, 0, 2, 3])          # samples 0 and 2 share a caption
    video = torch.tensor([7, 7, 8, 7, 9])
    level = torch.tensor([1, 3, 1, 2, 1])
    start = torch.tensor([0.0, 0.0, 5.0, 20.0, 0.0])
    end = torch.tensor([4.0, 30.0, 9.0, 25.0, 3.0])
    meta = PairMeta(groups=groups, video=video, level=level, start=start, end=end)
    got = InfoNCELoss(multi_positive=True, mask_overlaps=True)(v, t, scale, meta)["loss"].item()
    positives = [[i == j or groups[i] == groups[j] for j in range(5)] for i in range(5)]
    # 0-1 and 1-3: same video 7, other level, overlapping in time -> not negatives; 0-3 do not overlap
    excluded = [[False] * 5 for _ in range(5)]
    for i, j in ((0, 1), (1, 0), (1, 3), (3, 1)):
        excluded[i][j] = True
    assert got == pytest.approx(_brute_force(v, t, scale, positives, excluded), rel=1e-5)
    plain = InfoNCELoss(multi_positive=False)(v, t, scale, meta)["loss"].item()
    eye = [[i == j for j in range(5)] for i in range(5)]
    none = [[False] * 5 for _ in range(5)]
    assert plain == pytest.approx(_brute_force(v, t, scale, eye, none), rel=1e-5)


def test_per_sample_weights():
    v, t = _features(b=4)
    loss = InfoNCELoss()
    out = loss(v, t, 5.0)
    w = torch.tensor([1.0, 0.0, 2.0, 1.0])
    weighted = loss(v, t, 5.0, weights=w)["loss"]
    torch.testing.assert_close(weighted, (out["per_sample"] * w).sum() / w.sum())


def _worker(rank, world, port, local_loss, result_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    x = torch.randn(8, 6)
    y = torch.randn(8, 6)
    w_v = torch.nn.Parameter(torch.randn(6, 4, generator=torch.Generator().manual_seed(1)))
    w_t = torch.nn.Parameter(torch.randn(6, 4, generator=torch.Generator().manual_seed(2)))
    sl = slice(rank * 4, rank * 4 + 4)
    v, t = F.normalize(x[sl] @ w_v, dim=-1), F.normalize(y[sl] @ w_t, dim=-1)
    groups = torch.tensor([0, 1, 2, 3, 0, 5, 6, 7])[sl]  # a positive pair across the two ranks
    out = InfoNCELoss(local_loss=local_loss)(v, t, 7.0, PairMeta(groups=groups))
    out["loss"].backward()
    loss = out["loss"].detach().clone()
    dist.all_reduce(loss)
    for p in (w_v, w_t):  # what DDP does with parameter gradients
        dist.all_reduce(p.grad)
        p.grad /= world
    if rank == 0:
        torch.save({"loss": loss / world, "g_v": w_v.grad, "g_t": w_t.grad}, result_path)
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("local_loss", [False, True])
def test_two_process_gloo_equals_single_process(tmp_path, local_loss):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "dist.pt"
    mp.spawn(_worker, args=(2, port, local_loss, str(path)), nprocs=2, join=True)
    got = torch.load(path, weights_only=True)

    torch.manual_seed(0)
    x, y = torch.randn(8, 6), torch.randn(8, 6)
    w_v = torch.nn.Parameter(torch.randn(6, 4, generator=torch.Generator().manual_seed(1)))
    w_t = torch.nn.Parameter(torch.randn(6, 4, generator=torch.Generator().manual_seed(2)))
    out = InfoNCELoss()(F.normalize(x @ w_v, dim=-1), F.normalize(y @ w_t, dim=-1), 7.0,
                        PairMeta(groups=torch.tensor([0, 1, 2, 3, 0, 5, 6, 7])))
    out["loss"].backward()
    torch.testing.assert_close(got["loss"], out["loss"].detach())
    torch.testing.assert_close(got["g_v"], w_v.grad)
    torch.testing.assert_close(got["g_t"], w_t.grad)


def test_padded_items_change_neither_loss_nor_gradients():
    """PaddedCollate's stand-ins (valid=False copies of real items) are invisible to the loss."""
    torch.manual_seed(0)
    v, t = F.normalize(torch.randn(5, 4), dim=-1), F.normalize(torch.randn(5, 4), dim=-1)
    groups = torch.tensor([0, 1, 2, 0, 4])
    ref_v, ref_t = v.clone().requires_grad_(), t.clone().requires_grad_()
    ref = InfoNCELoss()(ref_v, ref_t, 5.0, PairMeta(groups=groups), torch.tensor([1.0, 2, 1, 1, 1]))
    ref["loss"].backward()

    order = [0, 1, 1, 2, 3, 0, 4]  # items 1 and 0 repeated as stand-ins at positions 2 and 5
    valid = torch.tensor([True, True, False, True, True, False, True])
    pv, pt = v[order].clone().requires_grad_(), t[order].clone().requires_grad_()
    out = InfoNCELoss()(pv, pt, 5.0, PairMeta(groups=groups[order], valid=valid),
                        torch.tensor([1.0, 2, 2, 1, 1, 1, 1]))
    out["loss"].backward()
    torch.testing.assert_close(out["loss"], ref["loss"])
    torch.testing.assert_close(pv.grad[valid], ref_v.grad)
    torch.testing.assert_close(pt.grad[valid], ref_t.grad)
    assert torch.all(pv.grad[~valid] == 0) and torch.all(pt.grad[~valid] == 0)
