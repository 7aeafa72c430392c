"""Controllers as pure torch: no UNet needed."""

import pytest
import torch

from promptedit.backbones.base import AttentionSite
from promptedit.control import (
    AttentionRefine,
    AttentionReplace,
    AttentionReweight,
    AttentionStore,
    LocalBlend,
    blend_latents,
    cross_replace_alpha,
    step_window,
)
from promptedit.errors import ParameterError

pytestmark = pytest.mark.unit

K = 8  # keys
# sites of an 8x8 latent's layers: at 1/2 (4x4 = 16 pixels) and at full size (64 pixels)
CROSS = AttentionSite("up_blocks.1.attentions.0.transformer_blocks.0.attn2", "cross", 2, "up", 1)
SELF = AttentionSite("up_blocks.1.attentions.0.transformer_blocks.0.attn1", "self", 2, "up", 1)
CROSS_FULL = AttentionSite("up_blocks.2.attentions.0.transformer_blocks.0.attn2", "cross", 1, "up", 2)
SELF_FULL = AttentionSite("up_blocks.2.attentions.0.transformer_blocks.0.attn1", "self", 1, "up", 2)


def probs(n, heads=2, pixels=16, keys=K, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, heads, pixels, keys, generator=g).softmax(-1)


def started(ctrl, n=2, steps=4, latent=(8, 8)):
    ctrl.begin(num_steps=steps, latent_size=latent, n_prompts=n)
    ctrl.begin_step(0)
    return ctrl


def test_step_window():
    assert step_window(0.8, 50) == (0, 40)
    assert step_window((0.2, 0.6), 10) == (2, 6)
    for bad in (1.5, (0.6, 0.2), (-0.1, 0.5), "x", float("nan")):
        with pytest.raises(ParameterError):
            step_window(bad, 10)


def test_cross_replace_alpha_windows_and_words():
    a = cross_replace_alpha(10, 2, K, 0.5, [{3: (0.0, 1.0)}, {}])
    assert a.shape == (10, 2, K)
    assert a[:5].eq(1).all() and a[5:, 1].eq(0).all()
    assert a[:, 0, 3].eq(1).all()  # the word's own window
    assert a[5:, 0, 2].eq(0).all()


def test_reweight_with_c_one_is_identity_and_otherwise_scales_one_column():
    base, rep = probs(1)[0], probs(1, seed=1)
    alpha = torch.ones(4, 1, K)
    ident = AttentionReweight(torch.ones(1, K), alpha)
    assert torch.equal(ident.replace_cross_attention(base, rep), base[None])
    eq = torch.ones(1, K)
    eq[0, 3] = -2.5
    out = AttentionReweight(eq, alpha).replace_cross_attention(base, rep)[0]
    assert torch.allclose(out[..., 3], -2.5 * base[..., 3])
    others = [i for i in range(K) if i != 3]
    assert torch.equal(out[..., others], base[..., others])


def test_reweight_composes_on_replace():
    base, rep = probs(1)[0], probs(1, seed=1)
    mapper = torch.eye(K)[None].roll(1, dims=2)  # target token j takes source token j-1
    alpha = torch.ones(4, 1, K)
    eq = torch.ones(1, K)
    eq[0, 5] = 3.0
    out = AttentionReweight(eq, alpha, prev=AttentionReplace(mapper, alpha)).replace_cross_attention(base, rep)[0]
    assert torch.allclose(out[..., 5], 3.0 * base[..., 4])
    assert torch.allclose(out[..., 6], base[..., 5])


