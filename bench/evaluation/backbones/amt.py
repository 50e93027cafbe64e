"""AMT-S (Li et al. 2023, "All-pairs Multi-field Transforms"), the frame interpolator of VBench's
motion_smoothness: the network of vbench/third_party/amt (networks/AMT-S.py and its blocks) with
its state-dict names, so `amt-s.pth` from VBench's layout loads unchanged, and VBench's CPU use of
it (replicate-pad to multiples of 16, embt = 0.5, scale 1). AMT-S's weights are CC BY-NC 4.0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import BackboneInfo
from .raft import bilinear_sampler, coords_grid

CHANNELS, SKIP, NUM_FLOWS, RADIUS, LEVELS = (20, 32, 44, 56), 20, 3, 3, 4


def resize(x: torch.Tensor, scale: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


def warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp by `flow` (pixels), border padding, as AMT's flow_utils.warp."""
    b, _, h, w = flow.shape
    xx = torch.linspace(-1.0, 1.0, w, device=flow.device).view(1, 1, 1, w).expand(b, -1, h, -1)
    yy = torch.linspace(-1.0, 1.0, h, device=flow.device).view(1, 1, h, 1).expand(b, -1, -1, w)
    grid = torch.cat([xx, yy], 1).to(img)
    flow = torch.cat([flow[:, 0:1] / ((w - 1.0) / 2.0), flow[:, 1:2] / ((h - 1.0) / 2.0)], 1)
    return F.grid_sample(
        img, (grid + flow).permute(0, 2, 3, 1), mode="bilinear", padding_mode="border", align_corners=True
    )


