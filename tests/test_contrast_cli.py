"""The ``lmsbayes contrast`` verb: tables printed, errors as one line, files written whole."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmsbayes.cli import main

DATA = Path(__file__).parent / "data"


@pytest.fixture()
def bcg_csv(tmp_path):
    d = pd.read_csv(DATA / "metafor_dat_bcg.csv")
    a, b, c, e = (d[k].to_numpy(float) for k in ("tpos", "tneg", "cpos", "cneg"))
    out = pd.DataFrame(
        {
            "study": d["author"] + " " + d["year"].astype(str),
            "log_estimate": np.log(a / (a + b)) - np.log(c / (c + e)),
            "se": np.sqrt(1 / a - 1 / (a + b) + 1 / c - 1 / (c + e)),
        }
    )
    p = tmp_path / "bcg.csv"
    out.to_csv(p, index=False)
    return p


def test_contrast_prints_frequentist_bayesian_egger_and_loo(bcg_csv, capsys):
    assert main(["contrast", str(bcg_csv), "--measure", "RR"]) == 0
    out = capsys.readouterr().out
    assert "13 trials from" in out
    # metafor's REML and DL values on dat.bcg (see test_contrast.py)
    assert "REML, z           0.49  0.34-0.70  <0.0001  0.15-1.55  0.3132  92.2" in out
    assert "DL, z             0.49  0.34-0.70  <0.0001  0.16-1.54  0.3088  92.1" in out
    assert "HKSJ t(12)" in out and "Q(12) = 152.23" in out
    assert "Bayesian random-effects meta-analysis" in out and "half-normal(scale=0.5)" in out
    assert "Egger's regression test" in out and "Leave-one-out (DL, z)" in out


def test_contrast_assurance_plots_and_json(bcg_csv, tmp_path, capsys):
    plots, js = tmp_path / "figs", tmp_path / "res" / "out.json"
    argv = [
        "contrast",
        str(bcg_csv),
        "--measure",
        "HR",
        "--events",
        "100,400",
        "--target-hr",
        "0.7",
        "--plots",
        str(plots),
        "--json",
        str(js),
        "--mkdir",  # res/ does not exist: created only when asked for (issue 20)
        "--tau-prior",
        "half-cauchy:0.5",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Probability of success of a planned two-arm trial" in out and "power_at_hr_0.7" in out
    assert sorted(p.name for p in plots.iterdir()) == [
        "forest.png",
        "forest_bayes.png",
        "funnel.png",
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots.iterdir())
    doc = json.loads(js.read_text())
    assert doc["input"]["k"] == 13 and len(doc["input"]["sha256"]) == 64
    assert doc["frequentist"][0]["method"] == "DL"
    assert set(doc["assurance"]) == {"100", "400"}
    assert doc["assurance"]["400"]["assurance"] > doc["assurance"]["100"]["assurance"]
    assert not list(js.parent.glob("*.tmp"))


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    p = tmp_path / "bad.csv"
    p.write_text("study,estimate,lower,upper\nA,0.5,0.6,0.9\n")
    assert main(["contrast", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert (
        err[0].startswith("lmsbayes: error: ")
        and "row 2, column 'estimate'" in err[0]
        and "'0.5'" in err[0]
    )


def test_bad_options_exit_2(bcg_csv, tmp_path, capsys):
    assert main(["contrast", str(bcg_csv), "--tau-prior", "gamma:2"]) == 2
    assert "unknown tau prior 'gamma:2'" in capsys.readouterr().err
    assert main(["contrast", str(bcg_csv), "--method", "XX"]) == 2
    assert "method must be one of" in capsys.readouterr().err
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["contrast", str(bcg_csv), "--plots", str(f)]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert f.read_text() == "x"


def test_help_describes_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["contrast", "--help"])
    text = capsys.readouterr().out
    for opt in (
        "--measure",
        "--method",
        "--test",
        "--prediction",
        "--tau-prior",
        "--mu-prior",
        "--events",
        "--allocation",
        "--alpha",
        "--plots",
        "--json",
    ):
        assert opt in text
    assert "default: DL,REML" in text and "not a target alternative" in text
