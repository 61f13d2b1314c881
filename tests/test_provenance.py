"""Provenance (issue 29): every run records the jaxode version, the git commit and whether the
library's files were clean (with a hash of their changes when not), and a sweep's report says
when its cells come from several commits or from a changed library."""

import json
import pathlib
import subprocess

import jaxode
from jaxode._provenance import provenance
from jaxode._sweeps._report import provenance_line
from jaxode._training import RunDir

ROOT = pathlib.Path(jaxode.__file__).resolve().parent.parent


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout


def test_the_provenance_is_the_checkouts_commit_and_state():
    found = provenance()
    assert found["jaxode_version"] == jaxode.__version__
    assert found["git_commit"] == _git("rev-parse", "HEAD").strip()
    clean = not _git("status", "--porcelain", "--", "jaxode", "pyproject.toml").strip()
    assert found["git_clean"] is clean
    assert (found["git_diff_sha256"] is None) is clean


def test_a_run_records_where_it_came_from_and_each_resume(tmp_path):
    config = jaxode.RunConfig.from_dict(
        {
            "data": {"dataset": "elm"},
            "model": {"model": "resnet", "field": "layer", "width": 3, "steps": 2},
            "train": {"iterations": 4, "batch_size": 32},
        }
    )
    _, _, metrics = jaxode.train(config, tmp_path / "run", progress=False)
    stored = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for name in ("jaxode_version", "git_commit", "git_clean", "git_diff_sha256"):
        assert stored[name] == provenance()[name] == metrics[name]
    RunDir(tmp_path / "run").record_resume()
    record = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert record["started"] == provenance()
    assert record["resumed"] == [provenance()]


def test_the_report_warns_of_several_commits_changed_libraries_and_unknown_cells():
    def row(commit, clean="True"):
        return {
            "status": "completed",
            "git_commit": commit,
            "git_clean": clean,
            "jaxode_version": "0.1.0",
        }

    assert provenance_line([row("a" * 40), row("a" * 40)]) == (
        f"provenance: every cell from commit {'a' * 10}, clean (jaxode 0.1.0)."
    )
    mixed = provenance_line([row("a" * 40), row("b" * 40, "False"), {"status": "completed"}])
    assert mixed.startswith("warning, provenance: cells from 2 commits")
    assert "1 cells trained from a library with uncommitted changes" in mixed
    assert "1 cells record no provenance" in mixed
