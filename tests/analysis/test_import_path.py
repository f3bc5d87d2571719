"""A user's own analysis.py cannot hide the project's package: netgraph_analysis is the same
package under a name that does not clash."""

import subprocess
import sys


def test_netgraph_analysis_works_beside_a_users_analysis_module(tmp_path):
    (tmp_path / "analysis.py").write_text("raise ImportError('the user own analysis.py')\n")
    code = ("import netgraph, netgraph_analysis as analysis\n"
            "g = netgraph.from_torch(netgraph.zoo.build('digits_mlp'), (1, 8, 8))\n"
            "rec = analysis.measure(g)\n"
            "df = analysis.compare('digits_mlp', 'random', [0.5], seeds=1, max_flow=False)\n"
            "print(rec['kept'], len(df), analysis.table.__name__)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["6464", "1", "netgraph_analysis.table"]
    # the numba kernels (thresholds lowered: a large graph's path) load from numba's cache, which
    # imports a kernel's module by name: none lives in a module named analysis
    large = ("import netgraph, netgraph.masked, netgraph_analysis as analysis\n"
             "import netgraph_analysis.spectral as s, importlib\n"
             "c = importlib.import_module('netgraph_analysis.connectivity')\n"
             "s.COMPILED_FROM = c.LOAD_FROM = netgraph.masked.LOAD_FROM = 0\n"
             "g = netgraph.from_torch(netgraph.zoo.build('digits_mlp'), (1, 8, 8))\n"
             "rec = analysis.measure(g, netgraph.sparsify(g, 'random', 0.2, seed=0))\n"
             "print(rec['min_vertex_cut'] > 0, rec['ramanujan_gap_mean'] == rec['ramanujan_gap_mean'])\n")
    for _ in range(2):  # (compiled or loaded by the first, loaded from the cache by the second)
        res = subprocess.run([sys.executable, "-c", large], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        assert res.stdout.split() == ["True", "True"]
    clash = subprocess.run([sys.executable, "-c", "import analysis"], cwd=tmp_path, capture_output=True, text=True)
    assert "the user own analysis.py" in clash.stderr  # what the alias protects against
