"""The word-identity term of the embedded model's recipe (train/words.py)."""

import math

import pytest
import torch

from promptedit.train.shapes import TrainConfig, train
from promptedit.train.words import token_identity_loss, word_positions
from promptedit.testing import TINY_TRAIN as TINY


@pytest.mark.unit
def test_word_positions_leave_out_start_end_and_padding():
    ids = torch.tensor([[0, 5, 6, 1, 1], [0, 1, 1, 1, 1]])  # start 0, end = padding 1
    assert word_positions(ids, {0, 1}).tolist() == [[False, True, True, False, False], [False] * 5]


@pytest.mark.unit
def test_identity_loss_is_a_cosine_classifier_over_the_words():
    classifier = torch.eye(6, 8)  # six orthonormal directions in 8 dimensions
    ids = torch.tensor([[0, 2, 3, 1]])
    words = word_positions(ids, {0, 1})
    hidden = torch.zeros(1, 4, 8)
    hidden[0, 1], hidden[0, 2] = 3.0 * classifier[2], 0.5 * classifier[3]  # each word on its own direction
    tau = 4.0
    floor = math.log(1 + 5 * math.exp(-tau))  # own logit τ, five others 0
    assert token_identity_loss(hidden, ids, words, classifier, tau).item() == pytest.approx(floor, rel=1e-5)
    # only directions count: scaling the outputs or the classifier changes nothing
    assert token_identity_loss(7 * hidden, ids, words, 0.1 * classifier, tau).item() == pytest.approx(floor, rel=1e-5)
    # two words collapsed onto one direction cannot both be named: at least log 2 on average
    collapsed = hidden.clone()
    collapsed[0, 2] = classifier[2] + classifier[3] * 1e-3
    assert token_identity_loss(collapsed, ids, words, classifier, tau).item() > 0.5 * math.log(2) + floor
    # no words (every caption dropped): zero, and still differentiable
    empty = torch.zeros(1, 4, 8, requires_grad=True)
    nothing = torch.zeros(1, 4, dtype=torch.bool)
    loss = token_identity_loss(empty, ids, nothing, classifier)
    loss.backward()
    assert loss.item() == 0.0 and empty.grad is not None
    with pytest.raises(ValueError):
        token_identity_loss(hidden, ids, words, classifier, temperature=0.0)


def _shape_word_cosine(model) -> float:
    """Mean cosine between the encoder outputs at the shape word of captions that differ only there."""
    prompts = [f"a red {s} on a white background" for s in ("circle", "square", "triangle", "star", "heart")]
    ids = model.tokenizer(prompts, padding="max_length", max_length=32, return_tensors="pt").input_ids
    with torch.no_grad():
        h = torch.nn.functional.normalize(model.text_encoder(ids)[0][:, 3], dim=-1)  # (5, D) at "<shape>"
    cos = h @ h.T
    return cos[~torch.eye(5, dtype=torch.bool)].mean().item()


@pytest.mark.integration
def test_training_with_the_identity_term_keeps_the_shape_words_apart(tmp_path):
    """The term is logged, pulls the outputs of different shape words apart, and its classifier is
    checkpointed (a resumed run picks it up)."""
    base = dict(TINY, steps=30, checkpoint_every=100, batch_size=8, lr=3e-3, ema_decay=0.0, grounding_weight=0.0,
                identity_weight=0.0)
    off = train(TrainConfig(**base), tmp_path / "off", progress=False, log=lambda m: None)
    on = train(TrainConfig(**dict(base, identity_weight=1.0)), tmp_path / "on", progress=False, log=lambda m: None)
    assert "identity" in on.training_info["history"][-1] and "identity" not in off.training_info["history"][-1]
    c_on, c_off = _shape_word_cosine(on), _shape_word_cosine(off)
    assert c_on < c_off - 0.3, (c_off, c_on)  # measured: 0.97 without, 0.30 with
    state = torch.load(tmp_path / "on" / "checkpoint.pt", map_location="cpu", weights_only=False)
    head = state["identity_head"]
    assert head.shape == (len(on.tokenizer), 32)
    more = train(TrainConfig(**dict(base, steps=31, identity_weight=1.0)), tmp_path / "on", progress=False,
                 log=lambda m: None)
    assert more.training_info["steps"] == 31
    moved = torch.load(tmp_path / "on" / "checkpoint.pt", map_location="cpu", weights_only=False)["identity_head"]
    assert 0 < (moved - head).abs().max() < 0.01  # one more step from the saved classifier, not a fresh one
