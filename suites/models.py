"""Models the suites measure: defined here, random weights, nothing downloaded."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class MLP(nn.Module):
    """Two linear layers with GELU: matmul-bound, the int8 and batching workload."""

    def __init__(self, width: int = 512, hidden: int = 2048) -> None:
        super().__init__()
        self.up = nn.Linear(width, hidden)
        self.down = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class SmallCNN(nn.Module):
    """Conv-BatchNorm-ReLU blocks: ONNX Runtime folds BatchNorm and fuses Conv+ReLU."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = [3, 32, 64, 64, 128]
        for cin, cout in zip(channels, channels[1:]):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                       nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    causal: bool = False) -> torch.Tensor:
    """Attention as written in a textbook: the full scores matrix in memory."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        n = q.shape[-2]
        mask = torch.ones(n, k.shape[-2], dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


class Block(nn.Module):
    """A pre-norm decoder block that can attend over a key/value cache."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (t.view(b, n, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        # causal only while queries and keys line up; a cached step attends to everything
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=bool(past is None and n > 1))
        x = x + self.proj(attn.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.ln2(x)), (k, v)


class TinyGPT(nn.Module):
    """A small GPT-style decoder: token + position embeddings, blocks, tied head."""

    def __init__(self, vocab: int = 512, dim: int = 128, heads: int = 4, layers: int = 2,
                 context: int = 2048) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, dim)
        self.positions = nn.Embedding(context, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits for every position (no cache): the exportable entry point."""
        return self.step(ids, None, 0)[0]

    def step(self, ids: torch.Tensor, cache: list[tuple[torch.Tensor, torch.Tensor]] | None,
             start: int) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        pos = torch.arange(start, start + ids.shape[1], device=ids.device)
        x = self.tokens(ids) + self.positions(pos)
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, cache[i] if cache is not None else None)
            new_cache.append(kv)
        return self.norm(x) @ self.tokens.weight.T, new_cache


@torch.inference_mode()
def generate(model: TinyGPT, prompt: torch.Tensor, new_tokens: int, kv_cache: bool
             ) -> torch.Tensor:
    """Greedy decoding: with a KV cache each step feeds one token; without, the whole sequence."""
    ids = prompt
    if kv_cache:
        logits, cache = model.step(ids, None, 0)
        for _ in range(new_tokens):
            nxt = logits[:, -1:].argmax(-1)
            ids = torch.cat([ids, nxt], dim=1)
            logits, cache = model.step(nxt, cache, ids.shape[1] - 1)
        return ids
    for _ in range(new_tokens):
        nxt = model(ids)[:, -1:].argmax(-1)
        ids = torch.cat([ids, nxt], dim=1)
    return ids


def seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    """Re-initialise ``module``'s parameters reproducibly and put it in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return module.eval()

