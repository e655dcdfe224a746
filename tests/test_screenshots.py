"""The README's first screen: what the product is, and pictures of the real app that a script
takes (tests/screenshots.py, `make screenshots`), which runs here so that it keeps working."""

import struct

import pytest
from browser_support import NEEDS_CHROMIUM
from conftest import REPO
from screenshots import SHOTS, take

README = (REPO / "README.md").read_text()


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


def test_the_first_screen_shows_the_screenshots_the_script_takes():
    first_screen = "\n".join(README.splitlines()[:20])
    for name in SHOTS.values():
        assert f"(docs/screenshots/{name})" in first_screen, name
        assert png_size(REPO / "docs" / "screenshots" / name)[0] >= 600
    assert "tests/screenshots.py" in (REPO / "Makefile").read_text()


@pytest.mark.browser
@NEEDS_CHROMIUM
def test_the_screenshot_script_takes_both_pictures_from_the_running_app(tmp_path):
    paths = take(tmp_path)
    assert set(paths) == set(SHOTS)
    for path in paths.values():
        width, height = png_size(path)
        assert width >= 600 and height >= 300
