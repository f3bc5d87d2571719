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
    clash = subprocess.run([sys.executable, "-c", "import analysis"], cwd=tmp_path, capture_output=True, text=True)
    assert "the user own analysis.py" in clash.stderr  # what the alias protects against
