"""`classify report`: one self-contained HTML file, or Markdown with its PNG map; both render."""

import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from classify.cli import app
from test_dumps import SAMPLE

runner = CliRunner()


def make_dumps(tmp_path):
    (tmp_path / "dumps").mkdir()
    (tmp_path / "dumps" / "a.txt").write_text(SAMPLE)
    (tmp_path / "dumps" / "b.txt").write_text(SAMPLE.replace("Ministers agree new rail deal", "Russian missiles knock out power in Kyiv"))
    return tmp_path / "dumps"


def test_html_report_is_self_contained(tmp_path, model_dir):
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(make_dumps(tmp_path)), "--model", str(model_dir), "--output", str(out), "-q"])
    assert result.exit_code == 0, result.stderr
    page = out.read_text()
    for part in ["<svg", "Topics per dump", "Stance of related stories", "Stance per topic", "Clusters: keywords",
                 "<title>Unions reject rail deal"]:
        assert part in page, part
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
    assert "<script" not in page and "<link" not in page


def test_markdown_report_with_png(tmp_path, model_dir):
    out = tmp_path / "report.md"
    result = runner.invoke(app, ["report", str(make_dumps(tmp_path)), "--model", str(model_dir), "--output", str(out), "-q"])
    assert result.exit_code == 0, result.stderr
    text = out.read_text()
    assert "![Cluster map](report_map.png)" in text and "| a.txt |" in text
    assert (tmp_path / "report_map.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed")
def test_html_report_renders_in_headless_chromium(tmp_path, model_dir):
    out = tmp_path / "report.html"
    runner.invoke(app, ["report", str(make_dumps(tmp_path)), "--model", str(model_dir), "--output", str(out), "-q"])
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600", f"--screenshot={shot}",
                    out.as_uri()], check=True, capture_output=True, timeout=120)
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20)
    assert image.size == (1200, 1600) and len(colours) > 20  # not a blank page
