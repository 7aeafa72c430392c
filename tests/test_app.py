"""The web app, driven end to end in headless Chromium (Debian's chromium, through Playwright).

Skipped only where Gradio, Playwright or Chromium is missing; `.ci/run` installs all three.
"""

from __future__ import annotations

import os
import shutil

import pytest
from PIL import Image

gr = pytest.importorskip("gradio")
playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("PROMPTEDIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")]
TIMEOUT = 180_000  # ms: an edit on CPU, with the machine shared


@pytest.fixture(scope="module")
def url(tmp_path_factory, free_port):
    from promptedit.app import serve
    from promptedit.cli import EMBEDDED_MODEL

    if EMBEDDED_MODEL.is_dir():
        from promptedit.models import load_model

        model = load_model(str(EMBEDDED_MODEL))
    else:  # before the embedded model lands
        from promptedit.testing import tiny_components

        model = tiny_components(0)
    port = free_port()
    app = serve(model, host="127.0.0.1", port=port, block=False)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        folder = app.out
        app.close()
        assert not folder.exists(), "the app's temporary folder outlives it"


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                                    "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


@pytest.fixture
def page(browser, url):
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(url)
    page.wait_for_selector("#p2p-run")
    yield page
    page.close()


def gallery_images(page, selector: str, n: int) -> int:
    page.wait_for_function(
        f"document.querySelectorAll('{selector} img').length >= {n}", timeout=TIMEOUT)
    return page.locator(f"{selector} img").count()


def test_page_loads_and_an_edit_shows_its_images(page):
    assert "promptedit" in page.title()
    page.fill("#p2p-steps input[type=number]", "4") if page.locator("#p2p-steps").count() else None
    page.click("#p2p-run")
    assert gallery_images(page, "#p2p-gallery", 2) >= 2
    assert page.input_value("#p2p-mode textarea") .startswith("replace")


def test_upload_a_rendered_image_invert_and_edit(page, tmp_path):
    from promptedit.world import render
    from promptedit.world.dataset import scene_at

    scene = next(s for s in (scene_at(777, i) for i in range(100))
                 if len(s.objects) == 1 and s.prefix is None and not s.night)
    path = tmp_path / "scene.png"
    Image.fromarray(render(scene).image).save(path)
    page.get_by_role("tab", name="Real image").click()
    page.set_input_files("#real-upload input[type=file]", str(path))
    page.fill("#real-caption textarea", scene.caption)
    page.click("#real-invert")
    assert gallery_images(page, "#real-recon", 2) == 2
    assert "PSNR" in page.input_value("#real-info textarea")
    other = "blue" if scene.objects[0].colour != "blue" else "red"
    page.fill("#real-target textarea", scene.caption.replace(scene.objects[0].colour, other, 1))
    page.click("#real-edit")
    assert gallery_images(page, "#real-gallery", 2) == 2


def test_a_non_image_upload_gets_a_clear_message(page, tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image")
    page.get_by_role("tab", name="Real image").click()
    page.set_input_files("#real-upload input[type=file]", str(path))
    page.click("#real-invert")
    page.wait_for_selector("text=not an image")
    assert page.locator("#real-recon img").count() == 0


def test_masks_tab_makes_an_instant_mask_and_edits_inside_it(page, tmp_path):
    """The Masks tab with its default prompts on a rendered scene of them: mask, overlay and edit come back."""
    from promptedit.demo import rendered_scene

    path = tmp_path / "two.png"
    Image.fromarray(rendered_scene("a red circle and a blue star on a white background", 8, (64, 64))).save(path)
    page.get_by_role("tab", name="Masks").click()
    page.set_input_files("#mask-upload input[type=file]", str(path))
    page.click("#mask-run")
    assert gallery_images(page, "#mask-gallery", 4) == 4
    assert page.input_value("#mask-info textarea").startswith("instdiffedit: mask")
