"""RAFT-large (Teed & Deng 2020), the optical flow VBench's dynamic_degree uses: the network of
vbench/third_party/RAFT/core (BSD-3-Clause, princeton-vl), large model only, test mode, with
its state-dict names, so `raft-things.pth` from VBench's layout loads unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import BackboneInfo

CORR_LEVELS, CORR_RADIUS, HIDDEN, CONTEXT = 4, 4, 128, 128


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.InstanceNorm2d(channels)


class ResidualBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, norm: str, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.norm1, self.norm2 = _norm(norm, planes), _norm(norm, planes)
        self.downsample = None
        if stride != 1:
            self.norm3 = _norm(norm, planes)
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride), self.norm3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


class BasicEncoder(nn.Module):
    def __init__(self, output_dim: int, norm: str) -> None:
        super().__init__()
        self.norm1 = _norm(norm, 64)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.relu1 = nn.ReLU(inplace=True)
        planes = [64, 64, 96, 128]
        for i in range(1, 4):
            stride = 1 if i == 1 else 2
            layer = nn.Sequential(
                ResidualBlock(planes[i - 1], planes[i], norm, stride), ResidualBlock(planes[i], planes[i], norm)
            )
            setattr(self, f"layer{i}", layer)
        self.conv2 = nn.Conv2d(128, output_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.norm1(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


class BasicMotionEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        cor_planes = CORR_LEVELS * (2 * CORR_RADIUS + 1) ** 2
        self.convc1 = nn.Conv2d(cor_planes, 256, 1, padding=0)
        self.convc2 = nn.Conv2d(256, 192, 3, padding=1)
        self.convf1 = nn.Conv2d(2, 128, 7, padding=3)
        self.convf2 = nn.Conv2d(128, 64, 3, padding=1)
        self.conv = nn.Conv2d(64 + 192, 128 - 2, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        cor = F.relu(self.convc2(F.relu(self.convc1(corr))))
        flo = F.relu(self.convf2(F.relu(self.convf1(flow))))
        return torch.cat([F.relu(self.conv(torch.cat([cor, flo], dim=1))), flow], dim=1)


class SepConvGRU(nn.Module):
    def __init__(self, hidden_dim: int, input_dim: int) -> None:
        super().__init__()
        for axis, (kernel, pad) in {"1": ((1, 5), (0, 2)), "2": ((5, 1), (2, 0))}.items():
            for gate in "zrq":
                setattr(self, f"conv{gate}{axis}", nn.Conv2d(hidden_dim + input_dim, hidden_dim, kernel, padding=pad))

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        for axis in "12":
            hx = torch.cat([h, x], dim=1)
            z = torch.sigmoid(getattr(self, f"convz{axis}")(hx))
            r = torch.sigmoid(getattr(self, f"convr{axis}")(hx))
            q = torch.tanh(getattr(self, f"convq{axis}")(torch.cat([r * h, x], dim=1)))
            h = (1 - z) * h + z * q
        return h


class FlowHead(nn.Module):
    def __init__(self, input_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(input_dim, hidden_dim, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden_dim, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.conv1(x)))


class BasicUpdateBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = BasicMotionEncoder()
        self.gru = SepConvGRU(hidden_dim=HIDDEN, input_dim=128 + HIDDEN)
        self.flow_head = FlowHead(HIDDEN, hidden_dim=256)
        self.mask = nn.Sequential(nn.Conv2d(128, 256, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(256, 64 * 9, 1))

    def forward(self, net, inp, corr, flow):
        inp = torch.cat([inp, self.encoder(flow, corr)], dim=1)
        net = self.gru(net, inp)
        return net, 0.25 * self.mask(net), self.flow_head(net)


def coords_grid(batch: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    return torch.stack([xs, ys], dim=0).float()[None].repeat(batch, 1, 1, 1)


def bilinear_sampler(img: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """grid_sample in pixel coordinates (align_corners=True), as RAFT does."""
    height, width = img.shape[-2:]
    xgrid, ygrid = coords.split([1, 1], dim=-1)
    grid = torch.cat([2 * xgrid / (width - 1) - 1, 2 * ygrid / (height - 1) - 1], dim=-1)
    return F.grid_sample(img, grid, align_corners=True)


class CorrBlock:
    """All-pairs correlation pyramid, looked up in a (2r+1)^2 window around each coordinate."""

    def __init__(self, fmap1: torch.Tensor, fmap2: torch.Tensor) -> None:
        batch, dim, ht, wd = fmap1.shape
        corr = torch.matmul(fmap1.view(batch, dim, ht * wd).transpose(1, 2), fmap2.view(batch, dim, ht * wd))
        corr = (corr / torch.sqrt(torch.tensor(dim, device=corr.device).float())).reshape(batch * ht * wd, 1, ht, wd)
        self.pyramid = [corr]
        for _ in range(CORR_LEVELS - 1):
            corr = F.avg_pool2d(corr, 2, stride=2)
            self.pyramid.append(corr)

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        r = CORR_RADIUS
        coords = coords.permute(0, 2, 3, 1)
        batch, h1, w1, _ = coords.shape
        d = torch.linspace(-r, r, 2 * r + 1, device=coords.device)
        delta = torch.stack(torch.meshgrid(d, d, indexing="ij"), dim=-1).view(1, 2 * r + 1, 2 * r + 1, 2)
        out = []
        for i, corr in enumerate(self.pyramid):
            centroid = coords.reshape(batch * h1 * w1, 1, 1, 2) / 2**i
            out.append(bilinear_sampler(corr, centroid + delta).view(batch, h1, w1, -1))
        return torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous().float()


class RAFT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fnet = BasicEncoder(output_dim=256, norm="instance")
        self.cnet = BasicEncoder(output_dim=HIDDEN + CONTEXT, norm="batch")
        self.update_block = BasicUpdateBlock()

    @staticmethod
    def upsample_flow(flow: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[H/8, W/8] -> [H, W] flow by RAFT's learned convex combination."""
        n, _, h, w = flow.shape
        mask = torch.softmax(mask.view(n, 1, 9, 8, 8, h, w), dim=2)
        up = F.unfold(8 * flow, [3, 3], padding=1).view(n, 2, 9, 1, 1, h, w)
        up = torch.sum(mask * up, dim=2).permute(0, 1, 4, 2, 5, 3)
        return up.reshape(n, 2, 8 * h, 8 * w)

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, iters: int = 20) -> torch.Tensor:
        """Upsampled flow (N, 2, H, W) from images in [0, 255] whose sides are multiples of 8."""
        image1 = (2 * (image1 / 255.0) - 1.0).contiguous()
        image2 = (2 * (image2 / 255.0) - 1.0).contiguous()
        fmaps = self.fnet(torch.cat([image1, image2], dim=0)).float()
        corr_fn = CorrBlock(*fmaps.split(image1.shape[0], dim=0))
        net, inp = torch.split(self.cnet(image1), [HIDDEN, CONTEXT], dim=1)
        net, inp = torch.tanh(net), torch.relu(inp)
        n, _, h, w = image1.shape
        coords0 = coords_grid(n, h // 8, w // 8, image1.device)
        coords1 = coords0.clone()
        for _ in range(iters):
            net, up_mask, delta = self.update_block(net, inp, corr_fn(coords1), coords1 - coords0)
            coords1 = coords1 + delta
        return self.upsample_flow(coords1 - coords0, up_mask)


def pad8(x: torch.Tensor) -> torch.Tensor:
    """RAFT's InputPadder ('sintel' mode): replicate-pad both sides to multiples of 8."""
    ht, wd = x.shape[-2:]
    pad_ht, pad_wd = (-ht) % 8, (-wd) % 8
    return F.pad(x, [pad_wd // 2, pad_wd - pad_wd // 2, pad_ht // 2, pad_ht - pad_ht // 2], mode="replicate")


def load_raft(path: Path) -> RAFT:
    """RAFT with the weights of `path` (a state dict, keys possibly prefixed with 'module.')."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = RAFT()
    model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    return model.eval()


class RAFTFlow:
    """VBench's flow backbone: RAFT-large, 20 iterations, full resolution (8-padded, as upstream scores it)."""

    info = BackboneInfo("raft-things (VBench)", exact=True)

    def __init__(self, path: Path, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = load_raft(path).to(self.device)

    @torch.no_grad()
    def flow(self, frame1: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        images = [pad8(torch.from_numpy(f).permute(2, 0, 1)[None].float().to(self.device)) for f in (frame1, frame2)]
        return self.model(*images)[0].permute(1, 2, 0).cpu().numpy()
