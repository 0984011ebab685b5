"""DINO transformer: deformable encoder, two-stage mixed query selection, decoder with look-forward-twice.

Built on mmdet 2.28's ``DeformableDetrTransformer`` (encoder, proposal generation, valid ratios, reference points)
and mmcv's transformer layers / multi-scale deformable attention; only what DINO changes is written here.
"""
from __future__ import annotations

import math

import torch
from mmcv.cnn.bricks.registry import TRANSFORMER_LAYER_SEQUENCE
from mmdet.models.utils.builder import TRANSFORMER
from mmdet.models.utils.transformer import DeformableDetrTransformer, DeformableDetrTransformerDecoder, inverse_sigmoid
from torch import Tensor, nn


def coordinate_to_encoding(coords: Tensor, num_feats: int = 128, temperature: int = 10000,
                           scale: float = 2 * math.pi) -> Tensor:
    """Sine embedding of normalised coordinates ``(..., 2 or 4)`` -> ``(..., num_feats * 2 or 4)``.

    Output order is (y, x[, w, h]); within each coordinate, even channels are sin and odd channels cos of
    ``v * scale / temperature ** (2 * (t // 2) / num_feats)``.
    """
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=coords.device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_feats)

    def embed(v: Tensor) -> Tensor:
        pos = v[..., None] * scale / dim_t
        return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2)

    parts = [embed(coords[..., 1]), embed(coords[..., 0])]
    if coords.size(-1) == 4:
        parts += [embed(coords[..., 2]), embed(coords[..., 3])]
    elif coords.size(-1) != 2:
        raise ValueError(f'coordinate_to_encoding expects 2 or 4 coordinates, got {coords.size(-1)}')
    return torch.cat(parts, dim=-1)


