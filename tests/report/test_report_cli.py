"""`scalinglab report DIR` on a study store; `build_report` is the study runner's entry point."""

from __future__ import annotations

from typer.testing import CliRunner

import scalinglab.cli.report  # noqa: F401  (registers the commands)
from scalinglab.cli._app import app
from scalinglab.report.synthetic import synthetic_study, write_store


def test_report_command_writes_the_page(tmp_path):
    write_store(synthetic_study(10, seed=2, points_per_run=15, evals=False), tmp_path)
    res = CliRunner().invoke(app, ["report", str(tmp_path), "--no-pdf", "--no-fit"])
    assert res.exit_code == 0, res.output
    page = tmp_path / "report" / "index.html"
    assert page.is_file() and f"wrote {page}" in res.output
    assert "skipped fewshot: no few-shot evaluations" in res.output
    assert not list((tmp_path / "report" / "figures").glob("*.pdf"))
    html = page.read_text()
    assert "Figures not drawn" in html and "no few-shot evaluations in the store" in html
    assert "no stored fit" in html  # --no-fit: the fits table says why each law is missing
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".report")) == []
    assert (tmp_path / "report").stat().st_mode & 0o777 == (
        tmp_path / "report" / "figures"
    ).stat().st_mode & 0o777


def test_report_folder_is_swapped_in_whole(tmp_path):
    """A new report replaces the old folder in one switch: never a mix of old and new files, no leftovers
    (killed at the switch: tests/durability/test_atomic_folders.py)."""
    from scalinglab.io import replace_dir, temp_dir

    dest = tmp_path / "report"
    dest.mkdir()
    (dest / "old-only.png").write_text("old")
    with temp_dir(dest) as new:
        (new / "figures").mkdir(parents=True)
        (new / "index.html").write_text("new")
        replace_dir(new, dest)
    assert (dest / "index.html").read_text() == "new" and not (dest / "old-only.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_report_command_on_a_non_study_fails_cleanly(tmp_path):
    from scalinglab.errors import InputError

    res = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert res.exit_code != 0 and isinstance(res.exception, InputError)
    assert "not a study folder" in str(res.exception)
