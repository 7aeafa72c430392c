"""Take the README's screenshot of the web app: serve the embedded model, run one edit, capture the page,
and print how long the edit took end to end (click to result images in the browser).

    .venv/bin/python docs/screenshot.py docs/images/app.png
"""

from __future__ import annotations

import shutil
import socket
import sys
import time


def main(out: str) -> None:
    from playwright.sync_api import sync_playwright

    from promptedit.app import serve
    from promptedit.cli import EMBEDDED_MODEL
    from promptedit.models import load_model

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = serve(load_model(str(EMBEDDED_MODEL)), port=port, block=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(180_000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#p2p-run")
            started = time.perf_counter()
            page.click("#p2p-run")
            page.wait_for_function("document.querySelectorAll('#p2p-gallery img').length >= 2")
            print(f"one edit in the app, click to result in the browser: {time.perf_counter() - started:.1f} s")
            page.wait_for_timeout(1000)
            page.screenshot(path=out, full_page=True)
            browser.close()
    finally:
        app.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/images/app.png")
