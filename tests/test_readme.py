"""README.md's Python examples run as written, top to bottom, in a fresh interpreter (so in
float32, the default users get), and print what the README says they print."""

import pathlib
import re
import subprocess
import sys

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_runs_as_written(tmp_path):
    blocks = python_blocks()
    assert len(blocks) >= 2
    script = "\n".join(blocks) + "\nprint('README OK')\n"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("README OK")
    # the tour's asserts check its claims (values, counts, precision); the run leaves a run dir
    assert (tmp_path / "runs" / "tour" / "model.eqx").is_file()
