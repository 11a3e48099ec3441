"""The audit report: `mia report RUN_DIR` and the report of stored results (Compare's export)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from mia_core.cli import main
from mia_core.lab import report as R
from mia_core.views.report import SECTIONS, report_html

SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.S | re.I)
EXTERNAL = re.compile(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    """See conftest.single_thread."""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_unet_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    tiny_unet_factory(8, 1).save_pretrained(root / "tiny", safe_serialization=True)
    out = root / "run"
    code = main(
        [
            "attack",
            "--target",
            str(root / "tiny"),
            "--data",
            "default",
            "--limit",
            "12",
            "--attacks",
            "loss,pia",
            "--params",
            '{"loss": {"timesteps": [100]}}',
            "--bootstrap",
            "50",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    return out


def check_self_contained(html: str) -> None:
    """No external resource: no src / href to http(s) or protocol-relative URLs, no <script src>, no <link>,
    no CSS url() outside data: URIs (plotly.js is inlined whole; its code is checked by the browser test)."""
    outside_scripts = SCRIPT.sub("", html)
    assert not EXTERNAL.findall(outside_scripts), EXTERNAL.findall(outside_scripts)[:3]
    assert not re.search(r"<script[^>]+\bsrc\s*=", html, re.I)
    assert not re.search(r"<link\b", outside_scripts, re.I)
    assert not re.search(r"url\(\s*['\"]?(?!data:)", outside_scripts, re.I)


def test_cli_report_writes_every_section_self_contained(run_dir, capsys):
    assert main(["report", str(run_dir), "--no-pdf"]) == 0
    html = (run_dir / "report.html").read_text()
    assert "wrote" in capsys.readouterr().out
    for sid, title in SECTIONS:
        assert f"<section id='{sid}'><h2>{title}</h2>" in html, sid
    check_self_contained(html)
    assert html.count('class="plotly-graph-div"') == 1 and "* plotly.js v" in html  # plotly.js inlined, one chart
    body = SCRIPT.sub("", html)
    # the target card, the split, every run's parameters, the metric table with intervals (oracle + transferred)
    assert "fingerprint" in body and "sklearn-digits" in body and "12 / 12" in body
    assert "Loss timesteps=100" in body and "timesteps=[100]" in body and "PIA" in body
    assert "transferred TPR@1%FPR [95% CI]" in body and "achieved FPR (budget 1%)" in body
    assert re.search(r"0\.\d{3} \[0\.\d{3}, [01]\.\d{3}\]", body)  # AUC with its interval
    # the blind baseline: its row, and its curve on the ROC
    assert "blind baseline (images only, no model) (test half)" in body
    assert "blind baseline (images only, no model)" in SCRIPT.findall(html)[-1]
    # the most vulnerable samples with their images (8 per run), and the command that made the run
    assert body.count("src='data:image/png;base64,") == 16
    assert "mia attack --target" in body and "--limit 12" in body


def test_cli_report_to_another_file_and_bad_folders(run_dir, tmp_path, capsys):
    out = tmp_path / "audit" / "a.html"
    assert main(["report", str(run_dir), "--out", str(out), "--no-pdf", "--no-images"]) == 0
    html = out.read_text()
    assert "src='data:image/png" not in html and "(images not available)" in html
    assert "No blind-baseline curve" in html  # its curve needs the images
    capsys.readouterr()
    assert main(["report", str(tmp_path / "nowhere"), "--no-pdf"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--no-pdf"]) == 2
    assert "run.json not found" in capsys.readouterr().err


def test_report_of_stored_results_puts_two_runs_of_one_attack_side_by_side(tiny_target):
    """The Compare page's export: runs (attack + parameters) from an experiment; two Loss runs need two commands."""
    from mia_core.attacks import get_attack
    from mia_core.lab.blind import blind_baseline
    from mia_core.lab.experiment import load_experiment

    exp = load_experiment(tiny_target, "default", limit=10)
    results = {
        "loss": get_attack("loss", {"sweep": []}).run(exp.target, exp.x0, ids=exp.ids),
        "loss:sweep=,timesteps=100": get_attack("loss", {"timesteps": [100], "sweep": []}).run(
            exp.target, exp.x0, ids=exp.ids
        ),
    }
    blind = blind_baseline(exp.images.images, exp.is_member, n_bootstrap=20)
    report = R.report_from_results(
        exp, results, target_spec="default", data_spec="default", seed=0, limit=10, n_bootstrap=20, blind=blind
    )
    assert [r.run_id for r in report.runs] == list(results)
    assert report.runs[1].params["timesteps"] == [100]
    assert len(report.commands) == 2 and all("--attacks loss" in c for c in report.commands)
    assert '"timesteps":[100]' in report.commands[1] and "--limit 10" in report.commands[0]
    assert report.commands[1].endswith("--out runs/audit-2")
    html = report_html(report)
    check_self_contained(html)
    assert "Loss t=100" in SCRIPT.sub("", html) or "timesteps=100" in SCRIPT.sub("", html)
    assert SCRIPT.sub("", html).count("src='data:image/png;base64,") == 16
    assert np.isfinite(report.runs[0].metrics["auc"])


def test_reproduce_commands_group_runs_by_attack():
    cmds = R.reproduce_commands(
        "default",
        "data.npz",
        {"loss": {}, "pia": {"timestep": 100}, "loss:timesteps=100": {"timesteps": [100]}},
        seed=3,
    )
    assert cmds == [
        "mia attack --target default --data data.npz --attacks loss,pia --params "
        '\'{"pia":{"timestep":100}}\' --seed 3 --out runs/audit',
        "mia attack --target default --data data.npz --attacks loss --params "
        '\'{"loss":{"timesteps":[100]}}\' --seed 3 --out runs/audit-2',
    ]


def test_pdf_is_refused_clearly_without_chromium(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "CHROMIUM_CANDIDATES", ())
    monkeypatch.delenv("MIA_CHROMIUM", raising=False)
    (tmp_path / "r.html").write_text("<html></html>")
    problem = R.write_pdf(tmp_path / "r.html", tmp_path / "r.pdf")
    assert problem is not None and "PDF not available" in problem and not (tmp_path / "r.pdf").exists()