def test_replace_forward_injects_through_mapper_within_window():
    mapper = torch.eye(K)[None]
    mapper[0, 2, 2], mapper[0, 2, 3], mapper[0, 3, 3] = 0, 0.5, 0.5  # arbitrary mapping
    alpha = cross_replace_alpha(4, 1, K, 0.5)
    ctrl = started(AttentionReplace(mapper, alpha))
    attn = probs(2)
    out = ctrl(attn, CROSS)
    assert torch.equal(out[0], attn[0])
    assert torch.allclose(out[1], torch.einsum("hpw,wn->hpn", attn[0], mapper[0]))
    ctrl.begin_step(3)  # outside the window: the target keeps its own maps
    assert not ctrl.wants(CROSS)
    assert torch.equal(ctrl(attn, CROSS), attn)


def test_controller_leaves_unconditional_half_alone():
    ctrl = started(AttentionReplace(torch.eye(K)[None], torch.ones(4, 1, K)))
    attn = probs(4)  # (uncond 2, cond 2)
    out = ctrl(attn, CROSS)
    assert torch.equal(out[:2], attn[:2])
    assert torch.allclose(out[3], attn[2])


def test_refine_keeps_added_tokens_own_attention():
    mapper = torch.tensor([[0, 1, 0, 2, 3, 4, 5, 6]])
    alphas = torch.tensor([[1, 1, 0, 1, 1, 1, 1, 1]], dtype=torch.float)
    ctrl = started(AttentionRefine(mapper, alphas, torch.ones(4, 1, K)))
    attn = probs(2)
    out = ctrl(attn, CROSS)
    assert torch.equal(out[1, ..., 2], attn[1, ..., 2])  # added token untouched
    assert torch.equal(out[1, ..., 3], attn[0, ..., 2])  # aligned token takes the source's map


def test_self_attention_injection_only_in_window_and_small_layers():
    ctrl = started(AttentionReplace(torch.eye(K)[None], torch.zeros(4, 1, K), self_replace_steps=(0, 2),
                                    self_replace_min_downsample=2), latent=(8, 8))
    attn = probs(2, pixels=16, keys=16)  # 4x4 layer: downsample 2
    out = ctrl(attn, SELF)
    assert torch.equal(out[1], attn[0])
    assert not ctrl.wants(SELF_FULL)  # full resolution: not injected
    ctrl.begin_step(2)
    assert not ctrl.wants(SELF)


def test_store_averages_over_steps_and_layers():
    store = started(AttentionStore(downsamples=[2]), n=1, latent=(8, 8))
    a, b = probs(1, seed=1), probs(1, seed=2)
    assert store.wants(CROSS) and not store.wants(CROSS_FULL) and not store.wants(SELF)
    store(a, CROSS)
    store.begin_step(1)
    store(b, CROSS)
    maps = store.maps(downsample=2, places=("up",))
    assert maps.shape == (1, 4, 4, K)
    assert torch.allclose(maps.reshape(1, 16, K), (a.mean(1) + b.mean(1)) / 2)
    with pytest.raises(ParameterError, match="1/2"):
        store.maps(downsample=4)


def test_local_blend_all_ones_mask_is_no_blend():
    x = torch.randn(3, 4, 8, 8)
    assert torch.equal(blend_latents(x, torch.ones(3, 1, 8, 8)), x)
    assert torch.equal(blend_latents(x, torch.zeros(3, 1, 8, 8)), x[:1].expand_as(x))
    blend = LocalBlend(torch.ones(3, K), threshold=-1.0, downsample=2)
    blend.observe(probs(3), (4, 4))
    assert torch.equal(blend(x, step=0), x)


def test_local_blend_mask_follows_the_words_attention():
    attn = torch.full((2, 1, 16, K), 1.0 / K)
    attn[:, :, 0, 2] = 5.0  # pixel (0, 0) attends to token 2
    alphas = torch.zeros(2, K)
    alphas[:, 2] = 1
    blend = LocalBlend(alphas, threshold=0.5, downsample=2, pool_size=1)
    blend.observe(attn, (4, 4))
    mask = blend.mask((4, 4))
    assert mask[1, 0, 0, 0] and mask[1].sum() == 1
    x = torch.randn(2, 4, 4, 4)
    blend.observe(attn, (4, 4))
    out = blend(x, step=0)
    assert torch.equal(out[1, :, 0, 0], x[1, :, 0, 0])
    assert torch.equal(out[1, :, 1:, :], x[0, :, 1:, :])


