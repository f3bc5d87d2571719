"""The CLI probe's cases: figure files without dates, repeated options and sources refused,
a results file that is not one, coverage's timeout."""

import filecmp
import time

import pytest
from click.testing import CliRunner
from matplotlib.figure import Figure

from analysis import plots
from analysis.cli import main
from analysis.experiments.compare import read_results
from netgraph.errors import InvalidInputError


def _run(*args):
    return CliRunner().invoke(main, list(args))


def test_every_figure_format_is_the_same_bytes_when_saved_again(tmp_path):
    fig = Figure()
    fig.subplots().plot([1, 2, 3])
    first = [open(p, "rb").read() for p in plots.save(fig, tmp_path / "f", formats=plots.FORMATS)]
    time.sleep(1.1)  # a creation date would differ
    again = [open(p, "rb").read() for p in plots.save(fig, tmp_path / "f", formats=plots.FORMATS)]
    assert first == again


@pytest.mark.parametrize("args, words", [
    (("--timeout", "nan"), "nan is not a number of seconds"),
    (("--timeout", "inf"), "inf is not in the range"),
    (("--sources", "zoo,zoo"), "listed twice"),
    (("--sources", "zoo,digits_mlp"), "digits_mlp listed twice (directly or through a source)"),
])
def test_coverage_refuses_a_bad_timeout_and_a_model_listed_twice(tmp_path, args, words):
    res = _run("coverage", *args, "--out", str(tmp_path / "cov"), "--quiet")
    assert res.exit_code == 2 and words in res.output
    assert not (tmp_path / "cov").exists()


def test_compare_refuses_an_option_given_twice(tmp_path):
    res = _run("compare", "--model", "digits_mlp", "--methods", "phew:bias=uniform,bias=inverse", "--densities",
               "0.1", "--seeds", "1", "--out", str(tmp_path / "c"), "--quiet")
    assert res.exit_code == 2 and "method option 'bias' is given twice" in res.output


@pytest.mark.parametrize("content, words", [(b"", "EmptyDataError"), (b"a,b\n1,2\n", "no model, method"),
                                            (b"\x00\xff\xfe junk", "UnicodeDecodeError")])
def test_a_file_that_is_not_a_results_table_is_one_line(tmp_path, content, words):
    path = tmp_path / "mnist1d_results.csv"
    path.write_bytes(content)
    with pytest.raises(InvalidInputError, match=words):
        read_results(path)
    res = _run("reproduce", "--study", "mnist1d", "--report-only", "--out", str(tmp_path), "--quiet")
    assert res.exit_code == 2 and "is not a results table of netgraph" in res.output


def test_a_density_just_above_one_is_shown_as_given_without_a_percentage_hint():
    from netgraph._validate import check_density

    with pytest.raises(InvalidInputError) as err:
        check_density(1.0000000001)
    assert "got 1.0000000001" in str(err.value) and "percentage" not in str(err.value)
    with pytest.raises(InvalidInputError, match=r"got 5 \(a percentage\? use 0.05\)"):
        check_density(5)
