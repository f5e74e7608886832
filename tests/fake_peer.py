"""Fake peers for test_peers.py and test_cli.py, named ``fake_peer:NAME`` on the bench's command line.

They run in the bench's child process, so they live in a module of their own (the child imports it
by name; pytest puts tests/ on sys.path, which the spawned child inherits). ``exact`` differentiates
the peer program with scalargrad itself; the others break in one way each.
"""
import os
import time
from types import SimpleNamespace

import numpy as np

import scalargrad as sg
from scalargrad.bench import peers


def exact(program, n):
    names = ("sin", "cos", "tanh", "exp", "log", "sqrt", "log1p", "expm1", "sinh", "cosh", "tan", "arctan",
             "arcsin", "arctan2", "relu", "sigmoid")
    ops = SimpleNamespace(**peers.ARITHMETIC, **{name: getattr(sg, name) for name in names})

    def f(x):
        return program(list(x), ops)

    value_and_grad, forward = sg.value_and_grad(f), sg.jit(f)
    return dict(record=lambda x: sg.trace(f, x) and None, fwd=forward, vg=value_and_grad)


def wrong(program, n):
    good = exact(program, n)
    return dict(good, vg=lambda x: (good["vg"](x)[0] * (1.0 + 1e-6), good["vg"](x)[1]))


def slow(program, n):
    def record(x):
        time.sleep(600)
    return dict(record=record, fwd=None, vg=None)


def crash(program, n):
    def vg(x):
        os._exit(3)
    return dict(fwd=None, vg=vg)


def raises(program, n):
    def vg(x):
        raise ValueError("this peer cannot do that\nsecond line")
    return dict(fwd=None, vg=vg)


def zero_gradient(program, n):
    good = exact(program, n)
    return dict(good, vg=lambda x: (good["vg"](x)[0], np.zeros(n)))