def test_local_blend_propagation_carries_the_words_map_over_its_object():
    """A word lighting one corner of a 2x2-cell object: the paper's mask (propagation 0) keeps that corner;
    one pass along the self-attention (pixels of the object attend to each other) covers the object, not more."""
    alphas = torch.zeros(2, K)
    alphas[:, 2] = 1
    cross = torch.full((2, 1, 16, K), 1.0 / K)  # a 4x4 grid of cells
    cross[:, :, :, 2] = 0.01
    cross[:, :, 0, 2] = 1.0  # only cell (0, 0) attends to the word
    obj = [0, 1, 4, 5]  # the object: cells (0, 0), (0, 1), (1, 0), (1, 1)
    self_attn = torch.zeros(2, 1, 16, 16)  # (n, heads, pixels, pixels): object cells attend to the object,
    self_attn[:, :, torch.tensor(obj)[:, None], torch.tensor(obj)[None, :]] = 0.25
    rest = [p for p in range(16) if p not in obj]  # the others to themselves
    self_attn[:, :, rest, rest] = 1.0
    masks = {}
    for propagation in (0, 1):
        blend = LocalBlend(alphas, threshold=0.3, downsample=1, pool_size=1, propagation=propagation)
        assert blend.wants(SELF_FULL) == (propagation > 0)
        blend.observe(cross, (4, 4))
        blend.observe(self_attn, (4, 4), is_cross=False)
        masks[propagation] = blend.mask((4, 4))[1, 0].flatten()
    assert masks[0].nonzero().flatten().tolist() == [0]
    assert masks[1].nonzero().flatten().tolist() == obj
    for bad in (-1, 11, 1.5, True):  # 11 and up: each pass a (pixels x pixels) product at every blended step
        with pytest.raises(ParameterError, match="propagation"):
            LocalBlend(alphas, propagation=bad)
    from promptedit.defaults import ModelDefaults
    from promptedit.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="p2p.blend_propagation"):
        ModelDefaults.from_dict({"p2p": {"blend_propagation": 1000000000}})


def test_local_blend_without_maps_at_its_resolution_fails_loudly():
    blend = LocalBlend(torch.ones(2, K), downsample=8, start_step=1)
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(blend(x, step=0), x)  # before its start step nothing is needed
    with pytest.raises(ParameterError, match="1/8"):
        blend(x, step=1)


def _linear_controllers():
    g = torch.Generator().manual_seed(5)
    mapper = torch.rand(2, K, K, generator=g)  # any matrix: the algebra must hold for every mapper
    ref_mapper = torch.tensor([[0, 1, 0, 2, 3, 4, 5, 6], [0, 1, 2, 3, 3, 5, 6, 7]])
    ref_alphas = torch.tensor([[1, 1, 0, 1, 1, 1, 1, 1], [1, 1, 1, 0, 1, 1, 1, 1]], dtype=torch.float)
    eq = torch.ones(2, K)
    eq[0, 3], eq[1, 5] = 2.5, -1.0
    alpha = cross_replace_alpha(4, 2, K, 1.0, [{2: (0.0, 0.5)}, {}])  # a per-token window: 0 at token 2 later
    return {
        "replace": AttentionReplace(mapper, alpha),
        "refine": AttentionRefine(ref_mapper, ref_alphas, alpha),
        "reweight": AttentionReweight(eq, alpha),
        "refine+reweight": AttentionReweight(eq, alpha, prev=AttentionRefine(ref_mapper, ref_alphas, alpha)),
    }


