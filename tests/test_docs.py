"""The README and the docs: the README stays a short front door whose commands use flags the
tools have, every page of the site is in its navigation, and the quickstart notebook runs end to
end (on a reduced step count). ``mkdocs build --strict`` itself runs in ``.ci/run``."""

import os
import re
import shlex
import subprocess
import sys

import pytest

from tf_pix2pix import models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")


def _shell_commands(markdown: str) -> list[str]:
    """The commands of the ```bash blocks: continuation lines joined, comments dropped, each
    ``&&`` / ``|`` segment on its own."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                commands += [part.strip() for part in re.split(r"&&|\|", line)]
    return commands


def _tool(command: str) -> tuple[list[str], list[str]] | None:
    """``(argv to run the tool, its arguments)`` for the project's own tools, else None."""
    words = shlex.split(command)
    if len(words) >= 2 and words[0] == "python" and words[1].endswith(".py"):
        return [sys.executable, os.path.join(REPO, words[1])], words[2:]
    if len(words) >= 3 and words[:2] == ["python", "-m"] and words[2].startswith(
            ("tf_pix2pix", "data_prep")):
        return [sys.executable, "-m", words[2]], words[3:]
    return None


def test_the_readme_is_a_front_door_of_at_most_200_lines():
    text = open(README).read()
    assert len(text.splitlines()) <= 200
    for heading in ("## Install and train the demo", "## Translate your own image",
                    "## Train on your own folder", "## Serve it", "## Run the tests"):
        assert heading in text
    # The README's two commands.
    assert 'pip install -e ".[cpu]" && python run_train.py --preset=demo' in text
    assert 'pip install -e ".[cpu,test]" && python -m pytest -q' in text
    # Links into the docs point at files that exist.
    for target in re.findall(r"\]\((docs/[^)#]+)", text):
        assert os.path.exists(os.path.join(REPO, target)), target


def test_every_flag_in_the_readme_is_one_its_tool_defines():
    commands = [c for c in _shell_commands(open(README).read()) if _tool(c)]
    assert len(commands) >= 12  # the demos, predict, build, verify, download, export, study, ...
    helps: dict[tuple, str] = {}
    checked = 0
    for command in commands:
        argv, args = _tool(command)
        values = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
        model = values.get("model")
        if model:  # a registered model, and a preset it has
            assert model in models.names(), command
            assert values.get("preset", "demo") in models.get(model).presets, command
        # run_train.py defines the chosen model's flags; --model and --preset are every model's.
        if model and all(a.split("=")[0] in ("--model", "--preset") for a in args):
            model = None
        key = (tuple(argv), model)
        if key not in helps:
            extra = [f"--model={model}"] if model else []
            result = subprocess.run(argv + extra + ["--helpfull"], capture_output=True,
                                    text=True, timeout=300, cwd=REPO)
            helps[key] = result.stdout + result.stderr
            assert "Traceback" not in helps[key], helps[key][-2000:]
        for arg in args:
            if not arg.startswith("--"):
                continue
            name = arg[2:].split("=", 1)[0]
            names = {name, name[2:]} if name.startswith("no") else {name}
            assert any(re.search(rf"--(\[no\])?{re.escape(n)}:", helps[key]) for n in names), (
                f"README: {command!r} uses --{name}, which {argv[-1]} does not define")
            checked += 1
    assert checked >= 25


def test_every_page_is_in_the_site_navigation():
    nav = open(os.path.join(REPO, "mkdocs.yml")).read()
    docs = os.path.join(REPO, "docs")
    pages = [os.path.relpath(os.path.join(d, f), docs) for d, _, files in os.walk(docs)
             for f in files if f.endswith(".md")]
    assert len(pages) >= 18
    for page in pages:
        assert f": {page}" in nav, f"docs/{page} is not in mkdocs.yml's nav"


def test_the_quickstart_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(os.path.join(REPO, "docs", "notebooks", "quickstart.ipynb"), 4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    monkeypatch.setenv("QUICKSTART_STEPS", "3")
    monkeypatch.setenv("QUICKSTART_DIR", str(tmp_path / "work"))
    client = nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "step 3, validation" in text and "Translator(pix2pix" in text
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) == 2  # the samples grid and input | output
    work = tmp_path / "work"
    assert (work / "runs" / "demo" / "samples" / "val_latest.png").exists()
    assert (work / "exported" / "demo" / "1" / "saved_model.pb").exists()
