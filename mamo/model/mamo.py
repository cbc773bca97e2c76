"""The MAMO model: encoders, momentum teacher, heads, and the pre-training step's losses.

One ``forward`` computes, for a batch:
- the student on the unmasked pair (ITC features, ITM fusion on positives + hard negatives);
- ONE teacher (momentum) pass on the unmasked pair, serving ITC's momentum features and the
  MMM targets (top-K fusion layers, image-encoder patch features);
- the student on the jointly masked pair (MMM predictions).

Parameters: ``model.named_parameters()`` holds only trainable tensors. The momentum copy
lives in ``model.momentum`` as buffers (in ``state_dict`` with the ITC queue, so a
checkpoint resumes exactly; never in ``parameters()``).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mamo.model.config import LossConfig, ModelConfig
from mamo.model.fusion import FusionEncoder, FusionOutput
from mamo.model.heads import ClassifierHead, RegressionHead
from mamo.model.masking import apply_text_mask, block_mask, text_mask, to_device_async
from mamo.model.momentum import copy_into, ema_update, frozen_copy
from mamo.model.text import TextEncoder
from mamo.model.vit import VisionTransformer
from mamo.objectives import itc, itm, mmm


class Encoders(nn.Module):
    """What the momentum model copies: the three encoders and the ITC projections."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        impl, drop = cfg.attn_impl, cfg.dropout
        self.vision = VisionTransformer(cfg.vision, impl, drop)
        self.text = TextEncoder(cfg.text, impl, drop)
        self.fusion = FusionEncoder(cfg.fusion, cfg.text.width, cfg.vision.width, impl, drop)
        self.vision_proj = nn.Linear(cfg.vision.width, cfg.embed_dim)
        self.text_proj = nn.Linear(cfg.text.width, cfg.embed_dim)

    def encode_image(self, image: torch.Tensor, patch_mask: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        embeds = self.vision(image, patch_mask)
        return embeds, F.normalize(self.vision_proj(embeds[:, 0]), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        embeds = self.text(input_ids, attention_mask)
        return embeds, F.normalize(self.text_proj(embeds[:, 0]), dim=-1)


@torch.compiler.disable
def ramp(progress: float, share: float) -> float:
    """A linear warm-up factor: 0 at the start, 1 from ``share`` of training on."""
    return 1.0 if share <= 0 else min(1.0, progress / share)


def _seed_parts(seed: int) -> tuple[int, int, int]:
    """Independent sub-seeds for the image mask, the text mask and ITM sampling."""
    g = torch.Generator().manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)
    a, b, c = torch.randint(0, 2**62, (3,), generator=g).tolist()
    return a, b, c


class MAMO(nn.Module):
    def __init__(self, model_cfg: ModelConfig, loss_cfg: LossConfig, num_concepts: int = 0,
                 load_pretrained: bool = True):
        super().__init__()
        self.model_cfg, self.loss_cfg = model_cfg, loss_cfg
        self.progress = 1.0  # share of training done (set_progress); 1 = warm-ups over
        self.num_concepts = num_concepts
        width = model_cfg.text.width
        self.enc = Encoders(model_cfg)
        self.temp = nn.Parameter(torch.tensor(float(loss_cfg.temp_init)))
        self.itm_head = nn.Linear(width, 2)
        lc = loss_cfg
        # Heads exist only when their loss is on, so DDP never sees unused parameters.
        heads = _heads_used(lc)
        self.implicit_head = RegressionHead(width, width) if heads["implicit_head"] else None
        self.visual_head = RegressionHead(width, model_cfg.vision.width) if heads["visual_head"] else None
        self.text_head = None
        if heads["text_head"]:
            if text_head_kind(lc.text_target) == "concept":
                if num_concepts <= 0:
                    raise ValueError(f"loss_cfg.text_target={lc.text_target!r} needs num_concepts > 0 "
                                     "(the concept vocabulary size)")
                self.text_head = ClassifierHead(width, num_concepts)
            else:
                self.text_head = ClassifierHead(width, model_cfg.text.vocab_size)
        # text_target=concept_mlm: the token-MLM head at masked tokens without a concept
        self.mlm_head = ClassifierHead(width, model_cfg.text.vocab_size) if heads["mlm_head"] else None
        self.apply(_init_weights)
        self.load_reports: dict[str, Any] = {}  # LoadReport per encoder started from a checkpoint
        if load_pretrained:
            self._load_initial_weights()
        self.momentum = frozen_copy(self.enc)
        self.queue = itc.FeatureQueue(model_cfg.embed_dim, model_cfg.queue_size)

    # ---------------------------------------------------------------- weights
    def _load_initial_weights(self) -> None:
        from mamo.model import loading

        if self.model_cfg.text_init:
            self.load_reports["text"] = loading.load_bert(self, self.model_cfg.text_init)
        if self.model_cfg.vision_init:
            self.load_reports["vision"] = loading.load_vit(self, self.model_cfg.vision_init)

    def sync_momentum(self) -> None:
        """Copy the online weights into the momentum model (after loading weights)."""
        copy_into(self.enc, self.momentum)

    @torch.no_grad()
    def momentum_update(self) -> None:
        """EMA ``teacher <- m*teacher + (1-m)*student``; call once per optimizer step."""
        ema_update(self.enc, self.momentum, self.model_cfg.momentum)

    def set_attn_impl(self, impl: str) -> None:
        for m in self.modules():
            if hasattr(m, "set_attn_impl") and m is not self:
                m.set_attn_impl(impl)

    def no_weight_decay(self, name: str, param: torch.Tensor) -> bool:
        """Whether the trainer's AdamW leaves parameter ``name`` undecayed: the one rule of
        ``mamo.trainer.optim.is_no_decay`` (norms, embeddings, biases, tokens, temperature)."""
        from mamo.trainer.optim import is_no_decay

        owner_name = name.rpartition(".")[0]
        return is_no_decay(name, param, self.get_submodule(owner_name) if owner_name else self)

    # ---------------------------------------------------------------- encoder-only API
    def encode_image(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``image [B,3,H,W]`` -> ``(image_embeds [B,1+N,Dv], image_feat [B,E] L2-normed)``."""
        return self.enc.encode_image(image)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> ``(text_embeds [B,L,D], text_feat [B,E] L2-normed)``."""
        return self.enc.encode_text(input_ids, attention_mask)

    def fuse(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor,
             attention_mask: torch.Tensor, return_attention: bool = False) -> FusionOutput:
        """Fusion over ``[image; text]``; with ``return_attention`` the last layer's attention
        probabilities (in the graph) come back in ``.attention``."""
        return self.enc.fusion(image_embeds, text_embeds, attention_mask, return_attention)

    def itm_logits(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor,
                   attention_mask: torch.Tensor) -> torch.Tensor:
        """``[B, 2]`` (no match, match) logits."""
        return self.itm_head(self.fuse(image_embeds, text_embeds, attention_mask).text_cls)

    def itm_score(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor,
                  attention_mask: torch.Tensor) -> torch.Tensor:
        """``[B]`` log-odds that the pair matches (logit[match] - logit[no match])."""
        logits = self.itm_logits(image_embeds, text_embeds, attention_mask)
        return logits[:, 1] - logits[:, 0]

    def use_losses(self, loss_cfg: LossConfig) -> list[str]:
        """Train on with other losses (fine-tuning a loaded model): the heads they leave unused
        are dropped (returns their names), so DDP sees no unused parameters."""
        want = _heads_used(loss_cfg)
        if (want["text_head"] and self.text_head is not None
                and text_head_kind(loss_cfg.text_target) != text_head_kind(self.loss_cfg.text_target)):
            raise ValueError(f"loss.text_target={loss_cfg.text_target!r}: the model's text head predicts "
                             f"{self.loss_cfg.text_target!r} targets")
        dropped = []
        for name, used in want.items():
            if used and getattr(self, name) is None:
                raise ValueError(f"the losses need {name}, which the model was built without "
                                 "(it would start untrained)")
            if not used and getattr(self, name) is not None:
                setattr(self, name, None)
                dropped.append(name)
        self.loss_cfg = loss_cfg
        return dropped

    # ---------------------------------------------------------------- public scoring API
    @torch.no_grad()
    def similarity(self, images: torch.Tensor, texts: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[n_images, n_texts]`` ITC cosine similarities (``texts``: ``{"input_ids",
        "attention_mask"}``, as ``mamo.load``'s tokenizer returns). Deterministic in eval
        mode: no dropout, and the ITC queue is only updated by ``forward``."""
        device = self.temp.device
        _, image_feat = self.encode_image(images.to(device))
        _, text_feat = self.encode_text(texts["input_ids"].to(device), texts["attention_mask"].to(device))
        return image_feat.float() @ text_feat.float().T

    @torch.no_grad()
    def match_score(self, images: torch.Tensor, texts: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[n]`` ITM log-odds that image i matches text i (the aligned pairs)."""
        ids, mask = texts["input_ids"], texts["attention_mask"]
        if len(images) != len(ids):
            raise ValueError(f"match_score scores aligned pairs: {len(images)} images, {len(ids)} texts")
        device = self.temp.device
        image_embeds, _ = self.encode_image(images.to(device))
        text_embeds, _ = self.encode_text(ids.to(device), mask.to(device))
        return self.itm_score(image_embeds, text_embeds, mask.to(device)).float()

    # ---------------------------------------------------------------- training step
    def forward(self, batch: dict[str, Any], generator_seed: int | None = None) -> dict[str, torch.Tensor]:
        """The pre-training step's losses: the random draws (eager), then :meth:`step`."""
        return self.step(batch, self.draw(batch, generator_seed))

    @torch.compiler.disable  # seeded generators: drawn eagerly, handed to the step as tensors
    def draw(self, batch: dict[str, Any], generator_seed: int | None = None) -> dict[str, torch.Tensor]:
        """Every random draw of a step, on the batch's device, from ``generator_seed``: the
        image block mask, the text mask and the uniforms that pick the ITM hard negatives.
        What depends on them (:meth:`step`) has fixed shapes and no host sync, so
        ``torch.compile`` can capture it whole."""
        lc = self.loss_cfg
        image, ids = batch["image"], batch["input_ids"]
        if generator_seed is None:
            generator_seed = int(torch.randint(0, 2**62, (1,)).item())
        seed_img, seed_txt, seed_itm = _seed_parts(generator_seed)
        ps = self.model_cfg.vision.patch_size
        grid = (image.shape[-2] // ps, image.shape[-1] // ps)
        gen = torch.Generator(device=image.device).manual_seed(seed_itm)
        labels = batch.get("concept_labels")
        content = labels >= 0 if labels is not None else None  # tokens with a concept label
        return {
            "patch_mask": to_device_async(block_mask(image.shape[0], grid, lc.image_mask_ratio,
                                                     lc.image_mask_min_block, seed_img), image.device),
            "text_mask": text_mask(ids, batch["attention_mask"], lc.text_mask_ratio, seed_txt,
                                   content, lc.text_mask_content_share),
            # in (0, 1]: inverse-CDF sampling never lands on a zero-weight candidate
            "itm_uniform": 1.0 - torch.rand(2, image.shape[0], generator=gen, device=image.device),
            # the warm-ups as tensors: a changing Python float would recompile a compiled step
            "mmm_weight": torch.tensor(lc.w_mmm * ramp(self.progress, lc.mmm_warmup), device=image.device),
            "alpha": torch.tensor(lc.alpha * ramp(self.progress, lc.alpha_warmup), device=image.device),
        }

    def set_progress(self, step: int, total: int) -> None:
        """Where training stands (``step`` of ``total``), for the warm-ups of w_mmm and alpha;
        the trainer calls it before each step, so a resumed run continues the same ramps."""
        self.progress = step / max(total, 1)

    def step(self, batch: dict[str, Any], draws: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The losses of one step given its draws (:meth:`draw`)."""
        lc = self.loss_cfg
        image = batch["image"]
        ids = batch["input_ids"]
        am = batch["attention_mask"]

        with torch.no_grad():
            self.temp.clamp_(lc.temp_min, lc.temp_max)
        out: dict[str, torch.Tensor] = {}
        total = image.new_zeros((), dtype=torch.float32)

        need_student = lc.w_itc > 0 or lc.w_itm > 0
        need_teacher = lc.w_itc > 0 or lc.w_mmm > 0

        # Teacher: one pass on the unmasked pair.
        t_img = t_img_feat = t_txt_feat = t_fused = None
        if need_teacher:
            with torch.no_grad():
                t_img, t_img_feat = self.momentum.encode_image(image)
                t_txt, t_txt_feat = self.momentum.encode_text(ids, am)
                if self.implicit_head is not None:
                    t_fused = self.momentum.fusion(t_img, t_txt, am)

        if need_student:
            s_img, s_img_feat = self.encode_image(image)
            s_txt, s_txt_feat = self.encode_text(ids, am)

        if lc.w_itc > 0:
            loss_itc, img_m_all, txt_m_all = itc.itc_loss(
                s_img_feat, s_txt_feat, t_img_feat, t_txt_feat, self.queue, self.temp,
                draws["alpha"] if lc.alpha > 0 else 0.0)
            out["itc"] = loss_itc.detach()
            total = total + lc.w_itc * loss_itc

        if lc.w_itm > 0 and ids.shape[0] >= 2:
            neg_text, neg_image, _ = itm.global_hard_negatives(
                s_img_feat, s_txt_feat, ids, image, self.temp, uniform=draws["itm_uniform"])
            # Candidates are every rank's pairs; this rank's part keeps its graph.
            img_pool = itc.gather_with_local_grad(s_img)
            txt_pool = itc.gather_with_local_grad(s_txt)
            am_pool = itc.gather_no_grad(am)
            loss_itm, acc = itm.itm_loss(self.itm_logits, s_img, s_txt, am, neg_text, neg_image,
                                         img_pool, txt_pool, am_pool)
            out["itm"] = loss_itm.detach()
            out["itm_acc"] = acc
            total = total + lc.w_itm * loss_itm

        if lc.w_mmm > 0:
            loss_mmm = self._mmm(batch, image, ids, am, t_img, t_fused, draws["patch_mask"], draws["text_mask"], out)
            out["mmm"] = loss_mmm.detach()
            total = total + draws["mmm_weight"] * loss_mmm

        if self.training and lc.w_itc > 0:
            self.queue.enqueue(img_m_all, txt_m_all)
        out["loss"] = total
        out["temp"] = self.temp.detach().clone()
        return out

    def _mmm(self, batch: dict[str, Any], image: torch.Tensor, ids: torch.Tensor,
             am: torch.Tensor, t_img: torch.Tensor, t_fused: FusionOutput | None,
             patch_mask: torch.Tensor, tmask: torch.Tensor, out: dict[str, torch.Tensor]) -> torch.Tensor:
        lc = self.loss_cfg
        ps = self.model_cfg.vision.patch_size
        grid = (image.shape[-2] // ps, image.shape[-1] // ps)
        masked_ids = apply_text_mask(ids, tmask)

        s_img, _ = self.encode_image_masked(image, patch_mask)
        s_txt, _ = self.encode_text(masked_ids, am)
        fused = self.fuse(s_img, s_txt, am)
        nv = fused.num_image_tokens
        impl = lc.loss_impl

        # Static bounds on the masked positions per sample, so the heads see fixed shapes:
        # exactly this many patches per image (block_mask), at most this many text tokens.
        per_image = int(round(lc.image_mask_ratio * grid[0] * grid[1]))
        per_text = max(1, int(round((ids.shape[1] - 2) * lc.text_mask_ratio))) if lc.text_mask_ratio > 0 else 0
        loss = fused.hidden.new_zeros((), dtype=torch.float32)
        if self.implicit_head is not None:
            target = mmm.implicit_target(t_fused.layers, lc.implicit_layers(self.model_cfg.fusion.depth))
            positions = mmm.position_mask(patch_mask, tmask)
            loss_imp = mmm.implicit_loss(fused.hidden, target, positions, self.implicit_head,
                                         lc.implicit_loss, lc.implicit_beta, impl, per_image + per_text)
            out["mmm_implicit"] = loss_imp.detach()
            loss = loss + lc.lambda_implicit * loss_imp
        if self.visual_head is not None:
            loss_v = mmm.visual_loss(fused.hidden[:, :nv], t_img, patch_mask, self.visual_head, impl, per_image)
            out["mmm_visual"] = loss_v.detach()
            loss = loss + lc.lambda_v * loss_v
        if self.text_head is not None and lc.text_target == "concept_mlm":
            # concept head at concept-labelled masked tokens, MLM head at the others; each
            # term a mean over its own positions, the MLM one weighted by lambda_t_mlm
            loss_c, loss_m = mmm.concept_mlm_losses(fused.hidden[:, nv:], batch["concept_labels"], ids, tmask,
                                                    self.text_head, self.mlm_head, impl, per_text)
            out["mmm_concept"] = loss_c.detach()
            loss_t = loss_c
            if loss_m is not None:
                out["mmm_mlm"] = loss_m.detach()
                loss_t = loss_t + lc.lambda_t_mlm * loss_m
            loss = loss + lc.lambda_t * loss_t
        elif self.text_head is not None:
            if lc.text_target == "concept":
                labels, key = batch["concept_labels"], "mmm_concept"
            else:
                labels, key = ids, "mmm_mlm"
            loss_t = mmm.text_class_loss(fused.hidden[:, nv:], labels, tmask, self.text_head, impl, per_text)
            out[key] = loss_t.detach()
            loss = loss + lc.lambda_t * loss_t
        return loss

    def encode_image_masked(self, image: torch.Tensor, patch_mask: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.enc.encode_image(image, patch_mask)


def _heads_used(lc: LossConfig) -> dict[str, bool]:
    """Which MMM heads the losses train."""
    return {"implicit_head": lc.w_mmm > 0 and lc.lambda_implicit > 0,
            "visual_head": lc.w_mmm > 0 and lc.lambda_v > 0,
            "text_head": lc.w_mmm > 0 and lc.lambda_t > 0 and lc.text_target != "none",
            "mlm_head": (lc.w_mmm > 0 and lc.lambda_t > 0 and lc.text_target == "concept_mlm"
                         and lc.lambda_t_mlm > 0)}


def text_head_kind(text_target: str) -> str | None:
    """What ``text_head`` predicts under a text target: "concept" (concept and concept_mlm,
    whose MLM fallback is the separate ``mlm_head``), "mlm", or None (``none``)."""
    return {"concept": "concept", "concept_mlm": "concept", "mlm": "mlm"}.get(text_target)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
