"""The tinylinear architecture and its checkpoint format: ``config.json`` + ``model.safetensors``.

A small causal transformer (embedding, blocks of causal self-attention and a GELU MLP, tied LM
head) in plain PyTorch. Imported only inside the plugin's hookimpls, never at plugin import.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from invarlock_tinylinear.config import CONFIG_NAME, WEIGHTS_NAME, TinyLinearConfig, read_config


class Block(nn.Module):
    def __init__(self, config: TinyLinearConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.ln_attn = nn.LayerNorm(config.hidden_size)
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.ln_mlp = nn.LayerNorm(config.hidden_size)
        self.up = nn.Linear(config.hidden_size, config.mlp_dim)
        self.down = nn.Linear(config.mlp_dim, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, hidden = x.shape
        q, k, v = self.qkv(self.ln_attn(x)).split(hidden, dim=-1)
        q, k, v = (t.view(batch, seq, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, seq, hidden))
        return x + self.down(F.gelu(self.up(self.ln_mlp(x))))


class TinyLinearLM(nn.Module):
    def __init__(self, config: TinyLinearConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_final = nn.LayerNorm(config.hidden_size)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids)
        for block in self.blocks:
            x = block(x)
        logits: torch.Tensor = self.lm_head(self.ln_final(x))
        return logits

    def tied_weights(self) -> dict[str, str]:
        return {"lm_head.weight": "embed.weight"} if self.config.tie_embeddings else {}


def save_pretrained(model: TinyLinearLM, directory: str | Path) -> Path:
    """Write ``model`` as a tinylinear checkpoint directory (tied weights are stored once)."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_NAME).write_text(json.dumps(model.config.to_json(), indent=2))
    tied = set(model.tied_weights())
    tensors = {k: v.contiguous() for k, v in model.state_dict().items() if k not in tied}
    save_file(tensors, str(path / WEIGHTS_NAME))
    return path


def load_pretrained(directory: str | Path, device: str, dtype: torch.dtype | None) -> TinyLinearLM:
    config = read_config(directory)
    if config is None:
        raise FileNotFoundError(f"{directory} has no tinylinear {CONFIG_NAME}")
    model = TinyLinearLM(config)
    state = load_file(str(Path(directory) / WEIGHTS_NAME))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [name for name in missing if name not in model.tied_weights()]
    if missing or unexpected:
        raise ValueError(f"weights do not match the config (missing {missing}, unexpected {unexpected})")
    if dtype is not None:
        model = model.to(dtype)
    return model.to(device).eval()
