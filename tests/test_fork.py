"""A process forked while backend "auto" compiles in its background thread (multiprocessing's
default start method on Linux) must not inherit Numba's compiler lock held by a thread it does not
have: its first compile would hang for ever. Run in a subprocess, so that a regression fails
instead of hanging the suite."""
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

SCRIPT = textwrap.dedent("""
    import multiprocessing as mp, time, numpy as np
    import scalargrad as sg
    from scalargrad.jit import tier

    def child(q):  # needs Numba: a first generated-code compile in the child
        g = sg.value_and_grad(lambda x: sg.exp(x[0]) * x[1] + x[0], backend="codegen")
        q.put(float(g(np.array([0.5, 2.0]))[0]))

    if __name__ == "__main__":
        tier.AUTO_HOT_CALLS = 3
        tier.predicted_compile_seconds = lambda tape, batch=False: 0.0  # tier up now, whatever the compile costs
        vg = sg.value_and_grad(lambda x: sum(sg.sin(x[i]) * x[i + 1] for i in range(len(x) - 1)))
        x = np.linspace(0.1, 1.0, 40)
        for _ in range(5):
            vg(x)
        assert tier.compiling(), "no background compile in flight: the test would prove nothing"
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        p.join(120)
        if p.is_alive():
            p.kill()
            raise SystemExit("the forked child hung")
        print(q.get(timeout=10))
""")


@pytest.mark.slow  # two cold compiles: 5-12 s
def test_a_child_forked_mid_compile_compiles(tmp_path):
    script = tmp_path / "fork_mid_compile.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, SCALARGRAD_CACHE_DIR=str(tmp_path / "codegen"))  # a cold cache: a real compile
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == pytest.approx(3.7974425414002564, rel=1e-15)  # exp(0.5) * 2 + 0.5
