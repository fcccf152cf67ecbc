"""Code versions derived from source: a change to an asset's module or to library code it
imports (transitively) changes its version; unrelated code does not."""

import textwrap

from finai_assets.dagster_meta import source_closure, source_version


def _package(root, files: dict[str, str]):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_a_library_change_moves_only_the_assets_that_import_it(tmp_path):
    pkg = tmp_path / "pkg"
    _package(pkg, {
        "__init__.py": "", "defs/__init__.py": "", "lib/__init__.py": "",
        "defs/scoring.py": "from pkg.lib import model as m\n\ndef asset(): return m.fit()\n",
        "defs/reports.py": "from pkg.lib.report import render\n",
        "lib/model.py": "def fit():\n    from pkg.lib.maths import mean  # lazy import\n    return mean([1])\n",
        "lib/maths.py": "def mean(x): return sum(x) / len(x)\n",
        "lib/report.py": "def render(): return 'ok'\n",
    })
    scoring, reports = source_version("pkg.defs.scoring", pkg), source_version("pkg.defs.reports", pkg)
    assert set(source_closure("pkg.defs.scoring", pkg)) == {"pkg", "pkg.lib", "pkg.lib.model", "pkg.lib.maths",
                                                           "pkg.defs.scoring"}
    (pkg / "lib/maths.py").write_text("def mean(x): return sum(x) / max(len(x), 1)\n")  # two imports away
    assert source_version("pkg.defs.scoring", pkg) != scoring
    assert source_version("pkg.defs.reports", pkg) == reports
    (pkg / "lib/report.py").write_text("def render(): return 'changed'\n")
    assert source_version("pkg.defs.reports", pkg) != reports


def test_the_code_location_versions_cover_the_library_it_runs():
    governance = source_closure("finai_assets.defs.governance")
    assert {"finai_assets.lib.promotion", "finai_assets.lib.production", "finai_assets.lib.protected"} <= set(governance)
    teacher = source_closure("finai_assets.defs.teacher")
    assert "finai_assets.lib.ple.experts.perslay" in teacher  # experts load by name: the whole folder counts
    assert "finai_assets.lib.synthetic" not in source_closure("finai_assets.defs.raw")
