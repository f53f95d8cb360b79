"""Small modules vitopt has never seen, each holding one foldable (or deliberately unfoldable) structure."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(c_in=8, c_out=8, k=3, groups=1, bias=False, stride=1):
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=bias), nn.BatchNorm2d(c_out))


class LinearNormTokens(nn.Module):
    """LeViT's LinearNorm: the BatchNorm sees the tokens flattened into the batch."""

    def __init__(self, c_in=8, c_out=12):
        super().__init__()
        self.linear, self.bn = nn.Linear(c_in, c_out, bias=False), nn.BatchNorm1d(c_out)

    def forward(self, x):
        y = self.linear(x)
        return self.bn(y.flatten(0, 1)).reshape_as(y)


class NormThenTokenLinear(nn.Module):
    """FastViT's attention block: BatchNorm2d, then tokens (flatten + transpose), then a Linear."""

    def __init__(self, c=8):
        super().__init__()
        self.norm, self.qkv = nn.BatchNorm2d(c), nn.Linear(c, 3 * c)

    def forward(self, x):
        return self.qkv(self.norm(x).flatten(2).transpose(-2, -1))


class RepVggDw(nn.Module):
    """RepViT's token mixer: BN(BN(dw3x3(x)) + dw1x1(x) + x)."""

    def __init__(self, c=8):
        super().__init__()
        self.conv = conv_bn(c, c, 3, groups=c)
        self.conv1 = nn.Conv2d(c, c, 1, groups=c)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return self.bn(self.conv(x) + self.conv1(x) + x)


class MobileOneLike(nn.Module):
    """Several kxk branches, a 1x1 scale branch and a BatchNorm identity, then an activation."""

    def __init__(self, c=8, branches=2):
        super().__init__()
        self.identity = nn.BatchNorm2d(c)
        self.scale = conv_bn(c, c, 1, groups=2)
        self.kxk = nn.ModuleList(conv_bn(c, c, 3, groups=2) for _ in range(branches))
        self.act = nn.GELU()

    def forward(self, x):
        out = self.identity(x) + self.scale(x)
        for branch in self.kxk:
            out = out + branch(x)
        return self.act(out)


class RepMixerLike(nn.Module):
    """FastViT's RepMixer: x + gamma * (mixer(x) - norm(x)), gamma a per-channel parameter."""

    def __init__(self, c=8):
        super().__init__()
        self.mixer, self.norm = conv_bn(c, c, 3, groups=c), nn.BatchNorm2d(c)
        self.gamma = nn.Parameter(torch.rand(c, 1, 1) + 0.5)

    def forward(self, x):
        return x + self.gamma * (self.mixer(x) - self.norm(x))


class DistilledHeads(nn.Module):
    """A stem, pooling, then the distilled two-head classifier averaged at eval (RepViT, LeViT)."""

    def __init__(self, c=8, classes=5):
        super().__init__()
        self.stem = conv_bn(3, c, 3, stride=2)
        self.head = nn.Sequential(nn.BatchNorm1d(c), nn.Linear(c, classes))
        self.head_dist = nn.Sequential(nn.BatchNorm1d(c), nn.Linear(c, classes))

    def forward(self, x):
        x = self.stem(x).mean((2, 3))
        return (self.head(x) + self.head_dist(x)) / 2


class CachedBias(nn.Module):
    """Adds a bias gathered from a small table, cached in eval mode as LeViT's attention does; between two
    ReLUs, so no fold can absorb it."""

    def __init__(self, c=8):
        super().__init__()
        self.table = nn.Parameter(torch.randn(c, 3))
        self.register_buffer("idx", torch.tensor([0, 2, 1, 0]), persistent=False)
        self.gathers, self.cache = 0, None

    def forward(self, x):
        if self.training or self.cache is None:
            self.gathers += 1
            self.cache = self.table[:, self.idx].sum(1)
        return torch.relu(torch.relu(x) + self.cache[:, None, None])


class DistilledHeadsWithCache(DistilledHeads):
    """Distilled heads (the fold rewrites the model's own forward) after a block with an eval-mode cache."""

    def __init__(self, c=8, classes=5):
        super().__init__(c, classes)
        self.body = CachedBias(c)

    def forward(self, x):
        x = self.body(self.stem(x)).mean((2, 3))
        return (self.head(x) + self.head_dist(x)) / 2


class LayerScaleMlp(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, c)
        self.ls = nn.Parameter(torch.full((c,), 0.1))

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(x))) * self.ls


