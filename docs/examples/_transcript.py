"""What an example prints, kept for its documentation page.

The page shows each part of a script's code followed by what that part printed. `Transcript`
prints as `print` does and keeps the lines; `part(name)` starts a part, which the written file
holds between the snippet markers that the page's `--8<-- "output.txt:name"` includes.
"""

import pathlib


class Transcript:
    """Printed lines, in named parts."""

    def __init__(self):
        self.lines: list[str] = []
        self._open: str | None = None

    def show(self, text: str = "") -> None:
        """Prints `text` and keeps it in the current part."""
        print(text)
        self.lines.append(text)

    def part(self, name: str) -> None:
        """Ends the current part (if any) and starts the part `name`."""
        self._close()
        self.lines.append(f"--8<-- [start:{name}]")
        self._open = name

    def write(self, path: pathlib.Path) -> None:
        """Writes the lines, every part closed, to `path`."""
        self._close()
        pathlib.Path(path).write_text("\n".join(self.lines) + "\n")

    def _close(self) -> None:
        if self._open is not None:
            self.lines.append(f"--8<-- [end:{self._open}]")
            self._open = None
