"""Starting a command or the desktop prints nothing nobody asked for: matplotlib (and its one-off
font-cache note) is imported only to draw a calibration report."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_teach_workflow_imports_no_matplotlib(tmp_path):
    code = "import sys, cli.main, calibration.teach; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    env = {"PYTHONPATH": str(REPO), "HOME": str(tmp_path), "INSPECTOR_DATA_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def test_a_first_report_does_not_announce_the_font_cache(tmp_path):
    """With an empty matplotlib cache, the font cache is built on the first plot: that is logged
    for debugging only."""
    code = (
        "import logging; logging.basicConfig(level=logging.INFO, format='%(name)s %(message)s')\n"
        "from calibration.report import new_figure, _save_figure\n"
        "from pathlib import Path\n"
        "fig = new_figure(figsize=(2, 2)); fig.add_subplot().plot([0, 1])\n"
        f"_save_figure(fig, Path({str(tmp_path / 'x.png')!r}))\n"
    )
    env = {"PYTHONPATH": str(REPO), "HOME": str(tmp_path), "MPLCONFIGDIR": str(tmp_path / "mpl")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "x.png").is_file() and (tmp_path / "mpl").is_dir()
    assert "fontManager" not in proc.stderr + proc.stdout
