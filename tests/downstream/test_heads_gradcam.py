"""Heads' shapes and losses; Grad-CAM on the real tiny model; box ranking by heat; PNG."""
import numpy as np
import torch

from mamo.downstream.gradcam import box_scores, gradcam, save_heatmap_png
from mamo.downstream.heads import NLVR2Head, VQAHead


def test_heads_shapes_and_loss():
    torch.manual_seed(0)
    h = VQAHead(16, 5)
    logits = h(torch.randn(3, 16))
    assert logits.shape == (3, 5)
    t = torch.zeros(3, 5); t[:, 1] = 1.0
    loss = VQAHead.loss(logits, t)
    loss.backward()
    assert torch.isfinite(loss) and h.mlp.net[0].weight.grad is not None
    n = NLVR2Head(16)
    assert n(torch.randn(4, 16), torch.randn(4, 16)).shape == (4, 2)


def test_box_scores_rank_the_hot_box_first():
    heat = torch.zeros(8, 8)
    heat[5:7, 1:3] = 1.0  # hot area: x in [1/8, 3/8], y in [5/8, 7/8]
    boxes = [[0.0, 0.0, 0.3, 0.3], [0.12, 0.62, 0.38, 0.88], [0.6, 0.6, 0.95, 0.95]]
    s = box_scores(heat, boxes)
    assert int(np.argmax(s)) == 1
    # sqrt-area normalisation: a huge box covering the hot area does not automatically win
    assert box_scores(heat, [[0, 0, 1, 1], boxes[1]])[1] > box_scores(heat, [[0, 0, 1, 1]])[0]


def test_gradcam_on_tiny_model(tmp_path):
    from mamo.model import MAMO, loss_config, model_config

    torch.manual_seed(0)
    m = MAMO(model_config("tiny"), loss_config(["w_mmm=0", "text_target=none"])).eval()
    img = torch.randn(2, 3, 64, 64)
    ids = torch.tensor([[101, 2417, 4418, 102, 0], [101, 2630, 2675, 3340, 102]])
    mask = (ids > 0).long()
    with torch.no_grad():
        ie, _ = m.encode_image(img)
        te, _ = m.encode_text(ids, mask)
    heat = gradcam(m, ie, te, mask, "itm")
    assert heat.shape == (2, 8, 8) and (heat >= 0).all() and heat.sum() > 0
    att = gradcam(m, ie, te, mask, "attention")
    assert att.shape == (2, 8, 8)
    # padding must not matter: sample 0 alone without its padding gives the same map
    heat0 = gradcam(m, ie[:1], te[:1, :4], mask[:1, :4], "itm")
    assert torch.allclose(heat0[0], heat[0], atol=1e-5)
    png = save_heatmap_png(tmp_path / "h.png", np.zeros((64, 64, 3), np.uint8), heat[0], "red circle",
                           [0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.8, 0.8])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
