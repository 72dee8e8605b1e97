"""Sequence parallelism (USP) for ComfyUI's Wan 2.1 on the CPU, injected the way raylight does it.

raylight (github komikndr/raylight, snapshot c049571; ``distributed_modules/usp.py`` ``_inject_wan21``
and ``diffusion_models/wan/xdit_context_parallel.py``) swaps, per instance, ``forward_orig`` of the
WanModel for ``usp_dit_forward`` and the ``forward`` of every block's self- and cross-attention for
``usp_*_attn_forward``. ``usp_dit_forward`` pads the token sequence to a multiple of the group size
after the patch embedding, keeps this rank's chunk (and its rotary frequencies), runs the blocks —
through ``patches_replace["dit"]`` exactly like ComfyUI's own forward, so block patches see the LOCAL
shard — and all-gathers the tokens before the head. Attention runs through xDiT's
``xFuserLongContextAttention`` (yunchang's LongContextAttention underneath; cross-attention too, with
the full text context on every rank).

raylight itself cannot start here (its workers hard-code CUDA and NCCL, and its xfuser needs a
driver), so this module rebuilds those functions on yunchang's ``LongContextAttention`` (Ulysses
and/or ring) with torch.distributed's all_gather over the sequence-parallel group, following
raylight's code line by line for Wan 2.1 T2V (ComfyUI 0.8.0's forward signature). ``setup`` points
yunchang's torch kernel at the CPU flash-attention op (its module binds the CUDA one at import).
"""
from __future__ import annotations

import types

import torch

_STATE: dict = {}


def setup(ulysses: int, ring: int, rank: int, world: int):
    """Create yunchang's process groups (every rank calls this) and its CPU attention."""
    import yunchang.kernels.attention as kernels
    from yunchang import LongContextAttention, set_seq_parallel_pg
    from yunchang.globals import PROCESS_GROUP
    from yunchang.kernels import AttnType
    kernels._scaled_dot_product_flash_attention = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    set_seq_parallel_pg(ulysses, ring, rank, world)
    ranks = list(range(world))  # one sample on all ranks here (no data parallelism)
    _STATE.update(attention=LongContextAttention(attn_type=AttnType.TORCH_FLASH), sp_group=None, sp_size=world,
                  sp_rank=rank, ranks=ranks, ulysses_pg=PROCESS_GROUP.ULYSSES_PG, ring_pg=PROCESS_GROUP.RING_PG)
    return _STATE


def _pad_and_split(t: torch.Tensor, dim: int = 1):
    """raylight's ``_pad_and_split_for_sp``: zero-pad to a multiple of the group, keep this rank's chunk."""
    size = _STATE["sp_size"]
    orig = t.size(dim)
    pad = (size - orig % size) % size
    if pad:
        shape = list(t.shape)
        shape[dim] = pad
        t = torch.cat([t, torch.zeros(shape, dtype=t.dtype, device=t.device)], dim=dim)
    return torch.chunk(t, size, dim=dim)[_STATE["sp_rank"]], orig


def _all_gather(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    parts = [torch.empty_like(x) for _ in range(_STATE["sp_size"])]
    torch.distributed.all_gather(parts, x.contiguous(), group=_STATE["sp_group"])
    return torch.cat(parts, dim=dim)


def _attention(q, k, v, heads):
    """raylight's ``_attention_xfuser_unmask`` for [B, S, heads·d] inputs."""
    b, _, inner = q.shape
    d = inner // heads
    q, k, v = (t.view(b, -1, heads, d) for t in (q, k, v))
    out = _STATE["attention"](q, k, v)  # [B, S_local, heads, d]
    return out.reshape(b, -1, heads * d)


def usp_dit_forward(self, x, t, context, clip_fea=None, freqs=None, transformer_options={}, **kwargs):
    from comfy.ldm.wan.model import sinusoidal_embedding_1d
    x = self.patch_embedding(x.float()).to(x.dtype)
    grid_sizes = x.shape[2:]
    transformer_options["grid_sizes"] = grid_sizes
    x = x.flatten(2).transpose(1, 2)
    e = self.time_embedding(sinusoidal_embedding_1d(self.freq_dim, t.flatten()).to(dtype=x[0].dtype))
    e = e.reshape(t.shape[0], -1, e.shape[-1])
    e0 = self.time_projection(e).unflatten(2, (6, self.dim))
    # ======================== ADD SEQUENCE PARALLEL (as raylight) ========================= #
    x, orig_size = _pad_and_split(x, dim=1)
    freqs, _ = _pad_and_split(freqs, dim=1)
    context = self.text_embedding(context)
    context_img_len = None
    patches_replace = transformer_options.get("patches_replace", {})
    blocks_replace = patches_replace.get("dit", {})
    transformer_options["total_blocks"] = len(self.blocks)
    transformer_options["block_type"] = "double"
    for i, block in enumerate(self.blocks):
        transformer_options["block_index"] = i
        if ("double_block", i) in blocks_replace:
            def block_wrap(args, block=block):
                return {"img": block(args["img"], context=args["txt"], e=args["vec"], freqs=args["pe"],
                                     context_img_len=context_img_len, transformer_options=args["transformer_options"])}
            out = blocks_replace[("double_block", i)](
                {"img": x, "txt": context, "vec": e0, "pe": freqs, "transformer_options": transformer_options},
                {"original_block": block_wrap})
            x = out["img"]
        else:
            x = block(x, e=e0, freqs=freqs, context=context, context_img_len=context_img_len,
                      transformer_options=transformer_options)
    x = _all_gather(x, dim=1)[:, :orig_size, :]
    x = self.head(x, e)
    return self.unpatchify(x, grid_sizes)


def usp_self_attn_forward(self, x, freqs, transformer_options={}, **kwargs):
    from comfy.ldm.flux.math import apply_rope1
    b, s, n, d = *x.shape[:2], self.num_heads, self.head_dim
    q = apply_rope1(self.norm_q(self.q(x)).view(b, s, n, d), freqs)
    k = apply_rope1(self.norm_k(self.k(x)).view(b, s, n, d), freqs)
    x = _attention(q.view(b, s, n * d), k.view(b, s, n * d), self.v(x).view(b, s, n * d), heads=self.num_heads)
    return self.o(x.flatten(2))


def usp_t2v_cross_attn_forward(self, x, context, transformer_options={}, **kwargs):
    q = self.norm_q(self.q(x))
    k = self.norm_k(self.k(context))
    v = self.v(context)
    return self.o(_attention(q, k, v, heads=self.num_heads).flatten(2))


def inject(diffusion_model) -> None:
    """raylight's ``_inject_wan21`` for a T2V WanModel: per-instance method swaps."""
    from comfy.ldm.wan.model import WanT2VCrossAttention
    for block in diffusion_model.blocks:
        block.self_attn.forward = types.MethodType(usp_self_attn_forward, block.self_attn)
        if isinstance(block.cross_attn, WanT2VCrossAttention):
            block.cross_attn.forward = types.MethodType(usp_t2v_cross_attn_forward, block.cross_attn)
    diffusion_model.forward_orig = types.MethodType(usp_dit_forward, diffusion_model)


def injected(diffusion_model) -> bool:
    return "forward_orig" in vars(diffusion_model)
