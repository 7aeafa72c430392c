"""Backbones and the family registry: attention sites of the tiny SD and SDXL UNets, registry dispatch on
``_class_name``, and controllers selecting layers by site."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from promptedit.backbones.base import AttentionSite, nearest_grid
from promptedit.backbones.unet import UNetBackbone, unet_site
from promptedit.control import AttentionControl, AttentionStore, LocalBlend
from promptedit.errors import ModelLoadError, ParameterError
from promptedit.families import FAMILIES, family_of_index

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tiny_xl():
    from promptedit.testing import tiny_sdxl_components

    return tiny_sdxl_components(0)


# ----------------------------------------------------------------------------- AttentionSite


@pytest.mark.parametrize("kwargs, word", [
    (dict(kind="both"), "kind"), (dict(grid=3), "grid"), (dict(grid=0), "grid"), (dict(grid=True), "grid"),
    (dict(place="left"), "place"), (dict(index=-1), "index"), (dict(index=1.5), "index"),
])
def test_attention_site_is_validated_in_one_line(kwargs, word):
    site = dict(name="x.attn2", kind="cross", grid=2, place="up", index=1)
    with pytest.raises(ParameterError, match=word) as e:
        AttentionSite(**{**site, **kwargs})
    assert "\n" not in str(e.value) and "x.attn2" in str(e.value)


def test_attention_site_says_which_keys_are_text_and_which_image():
    assert AttentionSite("a", "cross", 1, "down").keys == "text"
    assert AttentionSite("a", "self", 1, "down").keys == "image"
    joint = AttentionSite("b", "joint", 2, "blocks", 7)  # an MM-DiT layer: text and image in one sequence
    assert joint.keys == "text+image" and not joint.is_cross and joint.on_grid
    assert not AttentionSite("c", "self", None, "other").on_grid
    assert nearest_grid([1, 2], 4) == 2 and nearest_grid([1, 4], 2) == 1  # ties: the larger maps


# ----------------------------------------------------------------------------- UNet sites


def test_unet_processor_keys_map_to_sites():
    key = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor"
    assert unet_site(key, 3) == AttentionSite(key.removesuffix(".processor"), "cross", 2, "down", 1)
    assert unet_site("mid_block.attentions.0.transformer_blocks.0.attn1.processor", 3).grid == 4
    up = unet_site("up_blocks.0.attentions.1.transformer_blocks.0.attn1.processor", 3)
    assert (up.kind, up.grid, up.place, up.index) == ("self", 4, "up", 0)
    other = unet_site("time_embedding.attn.processor", 3)
    assert other.place == "other" and other.grid is None


class Recorder(AttentionControl):
    """Wants every site; records each site with the pixel count its probabilities had."""

    def __init__(self):
        super().__init__()
        self.seen = {}

    def wants(self, site):
        return True

    def forward(self, attn, site):
        self.seen[site] = attn.shape[2]  # attn: (n, heads, pixels, keys)
        return attn


@pytest.mark.parametrize("which", ["sd", "sdxl"])
def test_every_site_has_the_grid_its_maps_have(which, tiny_model, tiny_xl):
    """Each on-grid site's probabilities have (h / grid) · (w / grid) pixels on a 16×24 latent: the grids read
    from the UNet's layout are the layers' real resolutions (what the *_downsample settings select)."""
    model = tiny_model if which == "sd" else tiny_xl
    backbone = model.backbone
    sites = backbone.sites()
    rec = Recorder()
    h, w = 16, 24
    x = torch.randn(1, model.latent_channels, h, w, generator=torch.Generator().manual_seed(0))
    cond = model.encode(["a cat"], size=(h * model.vae_scale_factor, w * model.vae_scale_factor))
    rec.begin(num_steps=1, latent_size=(h, w), n_prompts=1)
    with torch.no_grad(), backbone.attach(rec) as report:
        backbone.predict(x, torch.tensor(10), cond)
    on_grid = [s for s in sites if s.on_grid]
    assert set(rec.seen) == set(on_grid)
    assert report.cross_layers == sum(s.kind == "cross" for s in on_grid)
    for site, pixels in rec.seen.items():
        assert pixels == (h // site.grid) * (w // site.grid), site
    expected = {"sd": ([1, 2, 4], [1, 2, 4]), "sdxl": ([2], [2])}[which]
    assert (backbone.grids(kind="cross"), backbone.grids(kind="self")) == expected
    assert model.attention_downsamples() == expected[0]
    assert backbone.pack(x) is x and backbone.unpack(x, (h, w)) is x  # a UNet takes latents as they are


def test_backbone_sizes(tiny_model):
    b = tiny_model.backbone
    assert isinstance(b, UNetBackbone)
    assert (b.size_factor, b.latent_channels, b.in_channels, b.native_size) == (4, 4, 4, 16)
    assert tiny_model.size_factor == tiny_model.vae_scale_factor * 4
    assert b.estimate_memory(32, 32, 2) > 3 * b.estimate_memory(16, 16, 2)


# ----------------------------------------------------------------------------- registry


def test_registry_dispatches_on_class_name():
    assert family_of_index({"_class_name": "StableDiffusionPipeline"}).name == "sd"
    assert family_of_index({"_class_name": "StableDiffusionXLInpaintPipeline"}).name == "sdxl"
    # an old folder without _class_name: its second text encoder makes it SDXL
    assert family_of_index({"text_encoder_2": ["transformers", "CLIPTextModelWithProjection"]}).name == "sdxl"
    assert family_of_index({}).name == "sd"
    assert family_of_index({"_class_name": "FluxPipeline"}).name == "flux"
    with pytest.raises(ModelLoadError, match="'KandinskyPipeline'.*known: StableDiffusionPipeline") as e:
        family_of_index({"_class_name": "KandinskyPipeline"})
    assert "\n" not in str(e.value)
    assert FAMILIES["sdxl"].pooled and not FAMILIES["sd"].pooled
    assert FAMILIES["sd"].pipelines.diffedit and FAMILIES["sdxl"].pipelines.diffedit is None


def test_a_folder_of_an_unknown_class_is_refused_naming_it(tiny_model_dir, tmp_path):
    from promptedit.models import load_model

    folder = shutil.copytree(tiny_model_dir, tmp_path / "m")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == FAMILIES["sd"].pipelines.txt2img  # what save_model writes
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "KandinskyV22Pipeline"}))
    with pytest.raises(ModelLoadError, match="'KandinskyV22Pipeline' is not a model family"):
        load_model(folder, device="cpu")


def test_the_registry_and_shipped_names_import_without_torch():
    code = ("import sys; import promptedit.families as f; "
            "print(sorted(f.EMBEDDED_MODELS), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("]")[1].strip() == "False" and "'embedded', 'embedded-xl'" in out


# ----------------------------------------------------------------------------- controllers select by site


def test_controllers_select_sites_by_kind_grid_and_place():
    store = AttentionStore(downsamples=[2], places=("up",))
    store.begin(num_steps=1, latent_size=(8, 8), n_prompts=1)
    assert store.wants(AttentionSite("u", "cross", 2, "up", 1))
    assert not store.wants(AttentionSite("d", "cross", 2, "down", 1))  # another place
    assert not store.wants(AttentionSite("u1", "cross", 1, "up", 2))  # another grid
    assert not store.wants(AttentionSite("s", "self", 2, "up", 1))  # self-attention is not recorded
    # a transformer's blocks: selected by the same terms, whatever the module names
    blocks = AttentionStore(downsamples=[2], places=("blocks",))
    blocks.begin(num_steps=1, latent_size=(8, 8), n_prompts=1)
    assert blocks.wants(AttentionSite("transformer_blocks.3.attn", "cross", 2, "blocks", 3))
    blend = LocalBlend(torch.ones(2, 4), downsample=2, places=("up",))
    assert blend.wants(AttentionSite("u", "cross", 2, "up", 1)) and not blend.wants(AttentionSite("u", "cross", 4, "up", 0))
    assert not blend.wants(AttentionSite("s", "self", 2, "up", 1))  # self-attention only for propagation


def test_embedded_guidance_reaches_the_backbone_in_one_branch_and_a_unet_refuses_it(tiny_model, monkeypatch):
    """A guidance-distilled family (EmbeddedGuidance) runs one branch per latent and its backbone gets the scale
    as an input; a UNet, which takes none, refuses it in one line rather than ignoring it."""
    from promptedit.guidance import EmbeddedGuidance
    from promptedit.runner import denoise

    cond = tiny_model.encode(["a photo of a cat", "a photo of a dog"], size=(32, 32))
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ParameterError, match="takes no guidance scale"):
        tiny_model.predict(x.expand(2, -1, -1, -1), 999, cond, guidance=3.5)
    seen = []

    def predict(x, t, conditioning, *, compiled=False, guidance=None):  # what a distilled backbone receives
        seen.append((x.shape[0], len(conditioning), guidance))
        return torch.zeros_like(x)

    monkeypatch.setattr(tiny_model, "make_guidance", lambda scale: EmbeddedGuidance(scale))
    monkeypatch.setattr(tiny_model.backbone, "predict", predict)
    denoise(tiny_model, cond, x, num_inference_steps=2, guidance_scale=3.5, progress=False)
    assert seen == [(2, 2, 3.5)] * 2  # n rows, not 2n: no unconditional branch