class Bottleneck(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes // 4, kernel_size=1)
        self.conv2 = nn.Conv2d(planes // 4, planes // 4, kernel_size=3, padding=1, stride=stride)
        self.conv3 = nn.Conv2d(planes // 4, planes, kernel_size=1)
        self.norm1, self.norm2 = nn.InstanceNorm2d(planes // 4), nn.InstanceNorm2d(planes // 4)
        self.norm3 = nn.InstanceNorm2d(planes)
        self.downsample = None
        if stride != 1:
            self.norm4 = nn.InstanceNorm2d(planes)
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride), self.norm4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        y = F.relu(self.norm3(self.conv3(y)))
        return F.relu((x if self.downsample is None else self.downsample(x)) + y)


class SmallEncoder(nn.Module):
    def __init__(self, output_dim: int = 84) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=7, stride=2, padding=3)
        self.norm1 = nn.InstanceNorm2d(32)
        planes = [32, 32, 64, 96]
        for i in range(1, 4):
            stride = 1 if i == 1 else 2
            setattr(
                self,
                f"layer{i}",
                nn.Sequential(Bottleneck(planes[i - 1], planes[i], stride), Bottleneck(planes[i], planes[i], 1)),
            )
        self.conv2 = nn.Conv2d(96, output_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


def convrelu(cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.PReLU(cout))


class ResBlock(nn.Module):
    """IFRNet's residual block: the last `side` channels get an extra convolution twice."""

    def __init__(self, channels: int, side: int) -> None:
        super().__init__()
        self.side = side
        self.conv1, self.conv2 = convrelu(channels, channels), convrelu(side, side)
        self.conv3, self.conv4 = convrelu(channels, channels), convrelu(side, side)
        self.conv5 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.prelu = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.conv3(torch.cat([out[:, : -self.side], self.conv2(out[:, -self.side :])], 1))
        out = self.conv5(torch.cat([out[:, : -self.side], self.conv4(out[:, -self.side :])], 1))
        return self.prelu(x + out)


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        previous = 3
        for i, ch in enumerate(CHANNELS, 1):
            setattr(self, f"pyramid{i}", nn.Sequential(convrelu(previous, ch, 3, 2, 1), convrelu(ch, ch)))
            previous = ch

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i in range(1, len(CHANNELS) + 1):
            x = getattr(self, f"pyramid{i}")(x)
            features.append(x)
        return features


class InitDecoder(nn.Module):
    """The coarsest decoder; `out_ch` (like the others') counts the 4 flow channels plus the features."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.convblock = nn.Sequential(
            convrelu(in_ch * 2 + 1, in_ch * 2),
            ResBlock(in_ch * 2, SKIP),
            nn.ConvTranspose2d(in_ch * 2, out_ch, 4, 2, 1),
        )

    def forward(self, f0, f1, embt):
        out = self.convblock(torch.cat([f0, f1, embt.repeat(1, 1, *f0.shape[2:])], 1))
        flow0, flow1 = torch.chunk(out[:, :4], 2, 1)
        return flow0, flow1, out[:, 4:]


class IntermediateDecoder(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.convblock = nn.Sequential(
            convrelu(in_ch * 3 + 4, in_ch * 3),
            ResBlock(in_ch * 3, SKIP),
            nn.ConvTranspose2d(in_ch * 3, out_ch, 4, 2, 1),
        )

    def run(self, ft, f0, f1, flow0, flow1) -> torch.Tensor:
        return self.convblock(torch.cat([ft, warp(f0, flow0), warp(f1, flow1), flow0, flow1], 1))

    def forward(self, ft, f0, f1, flow0_in, flow1_in):
        out = self.run(ft, f0, f1, flow0_in, flow1_in)
        flow0, flow1 = torch.chunk(out[:, :4], 2, 1)
        return flow0 + 2.0 * resize(flow0_in, 2.0), flow1 + 2.0 * resize(flow1_in, 2.0), out[:, 4:]


class MultiFlowDecoder(IntermediateDecoder):
    """The last decoder: NUM_FLOWS flow pairs, their blending masks and residual images."""

    def forward(self, ft, f0, f1, flow0, flow1):
        out = self.run(ft, f0, f1, flow0, flow1)
        n = NUM_FLOWS
        delta0, delta1, mask, img_res = torch.split(out, [2 * n, 2 * n, n, 3 * n], 1)
        flow0 = delta0 + 2.0 * resize(flow0, 2.0).repeat(1, n, 1, 1)
        flow1 = delta1 + 2.0 * resize(flow1, 2.0).repeat(1, n, 1, 1)
        return flow0, flow1, torch.sigmoid(mask), img_res


class SmallUpdateBlock(nn.Module):
    def __init__(self, cdim: int, scale: int | None) -> None:
        super().__init__()
        hidden, flow_dim, corr_dim, fc_dim = 76, 20, 64, 68
        self.scale = scale
        self.convc1 = nn.Conv2d(2 * LEVELS * (2 * RADIUS + 1) ** 2, corr_dim, 1)
        self.convf1 = nn.Conv2d(4, flow_dim * 2, 7, padding=3)
        self.convf2 = nn.Conv2d(flow_dim * 2, flow_dim, 3, padding=1)
        self.conv = nn.Conv2d(corr_dim + flow_dim, fc_dim, 3, padding=1)

        def two_convs(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, hidden, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(hidden, cout, 3, padding=1)
            )

        self.gru = two_convs(fc_dim + 4 + cdim, hidden)
        self.feat_head, self.flow_head = two_convs(hidden, cdim), two_convs(hidden, 4)

    def forward(self, net, flow, corr):
        lrelu = nn.functional.leaky_relu
        if self.scale is not None:
            net = resize(net, 1 / self.scale)
        flo = lrelu(self.convf2(lrelu(self.convf1(flow), 0.1)), 0.1)
        inp = lrelu(self.conv(torch.cat([lrelu(self.convc1(corr), 0.1), flo], 1)), 0.1)
        out = self.gru(torch.cat([inp, flow, net], 1))
        delta_net, delta_flow = self.feat_head(out), self.flow_head(out)
        if self.scale is not None:
            delta_net, delta_flow = resize(delta_net, self.scale), self.scale * resize(delta_flow, self.scale)
        return delta_net, delta_flow


class BidirCorr:
    """Correlation pyramids both ways (frame 0 -> 1 and its transpose), looked up around two coordinate sets."""

    def __init__(self, fmap0: torch.Tensor, fmap1: torch.Tensor) -> None:
        b, dim, h, w = fmap0.shape
        corr = torch.matmul(fmap0.view(b, dim, h * w).transpose(1, 2), fmap1.view(b, dim, h * w))
        corr = (corr / torch.sqrt(torch.tensor(dim, device=corr.device).float())).view(b, h, w, 1, h, w)
        corr_t = corr.permute(0, 4, 5, 3, 1, 2).reshape(b * h * w, 1, h, w)
        corr = corr.reshape(b * h * w, 1, h, w)
        self.pyramids = ([corr], [corr_t])
        for _ in range(LEVELS - 1):
            for pyramid in self.pyramids:
                pyramid.append(F.avg_pool2d(pyramid[-1], 2, stride=2))

    def __call__(self, coords0: torch.Tensor, coords1: torch.Tensor):
        d = torch.linspace(-RADIUS, RADIUS, 2 * RADIUS + 1, device=coords0.device)
        delta = torch.stack(torch.meshgrid(d, d, indexing="ij"), dim=-1).view(1, 2 * RADIUS + 1, 2 * RADIUS + 1, 2)
        outs = []
        for pyramid, coords in zip(self.pyramids, (coords0, coords1)):
            coords = coords.permute(0, 2, 3, 1)
            b, h, w, _ = coords.shape
            levels = [
                bilinear_sampler(corr, coords.reshape(b * h * w, 1, 1, 2) / 2**i + delta).view(b, h, w, -1)
                for i, corr in enumerate(pyramid)
            ]
            outs.append(torch.cat(levels, dim=-1).permute(0, 3, 1, 2).contiguous().float())
        return outs


class AMTS(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        c = CHANNELS
        self.feat_encoder = SmallEncoder(84)
        self.encoder = Encoder()
        self.decoder4 = InitDecoder(c[3], c[2] + 4)
        self.decoder3 = IntermediateDecoder(c[2], c[1] + 4)
        self.decoder2 = IntermediateDecoder(c[1], c[0] + 4)
        self.decoder1 = MultiFlowDecoder(c[0], 8 * NUM_FLOWS)
        self.update4, self.update3, self.update2 = (
            SmallUpdateBlock(44, None),
            SmallUpdateBlock(32, 2),
            SmallUpdateBlock(20, 4),
        )
        n = NUM_FLOWS
        self.comb_block = nn.Sequential(nn.Conv2d(3 * n, 6 * n, 3, 1, 1), nn.PReLU(6 * n), nn.Conv2d(6 * n, 3, 3, 1, 1))

    @staticmethod
    def lookup(corr_fn, coord, flow0, flow1, embt, downsample: int):
        """Correlation at the positions the t-flows imply for frames 0 and 1 (linear motion)."""
        if downsample != 1:
            inv = 1 / downsample
            flow0, flow1 = inv * resize(flow0, inv), inv * resize(flow1, inv)
        corr0, corr1 = corr_fn(coord + flow1 * (1.0 / embt), coord + flow0 * (1.0 / (1.0 - embt)))
        return torch.cat([corr0, corr1], 1), torch.cat([flow0, flow1], 1)

    def refine(self, update, corr_fn, coord, flow0, flow1, ft, embt, downsample):
        corr, flow = self.lookup(corr_fn, coord, flow0, flow1, embt, downsample)
        delta_ft, delta_flow = update(ft, flow, corr)
        delta0, delta1 = torch.chunk(delta_flow, 2, 1)
        return flow0 + delta0, flow1 + delta1, ft + delta_ft

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, embt: torch.Tensor) -> torch.Tensor:
        """The frame at time `embt` between img0 and img1 (RGB in [0, 1], sides multiples of 16)."""
        mean = torch.cat([img0, img1], 2).mean(1, keepdim=True).mean(2, keepdim=True).mean(3, keepdim=True)
        img0, img1 = img0 - mean, img1 - mean
        b, _, h, w = img0.shape
        coord = coords_grid(b, h // 8, w // 8, img0.device)
        fmap0, fmap1 = self.feat_encoder(torch.cat([img0, img1], 0)).split(b, dim=0)
        corr_fn = BidirCorr(fmap0, fmap1)
        f0, f1 = self.encoder(img0), self.encoder(img1)
        flow0, flow1, ft = self.decoder4(f0[3], f1[3], embt)
        flow0, flow1, ft = self.refine(self.update4, corr_fn, coord, flow0, flow1, ft, embt, 1)
        flow0, flow1, ft = self.decoder3(ft, f0[2], f1[2], flow0, flow1)
        flow0, flow1, ft = self.refine(self.update3, corr_fn, coord, flow0, flow1, ft, embt, 2)
        flow0, flow1, ft = self.decoder2(ft, f0[1], f1[1], flow0, flow1)
        flow0, flow1, ft = self.refine(self.update2, corr_fn, coord, flow0, flow1, ft, embt, 4)
        flow0, flow1, mask, img_res = self.decoder1(ft, f0[0], f1[0], flow0, flow1)
        return self.combine(img0, img1, flow0, flow1, mask, img_res, mean).clamp(0, 1)

    def combine(self, img0, img1, flow0, flow1, mask, img_res, mean) -> torch.Tensor:
        """Warp both frames along every flow pair, blend by the masks, add residuals; merge the
        NUM_FLOWS candidates by their mean plus a learned correction."""
        b, _, h, w = flow0.shape
        n = NUM_FLOWS
        warped0 = warp(img0.repeat_interleave(n, 0), flow0.reshape(b * n, 2, h, w))
        warped1 = warp(img1.repeat_interleave(n, 0), flow1.reshape(b * n, 2, h, w))
        mask = mask.reshape(b * n, 1, h, w)
        merged = mask * warped0 + (1 - mask) * warped1 + mean.repeat_interleave(n, 0) + img_res.reshape(b * n, 3, h, w)
        merged = merged.reshape(b, n, 3, h, w)
        return merged.mean(1) + self.comb_block(merged.view(b, -1, h, w))


def load_amt_s(path: Path) -> AMTS:
    model = AMTS()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
    return model.eval()


def pad16(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """AMT's InputPadder(divisor=16): replicate-pad both sides; returns the padding for cropping."""
    ht, wd = x.shape[-2:]
    pad_ht, pad_wd = (-ht) % 16, (-wd) % 16
    pad = (pad_wd // 2, pad_wd - pad_wd // 2, pad_ht // 2, pad_ht - pad_ht // 2)
    return F.pad(x, list(pad), mode="replicate"), pad


class AMTInterpolator:
    info = BackboneInfo("amt-s (VBench)", exact=True)

    def __init__(self, path: Path, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = load_amt_s(path).to(self.device)
        self.embt = torch.tensor(0.5).view(1, 1, 1, 1).to(self.device)

    @torch.no_grad()
    def midpoint(self, frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
        images = [torch.from_numpy(f).permute(2, 0, 1)[None].to(self.device) / 255.0 for f in (frame0, frame1)]
        (img0, pad), (img1, _) = pad16(images[0]), pad16(images[1])
        out = self.model(img0, img1, self.embt)
        h, w = out.shape[-2:]
        out = out[..., pad[2] : h - pad[3], pad[0] : w - pad[1]]
        return out[0].permute(1, 2, 0).cpu().numpy()
