"""The check's report: the HTML page (escaped, explained, worst inputs and their attention),
the figures, saving and loading a check, and one folder per settings on the command line."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from markupsafe import escape

import simcheck
from simcheck import SimcheckError, build_model, get_task, record
from simcheck.api.check import check
from simcheck.checking.config import CheckConfig
from simcheck.cli import main
from simcheck.probes import AttentionMass
from simcheck.report.check_report import (
    CERTIFICATE_FILE,
    CERTIFICATE_VERSION,
    FIGURES,
    PER_INPUT_FILE,
    CheckReport,
    check_name,
    saved_checks,
)
from simcheck.report.figures import draw_coverage, draw_discrepancy, figures
from simcheck.report.html import COLUMNS

MODP = "modp:p=3"
HOSTILE = "<svg onload=alert(1)>"
SETTINGS = {
    "task": MODP,
    "train_len": 16,
    "test_lengths": [32, 64],
    "samples": 20,
    "reference_samples": 64,
    "blocks_candidates": 4,
}


def tail_witness(x: np.ndarray, max_length: int, structure, rng) -> list[np.ndarray]:
    """A user witness: x's last tokens, as many as fit and keep n's residue mod Delta."""
    return [x[-(max_length - (max_length - len(x)) % structure.period) :]]


tail_witness.__name__ = HOSTILE


@pytest.fixture(scope="module")
def model():
    """An untrained periodic ModPTask model: its long inputs are not covered."""
    return build_model(get_task(MODP), pos="periodic", d_model=16, d_mlp=32, seed=1)


@pytest.fixture(scope="module")
def report(model):
    """Its check at T = 32 and 64 from N = 16, with a user witness whose name is markup."""
    return check(model, witnesses=["types", "blocks", tail_witness], **SETTINGS)


@pytest.fixture(scope="module")
def saved(report, tmp_path_factory):
    """The report saved into a fresh folder."""
    return report.save(tmp_path_factory.mktemp("saved") / "check")


# ------------------------------------------------------------------ the HTML page


def test_the_page_escapes_a_hostile_witness_and_task_name(report):
    """Names a user chose (a witness function's, a task's) reach the page as text."""
    hostile_task = "<script>alert('task')</script>"
    config = {**report.config, "task": {**report.config["task"], "spec": hostile_task}}
    page = CheckReport(config, report.results).to_html()
    assert HOSTILE in report.config["witnesses"]
    assert "<svg" not in page and "<script" not in page
    assert "&lt;svg onload=alert(1)&gt;" in page
    assert "&lt;script&gt;alert(&#39;task&#39;)&lt;/script&gt;" in page


def test_the_page_explains_every_column_and_outcome(report):
    page = report.to_html()
    explained = [name for name, _ in COLUMNS]
    assert explained == ["T", *report.table().columns]
    for name, meaning in COLUMNS:
        assert f"<dt>{name}</dt><dd>{escape(meaning)}</dd>" in page
    for outcome in simcheck.checking.outcomes.Outcome:
        assert f"<dt>{outcome}</dt>" in page


def test_the_page_shows_the_worst_inputs_above_their_witnesses(report):
    """Per test length, each of the three worst inputs as a strip of token cells above its
    witness's strip, the kept tail outlined, with the chain's terms."""
    page = report.to_html()
    tail = report.config["structure"]["window"] + 1
    strips = page.count('<div class="strip">')
    assert strips == sum(2 * len(r.worst) for r in report.results) == 12
    assert page.count(' tail"') == tail * strips
    cells = sum(len(w.x) + w.z.length for r in report.results for w in r.worst)
    assert page.count('title="position ') == cells
    worst = report.result(64).worst[0]
    assert f"chain {worst.chain:.3g} = task gap {worst.task_gap:.3g} +" in page
    assert f"x, 64 tokens</div>\n{_strip(worst.x)}" in page


def _strip(tokens: np.ndarray) -> str:
    """The first cells of a token strip, as the page writes them (Delta = 3, no window)."""
    first = int(tokens[0])
    return f'<div class="strip"><span class="k{first} r0"\ntitle="position 0, token {first}">'


def test_the_worst_cases_carry_the_attention_record_measures(report, model):
    """The last query's attention mass per (token, position mod Delta) on x and on its
    witness, as `simcheck.record` with `AttentionMass` gives it."""
    probe = AttentionMass(0, "type", period=3)
    for result in report.results:
        for worst in result.worst:
            for tokens, recorded in (
                (worst.x, worst.attention_x),
                (worst.z.tokens, worst.attention_z),
            ):
                tokens = torch.as_tensor(np.array(tokens)[None])
                expected = record(model, tokens, [probe])[probe.name][0, 0].numpy()
                assert recorded.shape == (1, 1, 6)
                np.testing.assert_allclose(recorded[0], expected, atol=1e-6)
                np.testing.assert_allclose(recorded.sum(-1), 1.0, atol=1e-5)
    page = report.to_html()
    assert page.count("data:image/png;base64") == len(figures(report)) == len(FIGURES) + 2


# ------------------------------------------------------------------ figures


def test_the_heatmap_says_log10_and_marks_the_divergence_threshold(report):
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    draw_discrepancy(report, ax)
    colourbar = ax.figure.axes[-1]
    assert "log10" in colourbar.get_ylabel()
    labels = [t.get_text() for t in colourbar.get_yticklabels()]
    assert "diverge_at 0.5" in labels
    ticks = colourbar.get_yticks()
    assert math.log10(0.5) in ticks


def test_legends_sit_outside_the_data(report):
    for name in ("decomposition.png", "coverage.png"):
        fig = figures(report)[name]
        fig.canvas.draw()
        ax = fig.axes[0]
        legend = ax.get_legend().get_window_extent()
        assert legend.x0 >= ax.get_window_extent().x1, name
        assert min(t.get_fontsize() for t in ax.get_legend().get_texts()) >= 8


def test_the_coverage_panel_rings_the_states_the_diagnosis_calls_diverging(report):
    """Coverage (nearest short state) and divergence (the witness's state) are different
    tests; the panel shows both, so a diverging state inside the coverage is not hidden."""
    from matplotlib.figure import Figure

    threshold = 1e-3  # every residual state diverges beyond this
    config = {**report.config, "diverge_at": threshold}
    ax = Figure().add_subplot()
    draw_coverage(CheckReport(config, report.results), ax)
    (rings,) = [line for line in ax.get_lines() if line.get_label().startswith("diverges")]
    expected = sorted(
        (r.length, r.coverage[s.name].outside)
        for r in report.results
        for s in r.probes
        if s.name in r.coverage and s.median > threshold
    )
    # resid_post.L0 at T = 32 and 64; resid_pre.L0 is its witness's exactly (the witness
    # keeps the last token and its position mod Delta), so it is never ringed
    assert [r[0] for r in expected] == [32, 64]
    assert sorted(zip(rings.get_xdata(), rings.get_ydata(), strict=True)) == expected
    ax = Figure().add_subplot()
    draw_coverage(CheckReport({**report.config, "diverge_at": 1e6}, report.results), ax)
    assert not [line for line in ax.get_lines() if line.get_label().startswith("diverges")]


# ------------------------------------------------------------------ save and load


def test_a_saved_check_loads_back(report, saved):
    loaded = CheckReport.load(saved)
    assert (saved / PER_INPUT_FILE).is_file()
    assert loaded.to_json() == (saved / CERTIFICATE_FILE).read_text() == report.to_json()
    assert loaded.summary() == report.summary()
    assert loaded.outcome == report.outcome
    assert loaded.table().equals(report.table())
    # the probe statistics come back as the certificate rounds them (6 digits)
    np.testing.assert_allclose(loaded.probe_table(), report.probe_table(), rtol=1e-5)
    assert loaded.coverage_table().equals(report.coverage_table())
    result, original = loaded.result(64), report.result(64)
    np.testing.assert_array_equal(result.chain, original.chain)
    assert result.diagnosis.lines() == original.diagnosis.lines()
    np.testing.assert_array_equal(result.worst[0].x, original.worst[0].x)
    assert loaded.plot().axes and set(figures(loaded)) == set(figures(report))


def test_load_refuses_what_it_cannot_read(saved, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(saved, copy)
    certificate = json.loads((copy / CERTIFICATE_FILE).read_text())
    certificate["version"] = 2
    (copy / CERTIFICATE_FILE).write_text(json.dumps(certificate))
    with pytest.raises(
        SimcheckError,
        match=f"certificate version 2; this simcheck reads version {CERTIFICATE_VERSION}",
    ):
        CheckReport.load(copy)
    shutil.copy(saved / CERTIFICATE_FILE, copy / CERTIFICATE_FILE)
    (copy / PER_INPUT_FILE).write_bytes(b"not a zip")
    with pytest.raises(SimcheckError, match="incomplete or damaged check"):
        CheckReport.load(copy)
    (copy / PER_INPUT_FILE).unlink()
    with pytest.raises(SimcheckError, match=f"no {PER_INPUT_FILE}"):
        CheckReport.load(copy)
    with pytest.raises(SimcheckError, match="holds no saved check"):
        CheckReport.load(tmp_path)


def test_save_refuses_a_folder_that_holds_something_else(report, tmp_path):
    (tmp_path / "model.safetensors").write_text("weights")
    with pytest.raises(SimcheckError, match=r"model\.safetensors, which a check does not write"):
        report.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_save_replaces_a_check_only_when_asked(report, saved, tmp_path):
    out = tmp_path / "check"
    shutil.copytree(saved, out)
    (out / "summary.txt").write_text("the first check")
    with pytest.raises(SimcheckError, match="already holds a check: pass --overwrite"):
        report.save(out, overwrite=False)
    assert (out / "summary.txt").read_text() == "the first check"
    report.save(out)
    assert (out / "summary.txt").read_text() == report.summary()
    assert [p.name for p in tmp_path.iterdir()] == ["check"]


def test_an_interrupted_save_leaves_no_check_and_keeps_the_old_one(
    report, saved, tmp_path, monkeypatch
):
    """A save that dies half-way (here while drawing the figures) leaves no folder that
    looks like a check, and a check it was replacing untouched."""
    import simcheck._util.plotting

    def interrupted(fig, dpi=110):
        raise KeyboardInterrupt

    monkeypatch.setattr(simcheck._util.plotting, "png_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        report.save(tmp_path / "check" / "new")
    assert list((tmp_path / "check").iterdir()) == []
    shutil.copytree(saved, tmp_path / "check" / "old")
    before = {p.name: p.read_bytes() for p in (tmp_path / "check" / "old").iterdir()}
    with pytest.raises(KeyboardInterrupt):
        report.save(tmp_path / "check" / "old")
    after = {p.name: p.read_bytes() for p in (tmp_path / "check" / "old").iterdir()}
    assert after == before
    assert [p.name for p in (tmp_path / "check").iterdir()] == ["old"]


def test_saved_checks_skip_hidden_folders(saved, tmp_path):
    """A hidden folder (a save in progress, or one killed before its rename) is no check."""
    shutil.copytree(saved, tmp_path / "check" / "default")
    shutil.copytree(saved, tmp_path / "check" / ".default.partial-0000")
    shutil.copytree(saved, tmp_path / "check-hardmax8")
    found = [p.relative_to(tmp_path).as_posix() for p in saved_checks(tmp_path)]
    assert found == ["check/default", "check-hardmax8"]


# ------------------------------------------------------------------ folder names


def test_each_check_folder_is_named_by_its_settings():
    assert check_name(CheckConfig()) == "default"
    assert check_name(CheckConfig(eps=0.1)) == "default"  # the default value, given
    assert check_name(CheckConfig(test_lengths=(256, 1024))) == "T256-1024"
    named = CheckConfig(test_lengths=(64,), eps=0.05, attention="hardmax:8")
    assert check_name(named) == "T64_eps0.05_hardmax8"
    seeded = check_name(CheckConfig(test_lengths=(64,), seed=1))
    assert seeded.startswith("T64_") and len(seeded) == len("T64_") + 8
    assert seeded == check_name(CheckConfig(test_lengths=(64,), seed=1))
    assert seeded != check_name(CheckConfig(test_lengths=(64,), seed=2))
    assert check_name(CheckConfig(seed=1)).startswith("settings-")
    assert check_name(CheckConfig(), train_len=8) != check_name(CheckConfig())


# ------------------------------------------------------------------ command line

CLI = ["--samples", "20", "--reference-samples", "64", "--witnesses", "types", "--quiet"]


def test_a_second_check_with_other_settings_keeps_the_first(modp_run_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(modp_run_dir, run)
    assert main(["check", str(run), "--test-len", "32", *CLI]) == 0
    assert main(["check", str(run), "--test-len", "32", "--eps", "0.2", *CLI]) == 0
    flags = {"samples": 20, "reference_samples": 64, "witnesses": ("types",)}
    first, second = (
        check_name(CheckConfig(test_lengths=(32,), eps=eps, **flags)) for eps in (0.1, 0.2)
    )
    assert first.startswith("T32_") and second.startswith("T32_eps0.2_")
    assert sorted(p.name for p in (run / "check").iterdir()) == [first, second]
    certificate = (run / "check" / first / CERTIFICATE_FILE).read_bytes()
    capsys.readouterr()

    assert main(["check", str(run), "--test-len", "32", *CLI]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a check: pass --overwrite" in err[0]
    assert main(["check", str(run), "--test-len", "32", "--overwrite", *CLI]) == 0
    assert (run / "check" / first / CERTIFICATE_FILE).read_bytes() == certificate

    capsys.readouterr()
    assert main(["show", str(run)]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("check")]
    assert [line.split(": ")[0] for line in lines] == [
        f"check     check/{first}",
        f"check     check/{second}",
    ]
    assert all("T=32: " in line for line in lines)
