"""torch adapters for bitmasks: applying a packed token bitmask to logits on their device."""

from __future__ import annotations

import sys

import numpy as np
import torch

_SHIFTS: dict[torch.device, torch.Tensor] = {}


def _shifts(device: torch.device) -> torch.Tensor:
    shifts = _SHIFTS.get(device)
    if shifts is None:
        shifts = torch.arange(32, dtype=torch.int32, device=device)
        _SHIFTS[device] = shifts
    return shifts


def unpack_bitmask(bitmask: "torch.Tensor | np.ndarray", vocab_size: int, device: "torch.device | str | None" = None) -> torch.Tensor:
    """Bool tensor ``[batch, vocab_size]`` (or ``[vocab_size]``) of the allowed tokens."""
    target = torch.device(device) if device is not None else None
    on_cpu = (target is None or target.type == "cpu") and (isinstance(bitmask, np.ndarray) or bitmask.device.type == "cpu")
    if on_cpu and sys.byteorder == "little":
        # numpy unpacks bytes ~50x faster than the shift-and-mask below on CPU; on a
        # little-endian machine bit i % 8 of byte i // 8 is exactly token i.
        packed = bitmask if isinstance(bitmask, np.ndarray) else bitmask.numpy()
        unpacked = np.unpackbits(np.ascontiguousarray(packed).view(np.uint8), axis=-1, bitorder="little")
        return torch.from_numpy(unpacked[..., :vocab_size].view(np.bool_))
    tensor = torch.from_numpy(bitmask) if isinstance(bitmask, np.ndarray) else bitmask
    if target is not None:
        tensor = tensor.to(target, non_blocking=True)
    return _unpack_on_device(tensor, vocab_size)


def _unpack_on_device(tensor: torch.Tensor, vocab_size: int) -> torch.Tensor:
    squeeze = tensor.dim() == 1
    words = tensor.view(1, -1) if squeeze else tensor
    bits = (words.unsqueeze(-1) >> _shifts(words.device)) & 1
    allowed = bits.view(words.shape[0], -1)[:, :vocab_size].bool()
    return allowed[0] if squeeze else allowed


def apply_token_bitmask_inplace(
    logits: torch.Tensor,
    bitmask: "torch.Tensor | np.ndarray",
    indices: "list[int] | None" = None,
) -> None:
    """Set the logits of forbidden tokens to -inf, in place, on the logits' device.

    ``logits`` is ``[batch, vocab]`` (or ``[vocab]``); ``bitmask`` is int32 ``[batch, words]``
    from :func:`onrails.allocate_token_bitmask`, row ``i`` for logits row ``i``. Columns of
    ``logits`` beyond the bitmask's width are masked too. ``indices`` limits the masking to those
    rows (the others, unconstrained sequences, are left alone). Vectorised: no Python loop over
    the vocabulary.
    """
    squeeze = logits.dim() == 1
    rows = logits.view(1, -1) if squeeze else logits
    vocab = rows.shape[-1]
    allowed = unpack_bitmask(bitmask, min(vocab, _width(bitmask) * 32), device=rows.device)
    if allowed.dim() == 1:
        allowed = allowed.unsqueeze(0)
    if allowed.shape[-1] < vocab:
        pad = torch.zeros(allowed.shape[0], vocab - allowed.shape[-1], dtype=torch.bool, device=rows.device)
        allowed = torch.cat([allowed, pad], dim=-1)
    if indices is None:
        rows.masked_fill_(~allowed, float("-inf"))
    else:
        index = torch.as_tensor(indices, device=rows.device)
        sub = rows.index_select(0, index)
        sub.masked_fill_(~allowed.index_select(0, index), float("-inf"))
        rows.index_copy_(0, index, sub)


def _width(bitmask: "torch.Tensor | np.ndarray") -> int:
    return int(bitmask.shape[-1])