@TRANSFORMER_LAYER_SEQUENCE.register_module()
class DinoTransformerDecoder(DeformableDetrTransformerDecoder):
    """Deformable decoder whose query positions come from the current boxes (``ref_point_head`` on their sine
    embedding) and whose intermediate references are kept un-detached for the head ("look forward twice")."""

    def __init__(self, *args, with_rp_noise: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.with_rp_noise = with_rp_noise
        self._init_layers()

    def _init_layers(self) -> None:
        self.ref_point_head = nn.Sequential(
            nn.Linear(self.embed_dims * 2, self.embed_dims), nn.ReLU(), nn.Linear(self.embed_dims, self.embed_dims))
        self.norm = nn.LayerNorm(self.embed_dims)

    def forward(self, query: Tensor, *args, reference_points: Tensor = None, valid_ratios: Tensor = None,
                reg_branches: nn.ModuleList = None, **kwargs) -> tuple[Tensor, Tensor]:
        """query (Q, B, C); reference_points (B, Q, 4) in [0, 1].

        Returns the normed outputs of every layer (L, Q, B, C) and the references (L + 1, B, Q, 4): index 0 is the
        input reference, index l + 1 the box refined by layer l (not detached).
        """
        if reference_points.size(-1) != 4:
            raise ValueError('DinoTransformerDecoder needs 4-d (box) reference points')
        output = query
        intermediate = []
        intermediate_reference_points = [reference_points]
        for lid, layer in enumerate(self.layers):
            reference_points_input = reference_points[:, :, None] * torch.cat([valid_ratios, valid_ratios], -1)[:, None]
            if self.with_rp_noise and self.training:
                reference_points_input = reference_points_input + (torch.rand_like(reference_points_input) - 0.5) * 0.02
            query_sine_embed = coordinate_to_encoding(reference_points_input[:, :, 0, :], self.embed_dims // 2)
            query_pos = self.ref_point_head(query_sine_embed).permute(1, 0, 2)
            output = layer(output, *args, query_pos=query_pos, reference_points=reference_points_input, **kwargs)
            output_bqc = output.permute(1, 0, 2)
            if reg_branches is not None:
                # refinement uses the un-normed output; the head predicts from the normed one
                new_reference_points = (reg_branches[lid](output_bqc)
                                        + inverse_sigmoid(reference_points, eps=1e-3)).sigmoid()
                reference_points = new_reference_points.detach()
            else:
                new_reference_points = reference_points
            if self.return_intermediate:
                intermediate.append(self.norm(output))
                intermediate_reference_points.append(new_reference_points)
        if self.return_intermediate:
            return torch.stack(intermediate), torch.stack(intermediate_reference_points)
        return self.norm(output)[None], torch.stack(intermediate_reference_points[:1] + [reference_points])


@TRANSFORMER.register_module()
class DinoTransformer(DeformableDetrTransformer):
    """Two-stage deformable transformer of DINO: top-k encoder proposals give the initial boxes (positional
    queries), learnt ``query_embed`` gives the content queries, denoising queries are prepended in training."""

    def init_layers(self) -> None:
        """Own layers (no ``pos_trans``/``reference_points`` of the parent)."""
        # drawn at construction (the parent's init_weights redraws it the same way): an uninitialised
        # torch.Tensor here held whatever memory it got, NaN at times, in any model built without init_weights
        self.level_embeds = nn.Parameter(torch.randn(self.num_feature_levels, self.embed_dims))
        self.enc_output = nn.Linear(self.embed_dims, self.embed_dims)
        self.enc_output_norm = nn.LayerNorm(self.embed_dims)
        self.query_embed = nn.Embedding(self.two_stage_num_proposals, self.embed_dims)

    def init_weights(self) -> None:
        if not self.as_two_stage:
            raise ValueError('DinoTransformer needs as_two_stage=True (DINOHead sets it)')
        super().init_weights()
        nn.init.normal_(self.query_embed.weight.data)

    def level_spatial_shapes(self, mlvl_feats: list[Tensor]) -> Tensor:
        """(num_levels, 2) long tensor of the levels' (h, w); checks that the levels hold enough tokens for the
        two-stage top-k. A method of its own so that export can build it from traced shapes instead."""
        shapes = [tuple(feat.shape[-2:]) for feat in mlvl_feats]
        num_tokens = sum(h * w for h, w in shapes)
        if num_tokens < self.two_stage_num_proposals:
            raise ValueError(f'two_stage_num_proposals={self.two_stage_num_proposals} exceeds the {num_tokens} '
                             f'encoder tokens of this input (feature maps {[list(s) for s in shapes]}); use a '
                             'larger image or fewer proposals')
        return torch.as_tensor(shapes, dtype=torch.long, device=mlvl_feats[0].device)

    def forward(self, mlvl_feats: list[Tensor], mlvl_masks: list[Tensor], query_embed: Tensor | None,
                mlvl_pos_embeds: list[Tensor], dn_label_query: Tensor | None = None,
                dn_bbox_query: Tensor | None = None, attn_mask: Tensor | None = None,
                reg_branches: nn.ModuleList = None, cls_branches: nn.ModuleList = None,
                **kwargs) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Returns (inter_states (L, Q, B, C), inter_references (L + 1, B, Q, 4), topk_score (B, K, num_cls),
        topk_anchor (B, K, 4)) with K = two_stage_num_proposals and Q = dn pad size + K."""
        assert query_embed is None, 'DinoTransformer makes its own queries'
        feat_flatten, mask_flatten, lvl_pos_embed_flatten = [], [], []
        for lvl, (feat, mask, pos_embed) in enumerate(zip(mlvl_feats, mlvl_masks, mlvl_pos_embeds)):
            feat_flatten.append(feat.flatten(2).transpose(1, 2))
            mask_flatten.append(mask.flatten(1))
            lvl_pos_embed_flatten.append(pos_embed.flatten(2).transpose(1, 2) + self.level_embeds[lvl].view(1, 1, -1))
        feat_flatten = torch.cat(feat_flatten, 1)
        mask_flatten = torch.cat(mask_flatten, 1)
        lvl_pos_embed_flatten = torch.cat(lvl_pos_embed_flatten, 1)
        spatial_shapes = self.level_spatial_shapes(mlvl_feats)
        level_start_index = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
        valid_ratios = torch.stack([self.get_valid_ratio(m) for m in mlvl_masks], 1)
        reference_points = self.get_reference_points(spatial_shapes, valid_ratios, device=feat_flatten.device)

        memory = self.encoder(
            query=feat_flatten.permute(1, 0, 2),
            key=None,
            value=None,
            query_pos=lvl_pos_embed_flatten.permute(1, 0, 2),
            query_key_padding_mask=mask_flatten,
            spatial_shapes=spatial_shapes,
            reference_points=reference_points,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios,
            **kwargs)
        memory = memory.permute(1, 0, 2)  # (B, S, C)
        bs, num_tokens, _ = memory.shape

        # two-stage: score every encoder token, keep the top-K as initial boxes
        output_memory, output_proposals = self.gen_encoder_output_proposals(memory, mask_flatten, spatial_shapes)
        enc_outputs_class = cls_branches[self.decoder.num_layers](output_memory)
        enc_outputs_coord_unact = reg_branches[self.decoder.num_layers](output_memory) + output_proposals
        topk = self.two_stage_num_proposals
        topk_indices = torch.topk(enc_outputs_class.max(-1)[0], topk, dim=1)[1]
        num_cls = enc_outputs_class.size(-1)
        topk_score = torch.gather(enc_outputs_class, 1, topk_indices.unsqueeze(-1).repeat(1, 1, num_cls))
        topk_coords_unact = torch.gather(enc_outputs_coord_unact, 1, topk_indices.unsqueeze(-1).repeat(1, 1, 4))
        topk_anchor = topk_coords_unact.sigmoid()  # with grad: trained by the encoder (interm) loss
        topk_coords_unact = topk_coords_unact.detach()

        query = self.query_embed.weight[None].repeat(bs, 1, 1)
        if dn_label_query is not None:
            query = torch.cat([dn_label_query, query], dim=1)
        if dn_bbox_query is not None:
            reference_points = torch.cat([dn_bbox_query, topk_coords_unact], dim=1)
        else:
            reference_points = topk_coords_unact
        reference_points = reference_points.sigmoid()

        inter_states, inter_references = self.decoder(
            query=query.permute(1, 0, 2),
            key=None,
            value=memory.permute(1, 0, 2),
            attn_masks=[attn_mask, None],
            key_padding_mask=mask_flatten,
            reference_points=reference_points,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios,
            reg_branches=reg_branches,
            **kwargs)
        return inter_states, inter_references, topk_score, topk_anchor