class NonLinearBetweenBranches(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.a, self.b = conv_bn(c, c, 3), conv_bn(c, c, 1)

    def forward(self, x):
        return torch.relu(self.a(x)) + self.b(x)


class StridedIdentity(nn.Module):
    """A stride-2 conv branch next to a subsampled identity."""

    def __init__(self, c=8):
        super().__init__()
        self.conv = conv_bn(c, c, 3, stride=2)

    def forward(self, x):
        return self.conv(x) + x[:, :, ::2, ::2]


class StrideTwoWithIdentity(nn.Module):
    """A stride-2 conv branch summed with the raw input (shapes agree only on a 1x1 map)."""

    def __init__(self, c=8):
        super().__init__()
        self.conv = conv_bn(c, c, 3, stride=2)

    def forward(self, x):
        return self.conv(x) + x


class SharedConv(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.conv, self.bn1, self.bn2 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.BatchNorm2d(c)

    def forward(self, x):
        return self.bn1(self.conv(x)) * self.bn2(self.conv(x.flip(-1)))


class NormBeforePaddedConv(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.bn, self.conv = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(self.bn(x))


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace its forward."""

    def __init__(self, c=8):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        if x.shape[-1] % 2 == 0 and x.mean() > -1e9:
            x = x * 1.0
        return self.bn(self.conv(x))


class UntraceableReparameterizable(Untraceable):
    """The same, implementing vitopt's ``Reparameterizable`` protocol."""

    def reparameterize(self):
        from vitopt.reparam.algebra import bn_diag, conv_term, scale_output
        from vitopt.reparam.merge import conv_module

        stats = {k: getattr(self.bn, k) for k in ("running_mean", "running_var", "weight", "bias")}
        return conv_module(scale_output(conv_term(self.conv, padding=(1, 1)), bn_diag(stats, eps=self.bn.eps)),
                           like=self.conv)  # fmt: skip


class CallsWithKeywords(nn.Module):
    """Calls its child with fixed keyword arguments, as BEiT calls its blocks: ``blk(x, shared_rel_pos_bias=None)``."""

    def __init__(self, child: nn.Module, **keywords):
        super().__init__()
        self.child, self.keywords = child, keywords

    def forward(self, x):
        return torch.relu(self.child(x, **self.keywords))


class LayerScaleMlpWithOptions(LayerScaleMlp):
    """A layer scale (folds only by rewriting the forward) in a forward with an optional tensor and a flag."""

    def forward(self, x, bias=None, *, double=False):
        out = super().forward(x)
        out = out if bias is None else out + bias
        return out * 2 if double else out


class LayerScaleMlpWithExtras(LayerScaleMlp):
    """Keyword-only parameters after ``*extra``: fx's trace would take them positionally, before ``*extra``."""

    def forward(self, x, *extra, double=False):
        out = super().forward(x)
        return out * 2 if double else out


class RepVggDwWithBias(RepVggDw):
    """Merges into one conv, but its forward also takes an optional tensor (which a conv would not)."""

    def forward(self, x, bias=None):
        out = super().forward(x)
        return out if bias is None else out + bias


class AmplifiesRounding(nn.Module):
    """Conv+BN, then an op that turns the last bits of its input into the first bits of its output (the sine of a
    large multiple), as an untrained visformer's saturated attention does: its fp32 outputs move by more than the
    tolerance with any change of rounding order, a right fold's included."""

    def __init__(self, c=8):
        super().__init__()
        self.conv = conv_bn(c, c, 3)

    def forward(self, x):
        return torch.sin(self.conv(x) * 1e4)


class StarReLU(nn.Module):
    """MetaFormer's activation: ``s * relu(x) ** 2 + b`` with one-element ``s`` and ``b`` (no channel axis)."""

    def __init__(self):
        super().__init__()
        self.scale, self.bias = nn.Parameter(torch.tensor([0.8])), nn.Parameter(torch.tensor([-0.3]))

    def forward(self, x):
        return self.scale * torch.relu(x) ** 2 + self.bias


class StarReLUMlp(nn.Module):
    """MetaFormer's MLP: 1x1 convs around a StarReLU, a Dropout and an Identity norm. The activation's scale and
    bias fold into ``fc2``, which sits outside the activation module that holds them."""

    def __init__(self, c=8):
        super().__init__()
        self.fc1, self.act, self.drop, self.norm = nn.Conv2d(c, 2 * c, 1), StarReLU(), nn.Dropout(0.1), nn.Identity()
        self.fc2 = nn.Conv2d(2 * c, c, 1)

    def forward(self, x):
        return self.fc2(self.norm(self.drop(self.act(self.fc1(x)))))
