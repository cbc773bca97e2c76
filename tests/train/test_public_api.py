"""The public API of the README (docs/api.md), run as written against the session's tiny
trained run (the ``reference`` fixture: no extra training), and the one loader behind it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_helpers import REPO, env


@pytest.fixture(scope="module")
def paths(dataset, tmp_path_factory) -> list[Path]:
    """Two images of the training data as JPEG files."""
    from mamo.evaluation.data import iter_samples

    out = tmp_path_factory.mktemp("api-images")
    files = []
    for (key, jpg, _, _), _ in zip(iter_samples(dataset), range(2)):
        files.append(out / f"{key}.jpg")
        files[-1].write_bytes(jpg)
    return files


def test_readme_example(reference, paths):
    # --- the README example, verbatim but for the run dir ---
    import mamo
    from PIL import Image

    model, preprocess, tokenizer = mamo.load(str(reference))   # a run dir or one of its checkpoint dirs
    images = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths])
    texts = tokenizer(["a red circle left of a blue square", "two small crosses"])
    sim = model.similarity(images, texts)      # [n_images, n_texts] ITC cosine similarities
    score = model.match_score(images, texts)   # [n] ITM log-odds of the aligned pairs
    # ---
    assert sim.shape == (2, 2) and score.shape == (2,)
    assert not model.training
    assert torch.all(sim.abs() <= 1 + 1e-5)
    # deterministic: no dropout, no queue update
    state = {k: v.clone() for k, v in model.queue.state_dict().items()}
    assert torch.equal(model.similarity(images, texts), sim)
    assert torch.equal(model.match_score(images, texts), score)
    assert all(torch.equal(v, state[k]) for k, v in model.queue.state_dict().items())


def test_similarity_agrees_with_the_evaluation(reference, paths, dataset):
    import mamo
    from PIL import Image

    from mamo.evaluation.data import load_eval_set
    from mamo.evaluation.scoring import ModelScorer
    from mamo.trainer.config import load_run_config

    model, preprocess, tokenizer = mamo.load(reference / "final")
    cfg = load_run_config(str(reference / "config.yaml"))
    # preprocess is the evaluation's image transform, with the run's data settings
    evalset = load_eval_set(dataset, cfg.model.vision.image_size, cfg.data.mean, cfg.data.std, max_items=2,
                            crop_fraction=cfg.data.augment.eval_crop_fraction)
    images = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths])
    assert torch.allclose(images, evalset.images, atol=1e-6)
    assert tokenizer.max_len == cfg.data.max_text_len
    captions = evalset.captions
    scorer = ModelScorer(model, tokenizer)
    img_emb, img_feat = scorer.images(evalset.images)
    txt_emb, txt_mask, txt_feat = scorer.texts(captions)
    sim = model.similarity(images, tokenizer(captions))
    assert torch.allclose(sim, img_feat @ txt_feat.T, atol=1e-5)
    score = model.match_score(images, tokenizer(captions))
    assert torch.allclose(score, torch.from_numpy(scorer.itm(img_emb, txt_emb, txt_mask)), atol=1e-4)


def test_one_loader_for_every_kind_of_path(reference):
    from mamo.loader import load_model, resolve

    final = resolve(reference)
    assert final.dir.path == reference / "final" and final.run.path == reference
    assert final.num_concepts > 0 and final.model.text_init is None
    step = sorted((reference / "checkpoints").glob("step_*"))[-1]
    for source in (step, step / "model.safetensors"):
        model, ckpt = load_model(source)
        assert ckpt.dir.path == step and ckpt.run.path == reference and ckpt.config == reference / "config.yaml"
        assert not model.training
    with pytest.raises(FileNotFoundError, match="no model.safetensors there"):
        resolve(reference / "nowhere")


def test_a_triton_trained_model_loads_off_cuda(reference):
    from dataclasses import replace

    from mamo.loader import build, resolve

    ckpt = resolve(reference)
    model = build(replace(ckpt, model=replace(ckpt.model, attn_impl="triton")), "cpu")
    assert model.model_cfg.attn_impl == "sdpa"


def test_backbone_from_a_pretraining_run_drops_the_mmm_heads(reference):
    from mamo.downstream.backbone import build_backbone
    from mamo.model.config import LossConfig, ModelConfig

    model, model_cfg = build_backbone(ModelConfig(), LossConfig(w_mmm=0.0, text_target="none"), reference)
    assert model_cfg.text.width == 64  # the run's architecture, not the configured one
    assert model.text_head is None and model.implicit_head is None and model.visual_head is None
    assert model.loss_cfg.w_mmm == 0.0 and model.training


def test_import_mamo_stays_light_and_load_is_lazy():
    code = "import sys, mamo; f = mamo.load; assert 'torch' not in sys.modules, 'torch'; assert callable(f)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env())


def test_readme_block_runs_as_written(reference, paths):
    """The README's own code block (read from README.md, so it cannot drift from this test)."""
    import re

    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Using a trained model", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert 'mamo.load("runs/demo/tiny")' in code
    scope = {"paths": paths}
    exec(compile(code.replace('"runs/demo/tiny"', repr(str(reference))), "README.md", "exec"), scope)
    assert scope["sim"].shape == (len(paths), 2) and scope["score"].shape == (len(paths),)
