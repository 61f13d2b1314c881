"""MkDocs hooks of jaxode's documentation site (`hooks:` in mkdocs.yml).

Two jobs, both done at build time without a network connection:

- **Math.** `pymdownx.arithmatex` (generic mode) marks `$...$` and `$$...$$` in the pages and
  in the docstrings; `on_page_content` turns every mark into MathML with `latex2mathml`.
  Browsers render MathML natively, so the built site shows its formulas with no JavaScript and
  nothing fetched, also when it is opened from disk.
- **Pages from outside docs/.** `EXTERNAL_PAGES` (the study's results, under experiments/) are
  added to the site under their repository paths, with every file outside docs/ that a page
  shows or links (the plots). Relative links between the repository's files are then rewritten
  to the site's: `../experiments/...` from docs/, `../docs/X.md` from experiments/. A relative
  link to a repository file or folder that the site does not hold (a sweep spec, a folder) keeps
  its text and loses the link. A link to nothing at all is left for MkDocs to report.

The repository root is taken to be the folder that holds `docs_dir`.
"""

import html
import logging
import os
import pathlib
import posixpath
import re

from latex2mathml.converter import convert
from mkdocs.structure.files import File, InclusionLevel

log = logging.getLogger("mkdocs.hooks.jaxode")

# Markdown files outside docs/ that are pages of the site (paths from the repository root).
EXTERNAL_PAGES = (
    "experiments/RESULTS.md",
    "experiments/results/study/tables.md",
    "experiments/results/study/spiral/spiral.md",
    "experiments/results/accuracy.md",
    "experiments/results/baselines.md",
    "experiments/results/uncertainty.md",
)

_LINK = re.compile(r"(?P<image>!?)\[(?P<text>[^\]\n]*)\]\((?P<target>[^)\s]+)\)")
_FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})")
_MATH = re.compile(
    r'<(?P<tag>span|div) class="arithmatex">'
    r"(?P<open>\\\(|\\\[)(?P<tex>.*?)(?:\\\)|\\\])</(?P=tag)>",
    re.DOTALL,
)


def _root(config) -> pathlib.Path:
    return pathlib.Path(os.path.abspath(config.docs_dir)).parent


def _docs_prefix(config) -> str:
    return pathlib.Path(os.path.abspath(config.docs_dir)).relative_to(_root(config)).as_posix()


def _repo_path(file: File, config) -> str:
    """The path of a site file's source from the repository root."""
    return pathlib.Path(os.path.abspath(file.abs_src_path)).relative_to(_root(config)).as_posix()


def _site_uri(repo_path: str, config, files) -> str | None:
    """The `src_uri` of the site file for a repository path, or `None` if the site lacks it."""
    prefix = _docs_prefix(config) + "/"
    candidate = repo_path[len(prefix) :] if repo_path.startswith(prefix) else repo_path
    return candidate if files.get_file_from_path(candidate) is not None else None


def _is_relative(target: str) -> bool:
    return not (target.startswith(("#", "/")) or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target))


def _outside_text(markdown: str):
    """Yields the lines of `markdown` with a flag: `True` outside fenced code blocks."""
    fence = None
    for line in markdown.splitlines(keepends=True):
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match.group("fence")[0] * len(match.group("fence"))
            yield line, False
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            yield line, False
        else:
            yield line, True


def _link_targets(markdown: str):
    for line, outside in _outside_text(markdown):
        if outside:
            for match in _LINK.finditer(line):
                target = match.group("target").split("#", 1)[0]
                if target and _is_relative(target):
                    yield target


def on_config(config):
    """Resolves the snippets' relative `base_path`s against the repository root, so that the
    site builds from any working directory."""
    snippets = config.mdx_configs.get("pymdownx.snippets")
    if snippets is not None:
        paths = snippets.get("base_path", ["."])
        paths = [paths] if isinstance(paths, str) else paths
        snippets["base_path"] = [str(_root(config) / path) for path in paths]
    return config


def on_files(files, config):
    """Adds `EXTERNAL_PAGES` and the files outside docs/ that the pages show or link."""
    root = _root(config)
    prefix = _docs_prefix(config)

    def add(repo_path: str) -> None:
        if files.get_file_from_path(repo_path) is None:
            files.append(
                File(
                    repo_path,
                    src_dir=str(root),
                    dest_dir=config.site_dir,
                    use_directory_urls=config.use_directory_urls,
                    inclusion=InclusionLevel.INCLUDED,
                )
            )

    for page in EXTERNAL_PAGES:
        if not (root / page).is_file():
            log.warning(f"docs/_hooks.py: EXTERNAL_PAGES names {page}, which does not exist.")
            continue
        add(page)
    for file in list(files.documentation_pages()):
        here = posixpath.dirname(_repo_path(file, config))
        for target in _link_targets(pathlib.Path(file.abs_src_path).read_text(encoding="utf-8")):
            repo_path = posixpath.normpath(posixpath.join(here, target))
            shown = (root / repo_path).is_file() and not repo_path.endswith(".md")
            if shown and not repo_path.startswith(prefix + "/") and not repo_path.startswith(".."):
                add(repo_path)
    return files


def on_page_markdown(markdown, page, config, files):
    """Rewrites relative links between repository files into links between site files."""
    here = posixpath.dirname(_repo_path(page.file, config))
    page_dir = posixpath.dirname(page.file.src_uri)
    root = _root(config)

    def rewrite(match: re.Match) -> str:
        target = match.group("target")
        path, _, fragment = target.partition("#")
        if not path or not _is_relative(path):
            return match.group(0)
        repo_path = posixpath.normpath(posixpath.join(here, path))
        site = _site_uri(repo_path, config, files)
        if site is not None:
            new = posixpath.relpath(site, page_dir or ".") + ("#" + fragment if fragment else "")
            return f"{match.group('image')}[{match.group('text')}]({new})"
        if not match.group("image") and (root / repo_path).exists():
            log.info(f"{page.file.src_uri}: '{target}' is not on the site; kept as text.")
            return match.group("text")
        return match.group(0)

    return "".join(
        _LINK.sub(rewrite, line) if outside else line for line, outside in _outside_text(markdown)
    )


def _mathml(match: re.Match, page) -> str:
    tex = html.unescape(match.group("tex")).strip()
    display = "block" if match.group("open") == "\\[" else "inline"
    try:
        mathml = convert(tex, display=display)
    except Exception as error:  # latex2mathml raises several kinds on malformed input
        log.warning(f"{page.file.src_uri}: cannot convert the math '{tex}': {error!r}")
        return match.group(0)
    unknown = re.findall(r">(\\[A-Za-z]+)<", mathml)
    if unknown:
        log.warning(f"{page.file.src_uri}: unknown TeX command(s) {unknown} in '{tex}'.")
    if display == "block":
        return f'<div class="arithmatex">{mathml}</div>'
    return f'<span class="arithmatex">{mathml}</span>'


def on_page_content(html_text, page, config, files):
    """Turns the math that arithmatex marked into MathML."""
    return _MATH.sub(lambda match: _mathml(match, page), html_text)


def on_serve(server, config, builder):
    """`mkdocs serve` rebuilds when a page from outside docs/ changes."""
    for page in EXTERNAL_PAGES:
        path = _root(config) / page
        if path.is_file():
            server.watch(str(path))
    return server