@pytest.mark.parametrize("kind", ["replace", "refine", "reweight", "refine+reweight"])
def test_linear_form_of_each_edit_equals_its_probability_edit(kind):
    """P*_k = P_0 A_k + P_k diag(b_k) (what ValueEdit applies through the values) equals forward() on the maps."""
    ctrl = started(_linear_controllers()[kind], n=3)
    attn = probs(3)
    for step in (0, 3):  # inside and after token 2's window
        ctrl.begin_step(step)
        edit = ctrl.value_edit(CROSS)
        assert edit is not None and edit.mix.shape == (2, K, K)
        keep = torch.zeros(2, K) if edit.keep is None else edit.keep
        linear = torch.einsum("hpi,tij->thpj", attn[0], edit.mix) + attn[1:] * keep[:, None, None, :]
        assert torch.allclose(linear, ctrl(attn, CROSS)[1:], atol=1e-6)


def test_value_edit_is_withheld_where_maps_are_needed_or_nothing_is_edited():
    alpha = cross_replace_alpha(4, 1, K, 0.5)
    blend = LocalBlend(torch.ones(2, K), downsample=2)
    ctrl = started(AttentionReplace(torch.eye(K)[None], alpha, local_blend=blend, self_replace_steps=(0, 2),
                                    self_replace_min_downsample=2))
    assert ctrl.value_edit(CROSS) is None  # local blend reads this layer's maps: explicit
    assert ctrl.value_edit(CROSS_FULL) is not None
    self_edit = ctrl.value_edit(SELF)
    assert self_edit is not None and self_edit.mix is None and self_edit.keep is None  # targets take P_0
    ctrl.fused = False
    assert ctrl.value_edit(CROSS_FULL) is None
    ctrl.fused = True
    ctrl.begin_step(3)
    assert not ctrl.wants(CROSS_FULL) and ctrl.value_edit(CROSS_FULL) is None


def test_local_blend_masks_from_the_maps_summed_over_every_step_so_far():
    """As the paper's code (its attention store's running sum): the mask at step 1 comes from steps 0 and 1 together,
    also from steps before blending starts; the current step's maps alone would give another mask."""
    import torch

    from promptedit.control import LocalBlend
    alphas = torch.zeros(2, 4)
    alphas[:, 1] = 1.0  # the blend word is key 1 in both prompts
    blend = LocalBlend(alphas, threshold=0.5, start_step=1, downsample=1, pool_size=1)
    assert blend.wants(CROSS_FULL)  # recorded from step 0, before blending starts
    left = torch.zeros(2, 1, 4, 4)  # (n, heads, pixels 2x2, keys): step 0 attends to the left column
    left[..., [0, 2], 1] = 1.0
    right = torch.zeros(2, 1, 4, 4)  # step 1: to the right column, a little less
    right[..., [1, 3], 1] = 0.8
    x = torch.arange(2 * 1 * 2 * 2, dtype=torch.float).reshape(2, 1, 2, 2)
    blend.observe(left, (2, 2))
    assert torch.equal(blend(x, 0), x) and blend.last_mask is None  # not started yet
    blend.observe(right, (2, 2))
    blend(x, 1)
    # the sum (1.0 left, 0.8 right) max-normalised: both columns pass 0.5; the right alone would pass alone
    assert blend.last_mask[1, 0].all()
    alone = LocalBlend(alphas, threshold=0.5, start_step=0, downsample=1, pool_size=1)
    alone.observe(right, (2, 2))
    alone(x, 0)
    assert alone.last_mask[1, 0, :, 1].all() and not alone.last_mask[1, 0, :, 0].any()


def test_step_windows_count_the_steps_the_fraction_says():
    """int(f · N) without float error: 0.58 of 50 steps is 29 (0.58 · 50 = 28.999… in floats)."""
    from promptedit.control import step_window

    assert step_window(0.58, 50) == (0, 29) and step_window((0.2, 0.8), 20) == (4, 16)
    assert step_window(0.8, 9) == (0, 7)  # the fraction of the steps, not the reference's int(0.8 · 10) = 8
