"""Pytrees, keyword arguments, has_aux and argnums (issue 22, items 1-3): the tree functions
(``sg.tree_flatten``/``tree_unflatten``/``tree_map``, registration), pytree arguments and outputs of
every transform with derivatives checked against finite differences, the cache key (a new structure
retraces, new leaf values do not), keyword arguments (floats and numeric arrays traced, other values
static), ``has_aux`` and ``argnums`` on the forward-mode and second-order transforms."""
from __future__ import annotations

import collections
import dataclasses
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest

import scalargrad as sg
from helpers import central_diff
from scalargrad.record.pytrees import TreeShape

Point = collections.namedtuple("Point", "x y")


@sg.register_dataclass
@dataclasses.dataclass
class Linear:
    w: np.ndarray
    b: float


@sg.register_dataclass(meta_fields=("activation",))
@dataclasses.dataclass(frozen=True)
class Layer:
    w: np.ndarray
    activation: str = "tanh"


class Pair:
    """A class registered with register_pytree_node: two children and a hashable tag."""

    def __init__(self, first, second, tag="p"):
        self.first, self.second, self.tag = first, second, tag


sg.register_pytree_node(Pair, lambda p: ((p.first, p.second), p.tag), lambda tag, children: Pair(*children, tag))


def fd_tree(f, tree, h=1e-6):
    """Central differences of scalar ``f(tree)`` with respect to every float in ``tree``, in its
    structure (float leaves as floats, array leaves as arrays)."""
    leaves, treedef = sg.tree_flatten(tree)
    sizes = [np.size(leaf) for leaf in leaves]
    flat = np.concatenate([np.atleast_1d(np.asarray(leaf, dtype=np.float64)).ravel() for leaf in leaves])

    def rebuilt(values):
        out, pos = [], 0
        for leaf, size in zip(leaves, sizes):
            chunk = np.asarray(values[pos:pos + size])
            out.append(float(chunk[0]) if np.ndim(leaf) == 0 else chunk.reshape(np.shape(leaf)))
            pos += size
        return treedef.unflatten(out)

    g = central_diff(lambda *v: f(rebuilt(np.array(v))), flat, h)
    return rebuilt(g)


def assert_tree_close(actual, expected, rtol=1e-6, atol=1e-9):
    a_leaves, a_def = sg.tree_flatten(actual)
    e_leaves, e_def = sg.tree_flatten(expected)
    assert a_def == e_def, f"{a_def} != {e_def}"
    for a, e in zip(a_leaves, e_leaves):
        assert type(a) is type(e) or (isinstance(a, np.ndarray) and isinstance(e, np.ndarray)), (type(a), type(e))
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


def counting(fun):
    """``fun``, counting its Python calls (traces) in ``.calls``."""
    def counted(*args, **kwargs):
        counted.calls += 1
        return fun(*args, **kwargs)
    counted.calls = 0
    counted.__name__ = fun.__name__
    return counted


# --- the tree functions --------------------------------------------------------------------------

TREES = [
    {"b": [1.0, (2.0, None)], "a": Point(3.0, {"z": 4.0, "y": np.arange(2.0)}), "c": None},
    [Linear(np.ones(2), 0.5), Layer(np.zeros(3), "relu")],
    (Pair(1.0, [2.0, 3.0], tag="t"),),
    collections.OrderedDict([("z", 1.0), ("a", 2.0)]),
    collections.defaultdict(list, {"k": 1.0}),
    None,
    5.0,
]


@pytest.mark.parametrize("tree", TREES, ids=lambda t: type(t).__name__)
def test_flatten_unflatten_round_trip(tree):
    leaves, treedef = sg.tree_flatten(tree)
    rebuilt = sg.tree_unflatten(treedef, leaves)
    assert type(rebuilt) is type(tree)
    assert sg.tree_structure(rebuilt) == treedef and hash(sg.tree_structure(rebuilt)) == hash(treedef)
    for a, b in zip(sg.tree_leaves(rebuilt), leaves):
        assert a is b
    doubled = sg.tree_map(lambda v: v * 2, tree)
    for a, b in zip(sg.tree_leaves(doubled), leaves):
        np.testing.assert_array_equal(a, b * 2)


def test_leaf_order_paths_and_structure_text():
    leaves, treedef = sg.tree_flatten(TREES[0])
    assert leaves[0] == 3.0 and leaves[2] == 4.0 and leaves[3:] == [1.0, 2.0]  # dicts by sorted key, fields in order
    assert treedef.paths() == ["['a'].x", "['a'].y['y']", "['a'].y['z']", "['b'][0]", "['b'][1][0]"]
    assert treedef.describe() == "{'a': Point(x=*, y={'y': *, 'z': *}), 'b': [*, (*, None)], 'c': None}"
    assert sg.tree_structure({"a": 1, "b": 2}) == sg.tree_structure({"b": 2, "a": 1})  # insertion order aside
    assert sg.tree_structure([1, 2]) != sg.tree_structure((1, 2))
    assert sg.tree_structure(Point(1, 2)) != sg.tree_structure((1, 2))
    assert sg.tree_structure(Layer(1.0, "relu")) != sg.tree_structure(Layer(1.0, "tanh"))  # meta field
    assert sg.tree_leaves(Layer(np.ones(1), "relu"))[0].shape == (1,) and len(sg.tree_leaves(Layer(1.0))) == 1


def test_tree_map_over_several_trees_and_is_leaf():
    a, b = {"x": 1.0, "y": [2.0, 3.0]}, {"y": [20.0, 30.0], "x": 10.0}
    assert sg.tree_map(lambda u, v: u + v, a, b) == {"x": 11.0, "y": [22.0, 33.0]}
    # the other trees may go on below the first one's leaves
    assert sg.tree_map(lambda u, v: (u, v), {"x": 1.0}, {"x": [1, 2]}) == {"x": (1.0, [1, 2])}
    ints = lambda t: isinstance(t, list) and all(type(v) is int for v in t)  # noqa: E731
    assert sg.tree_map(len, [[1, 2], [3]], is_leaf=ints) == [2, 1]
    with pytest.raises(ValueError, match=re.escape("tree_map's argument 1['y'][1] is a list")):
        sg.tree_map(lambda u, v: u, {"y": [1.0, (2.0,)]}, {"y": [1.0, [2.0]]})
    with pytest.raises(ValueError, match="another shape"):
        sg.tree_map(lambda u, v: u, {"x": 1.0}, {"z": 1.0})


def test_structures_pickle_with_the_receiving_process_hashes():
    # Dask ships cached signatures to workers, whose str and type hashes differ from ours
    code = ("import pickle, sys, numpy as np, scalargrad as sg; from scalargrad.record.pytrees import TreeShape;"
            "t = pickle.loads(sys.stdin.buffer.read());"
            "fresh = TreeShape(sg.tree_structure({'w': 1.0, 'b': [2.0, None]}), (None, None));"
            "print(t == fresh and hash(t) == hash(fresh) and {fresh: 1}.get(t))")
    shape = TreeShape(sg.tree_structure({"b": [1.0, None], "w": 0.0}), (None, None))
    done = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(shape), capture_output=True,
                          env={**os.environ, "PYTHONHASHSEED": "12345"}, timeout=120)
    assert done.stdout.decode().strip() == "1", done.stderr.decode()


def test_registration_errors():
    with pytest.raises(TypeError, match="expects a dataclass"):
        sg.register_dataclass(Pair)
    with pytest.raises(ValueError, match="built-in pytree node"):
        sg.register_pytree_node(dict, lambda d: ((), None), lambda m, c: {})
    with pytest.raises(ValueError, match=r"meta_fields \['nope'\] are not fields"):
        sg.register_dataclass(dataclasses.make_dataclass("D", ["a"]), meta_fields=("nope",))
    with pytest.raises(TypeError, match="metadata must be hashable"):
        sg.tree_flatten(Pair(1.0, 2.0, tag=[1]))
    with pytest.raises(ValueError, match="has 2 leaves, got 3"):
        sg.tree_unflatten(sg.tree_structure((1, 2)), [1, 2, 3])


# --- pytree arguments and outputs -----------------------------------------------------------------

def mlp_loss(params, x):
    hidden = np.tanh(params["W"] @ x + params["b"])
    return params["scale"] * (hidden ** 2).sum() + params["extra"][0] * params["extra"][1].sum()


PARAMS = {"W": np.array([[0.3, -0.2, 0.5], [0.1, 0.4, -0.6]]), "b": np.array([0.05, -0.1]), "scale": 1.5,
          "extra": (2.0, np.array([0.5, -1.0])), "unused": None}
X = np.array([1.0, -2.0, 0.5])


def test_grad_of_a_dict_of_parameters_matches_finite_differences():
    value, g = sg.value_and_grad(mlp_loss)(PARAMS, X)
    assert value == pytest.approx(mlp_loss(PARAMS, X), rel=1e-14)
    assert type(g) is dict and set(g) == set(PARAMS) and g["unused"] is None and type(g["extra"]) is tuple
    assert type(g["scale"]) is float and g["W"].shape == (2, 3)
    assert_tree_close(g, fd_tree(lambda p: mlp_loss(p, X), PARAMS))
    assert_tree_close(sg.grad(mlp_loss)(PARAMS, X), g, rtol=0, atol=0)


def loss_of_structures(point, layers, pair):
    total = point.x * point.y ** 2
    for layer in layers:
        total = total + (layer.w * layer.w).sum() * layer.b
    return total + pair.first * sg.sin(pair.second[0]) + pair.second[1]


def test_namedtuple_dataclass_and_registered_class_arguments():
    args = (Point(1.5, -2.0), [Linear(np.array([0.5, 1.0]), 2.0), Linear(np.array([-1.0, 0.25]), 0.5)],
            Pair(0.7, [0.3, 1.1], tag="q"))
    grads = sg.grad(loss_of_structures, argnums=(0, 1, 2))(*args)
    assert type(grads[0]) is Point and type(grads[1][0]) is Linear and type(grads[2]) is Pair and grads[2].tag == "q"
    for i in range(3):
        assert_tree_close(grads[i], fd_tree(lambda t: loss_of_structures(*args[:i], t, *args[i + 1:]), args[i]))


def test_frozen_dataclass_with_a_static_field():
    def f(layer, x):
        out = (layer.w * x).sum()
        return sg.tanh(out) if layer.activation == "tanh" else out * out
    layer = Layer(np.array([0.2, -0.4]))
    g = sg.grad(f)(layer, np.array([1.0, 2.0]))
    assert type(g) is Layer and g.activation == "tanh"
    assert_tree_close(g, fd_tree(lambda t: f(t, np.array([1.0, 2.0])), layer))
    relu = Layer(np.array([0.2, -0.4]), "square")
    np.testing.assert_allclose(sg.grad(f)(relu, np.array([1.0, 2.0])).w, 2 * (-0.6) * np.array([1.0, 2.0]))


def test_jit_returns_pytrees_of_floats_and_arrays():
    def f(p):
        return {"sum": p.x + p.y, "both": Point(p.x * 2.0, np.array([p.x, p.y])), "nothing": None,
                "nested": [(p.x,), [p.y * p.y]]}
    out = sg.jit(f)(Point(1.0, 3.0))
    assert out["sum"] == 4.0 and type(out["sum"]) is float and out["nothing"] is None
    assert type(out["both"]) is Point and out["both"].x == 2.0
    np.testing.assert_array_equal(out["both"].y, [1.0, 3.0])
    assert out["nested"] == [(1.0,), [9.0]]
    assert sg.jit(lambda t: (t[0], np.array([t[1], t[0]])))((1.0, 2.0))[1].tolist() == [2.0, 1.0]


def test_pytree_arguments_retrace_only_for_a_new_structure():
    f = counting(lambda p: sum(w * w for w in p["w"]) + p["b"])
    vg = sg.value_and_grad(f)
    vg({"w": np.ones(2), "b": 1.0})
    vg({"b": 5.0, "w": np.array([2.0, 3.0])})  # same structure, new values, other insertion order
    assert f.calls == 1 and len(vg.cache) == 1
    assert vg({"b": 5.0, "w": np.array([2.0, 3.0])}) == (18.0, {"b": 1.0, "w": pytest.approx(np.array([4.0, 6.0]))})
    vg({"w": np.ones(3), "b": 1.0})        # another leaf shape
    vg({"w": [1.0, 1.0], "b": 1.0})        # a list instead of an array
    vg({"w": np.ones(2), "b": 1.0, "c": None})  # another key
    assert f.calls == 4 and len(vg.cache) == 4


def test_leaf_errors_name_the_argument_and_the_leaf():
    f = lambda params, x: params["w"] * x  # noqa: E731
    with pytest.raises(TypeError, match=re.escape("argument 0 ('params')['name']: expected a float")):
        sg.grad(f)({"w": 1.0, "name": "layer"}, 2.0)
    with pytest.raises(TypeError, match=re.escape("argument 1 ('x')[1]: bool is not differentiable")):
        sg.grad(f)({"w": 1.0}, [2.0, True])
    with pytest.raises(TypeError, match="register its class with sg.register_dataclass"):
        sg.grad(f)(dataclasses.make_dataclass("Unregistered", ["w"])(1.0), 2.0)


def test_grad_of_grad_with_a_pytree_and_variables():
    def inner(p):
        return p["a"] ** 3 * (p["v"] ** 2).sum()
    p = {"a": 1.3, "v": np.array([0.5, -2.0])}
    outer = sg.grad(lambda q: sg.grad(inner)(q)["a"])  # d/dq of 3 a^2 sum(v^2)
    assert_tree_close(outer(p), fd_tree(lambda q: 3 * q["a"] ** 2 * (q["v"] ** 2).sum(), p))
    a, v = sg.Variable(1.3), sg.Variable(0.5)
    g = sg.grad(inner)({"a": a, "v": np.array([v, sg.Variable(-2.0)])})  # eager: records, differentiable
    assert type(g["a"]) is sg.Variable and g["a"].data == pytest.approx(3 * 1.3 ** 2 * 4.25)
    g["a"].backward()
    assert a.grad == pytest.approx(6 * 1.3 * 4.25) and v.grad == pytest.approx(3 * 1.3 ** 2 * 2 * 0.5)


def test_compile_takes_the_flat_leaves_in_tree_flatten_order():
    k = sg.value_and_grad(lambda p: p["b"] * (p["a"] ** 2).sum()).compile({"b": 2.0, "a": np.ones(2)})
    x, g = np.array([3.0, 4.0, 0.5]), np.empty(3)  # leaves: a (2 entries), then b
    assert k(x, g) == pytest.approx(0.5 * 25.0)
    np.testing.assert_allclose(g, [3.0, 4.0, 25.0])


def test_vmap_maps_pytree_arguments_and_outputs():
    def f(p, x):
        return {"value": (p["w"] * x).sum() + p["b"], "w2": p["w"] * p["w"]}
    P = {"w": np.arange(6.0).reshape(3, 2), "b": np.array([1.0, 2.0, 3.0])}
    x = np.array([1.0, -1.0])
    out = sg.vmap(sg.jit(f), in_axes=(0, None))(P, x)
    np.testing.assert_allclose(out["value"], [0.0, 1.0, 2.0])
    np.testing.assert_allclose(out["w2"], P["w"] ** 2)
    values, g = sg.vmap(sg.value_and_grad(lambda p, x: f(p, x)["value"] ** 2), in_axes=(0, None))(P, x)
    np.testing.assert_allclose(values, [0.0, 1.0, 4.0])
    np.testing.assert_allclose(g["b"], 2 * np.array([0.0, 1.0, 2.0]))
    np.testing.assert_allclose(g["w"], 2 * np.array([0.0, 1.0, 2.0])[:, None] * x)
    with pytest.raises(TypeError, match=r"takes positional arguments only .* got keyword arguments \['scale'\]"):
        sg.vmap(sg.jit(scaled))(np.ones((2, 2)), scale=2.0)


# --- keyword arguments ----------------------------------------------------------------------------

def scaled(x, scale=1.0, data=None, power=2, mode="sum"):
    terms = scale * x ** power * (1.0 if data is None else data)
    return terms.sum() if mode == "sum" else terms.max()


def test_float_and_array_keywords_are_traced_and_not_differentiated():
    f = counting(scaled)
    vg = sg.value_and_grad(f)
    x = np.array([1.0, 2.0])
    for scale, data in [(2.0, np.array([1.0, 3.0])), (0.5, np.array([-1.0, 4.0])), (np.float32(3.0), np.ones(2))]:
        value, g = vg(x, scale=scale, data=data)
        assert value == pytest.approx(scaled(x, float(scale), data))
        np.testing.assert_allclose(g, central_diff(lambda *v: scaled(np.array(v), float(scale), data), x), rtol=1e-6)
    assert f.calls == 1  # new float and array values reuse the traced path
    assert len(sg.trace(scaled, x, scale=2.0, data=np.ones(2)).inputs) == 5  # x, then scale, then data


def test_int_bool_and_str_keywords_are_static():
    f = counting(scaled)
    jitted = sg.jit(f)
    x = np.array([1.0, 2.0])
    assert jitted(x, power=2) == 5.0 and jitted(x, power=3) == 9.0 and jitted(x, power=3) == 9.0
    assert jitted(x, mode="max") == 4.0
    assert f.calls == 3  # power=2, power=3 (once), mode="max": each new static value traces
    assert jitted(x, power=True) == 3.0 and f.calls == 4  # True is not 1: types are part of the key


def test_keyword_pytrees_mix_traced_and_static_leaves():
    def f(x, opts):
        return opts["scale"] * x ** opts["power"] + opts["shift"].sum()
    f = counting(f)
    g = sg.grad(f)
    assert g(2.0, opts={"scale": 3.0, "power": 2, "shift": np.ones(2)}) == 12.0
    assert g(2.0, opts={"scale": 1.0, "power": 2, "shift": np.zeros(2)}) == 4.0
    assert f.calls == 1
    assert g(2.0, opts={"scale": 1.0, "power": 3, "shift": np.zeros(2)}) == 12.0 and f.calls == 2


def test_keyword_errors_name_the_keyword():
    with pytest.raises(TypeError, match=re.escape("scaled: keyword argument 'data': a set is neither traced")):
        sg.grad(scaled)(np.ones(2), data={1.0})
    with pytest.raises(TypeError, match=re.escape("keyword argument 'scale': complex numbers are not supported")):
        sg.jit(scaled)(np.ones(2), scale=1j)
    with pytest.raises(FloatingPointError, match=re.escape("nan in keyword argument 'scale'")):
        sg.grad(scaled, debug_nans=True)(np.ones(2), scale=float("nan"))


def test_keywords_reach_every_transform():
    x, v = np.array([0.5, -1.0]), np.array([1.0, 2.0])
    f = lambda x, scale=1.0: scale * (x ** 3).sum()  # noqa: E731
    H = np.diag(6.0 * 2.0 * x)
    np.testing.assert_allclose(sg.hessian(f)(x, scale=2.0), H)
    np.testing.assert_allclose(sg.hvp(f)(x, v, scale=2.0), H @ v)
    assert sg.jvp(f)(x, v, scale=2.0) == pytest.approx((f(x, 2.0), 2.0 * 3 * x ** 2 @ v))
    np.testing.assert_allclose(sg.jacobian(f)(x, scale=2.0), 2.0 * 3 * x ** 2)
    k = sg.grad(f).compile(x, scale=2.0)  # the flat vector: x, then scale
    g = np.empty(3)
    assert k(np.array([0.5, -1.0, 4.0]), g) == pytest.approx(f(x, 4.0))
    np.testing.assert_allclose(g, [3.0, 12.0, f(x)])


def test_a_traced_keyword_value_inside_a_trace_is_differentiable():
    # d/ds of grad(f)(x, scale=s): the keyword carries the outer trace's value
    f = lambda x, scale=1.0: scale * scale * x ** 3  # noqa: E731
    outer = sg.grad(lambda s: sg.grad(f)(2.0, scale=s))
    assert outer(1.5) == pytest.approx(central_diff(lambda s: s * s * 3 * 2.0 ** 2, [1.5])[0], rel=1e-8)


# --- has_aux ---------------------------------------------------------------------------------------

def loss_with_aux(w, x):
    pred = w * x
    loss = ((pred - 1.0) ** 2).sum()
    return loss, {"pred": pred, "mean": pred.mean(), "label": None}


def test_has_aux_returns_the_aux_pytree_as_floats_and_arrays():
    w, x = np.array([0.5, -1.0]), np.array([2.0, 3.0])
    (value, aux), g = sg.value_and_grad(loss_with_aux, has_aux=True)(w, x)
    assert value == pytest.approx(loss_with_aux(w, x)[0])
    np.testing.assert_allclose(g, central_diff(lambda *v: loss_with_aux(np.array(v), x)[0], w), rtol=1e-6)
    assert set(aux) == {"pred", "mean", "label"} and aux["label"] is None and type(aux["mean"]) is float
    np.testing.assert_array_equal(aux["pred"], w * x)
    g2, aux2 = sg.grad(loss_with_aux, has_aux=True)(w * 2, x)  # aux follows the inputs, not the trace
    np.testing.assert_array_equal(aux2["pred"], 2 * w * x)
    np.testing.assert_allclose(g2, central_diff(lambda *v: loss_with_aux(np.array(v), x)[0], 2 * w), rtol=1e-6)


def test_has_aux_scalar_aux_decorator_branches_and_argnums():
    @sg.grad(argnums=(0, 1), has_aux=True)
    def f(a, b):
        if a > 0:
            return a * b, a + b
        return -a * b, a - b
    assert f(2.0, 3.0) == ((3.0, 2.0), 5.0)
    assert f(-2.0, 3.0) == ((-3.0, 2.0), -5.0)


def test_has_aux_errors():
    with pytest.raises(TypeError, match="with has_aux=True must return a pair"):
        sg.grad(lambda x: x * 2.0, has_aux=True)(1.0)
    with pytest.raises(TypeError, match="value, the first of the pair it returns, must be a scalar"):
        sg.grad(lambda x: (np.array([x, x]), x), has_aux=True)(1.0)
    with pytest.raises(TypeError, match=re.escape("pass has_aux=True if it returns (value, aux)")):
        sg.grad(lambda x: (x * 2.0, {"a": x}))(1.0)


def test_has_aux_inside_a_trace_and_under_vmap():
    f = lambda x: (x ** 3, {"sq": x * x})  # noqa: E731
    assert sg.grad(lambda x: sg.grad(f, has_aux=True)(x)[0])(2.0) == pytest.approx(12.0)
    assert sg.grad(lambda x: sg.grad(f, has_aux=True)(x)[1]["sq"])(2.0) == pytest.approx(4.0)
    g, aux = sg.vmap(sg.grad(f, has_aux=True))(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(g, [3.0, 12.0, 27.0])
    np.testing.assert_allclose(aux["sq"], [1.0, 4.0, 9.0])


# --- argnums on jvp, hvp, hessian, jacobian --------------------------------------------------------

def two_args(x, y):
    return (x ** 2 * y).sum() + sg.sin(y[0]) * x[1] + x[0] * x[1] * y[1] ** 2


XA, YA = np.array([0.7, -1.2]), np.array([0.4, 1.5])


def full_hessian():
    """The Hessian of two_args over the concatenation (x, y), by finite differences of the gradient."""
    z = np.concatenate([XA, YA])
    grad = sg.grad(lambda z: two_args(z[:2], z[2:]))
    return np.array([central_diff(lambda *v: grad(np.array(v))[i], z) for i in range(4)])


def test_hessian_with_argnums_gives_the_blocks():
    H = full_hessian()
    np.testing.assert_allclose(sg.hessian(two_args, argnums=1)(XA, YA), H[2:, 2:], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(sg.hessian(two_args, argnums=-1)(XA, YA), H[2:, 2:], rtol=1e-6, atol=1e-8)
    blocks = sg.hessian(two_args, argnums=(0, 1))(XA, YA)
    for i, rows in enumerate((slice(0, 2), slice(2, 4))):
        for j, cols in enumerate((slice(0, 2), slice(2, 4))):
            np.testing.assert_allclose(blocks[i][j], H[rows, cols], rtol=1e-6, atol=1e-8)


def test_hvp_jvp_and_jacobian_with_argnums():
    H = full_hessian()
    v = np.array([0.3, -0.8])
    np.testing.assert_allclose(sg.hvp(two_args, argnums=1)(XA, YA, v), H[2:, 2:] @ v, rtol=1e-6)
    hx, hy = sg.hvp(two_args, argnums=(0, 1))(XA, YA, (v, 2 * v))
    np.testing.assert_allclose(np.concatenate([hx, hy]), H @ np.concatenate([v, 2 * v]), rtol=1e-6)
    gy = central_diff(lambda *y: two_args(XA, np.array(y)), YA)
    gx = central_diff(lambda *x: two_args(np.array(x), YA), XA)
    value, dot = sg.jvp(two_args, argnums=1)(XA, YA, v)
    assert value == pytest.approx(two_args(XA, YA)) and dot == pytest.approx(gy @ v, rel=1e-6)
    assert sg.jvp(two_args, argnums=(0, 1))(XA, YA, (v, v))[1] == pytest.approx(gx @ v + gy @ v, rel=1e-6)
    jx, jy = sg.jacobian(two_args, argnums=(0, 1))(XA, YA)
    np.testing.assert_allclose(jx, gx, rtol=1e-6)
    np.testing.assert_allclose(jy, gy, rtol=1e-6)
    vec = lambda x, y: np.array([x[0] * y[1], sg.exp(y[0]) * x[1], x[0] + y[0]])  # noqa: E731
    for mode in ("forward", "reverse"):
        J = sg.jacobian(vec, mode=mode, argnums=1)(XA, YA)
        np.testing.assert_allclose(J, [[0, XA[0]], [np.exp(YA[0]) * XA[1], 0], [1, 0]], rtol=1e-12)


def test_argnums_inside_a_trace_match_the_compiled_results():
    v = np.array([0.3, -0.8])
    for transform, extra in [(sg.hessian(two_args, argnums=(0, 1)), ()), (sg.jacobian(two_args, argnums=1), ()),
                             (sg.hvp(two_args, argnums=1), (v,)), (sg.jvp(two_args, argnums=1), (v,))]:
        compiled = transform(XA, YA, *extra)
        recorded = sg.jit(lambda x, y: transform(x, y, *extra))(XA, YA)  # inside a trace: recorded symbolically
        assert_tree_close(sg.tree_map(np.asarray, recorded), sg.tree_map(np.asarray, compiled), rtol=1e-12)


def test_second_order_transforms_of_pytree_arguments():
    def f(p):
        return (p["a"] ** 2).sum() * p["b"] + sg.exp(p["a"][0] * p["b"])
    p = {"a": np.array([0.5, -0.3]), "b": 1.2}
    H = sg.hessian(f)(p)
    grad = sg.grad(f)
    expect_ab = fd_tree(lambda q: grad(q)["b"], p)["a"]
    np.testing.assert_allclose(H["b"]["a"], expect_ab, rtol=1e-6)
    np.testing.assert_allclose(H["a"]["b"], expect_ab, rtol=1e-6)
    assert type(H["b"]["b"]) is float and H["a"]["a"].shape == (2, 2)
    direction = {"a": np.array([1.0, 0.0]), "b": 0.5}
    hv = sg.hvp(f)(p, direction)
    np.testing.assert_allclose(hv["a"], H["a"]["a"] @ direction["a"] + H["a"]["b"] * 0.5, rtol=1e-12)
    assert hv["b"] == pytest.approx(H["b"]["a"] @ direction["a"] + H["b"]["b"] * 0.5, rel=1e-12)
    J = sg.jacobian(lambda p: {"f": f(p), "a2": p["a"] * p["b"]})(p)
    assert_tree_close(J["f"], sg.grad(f)(p), rtol=1e-12)
    np.testing.assert_allclose(J["a2"]["a"], np.eye(2) * 1.2)
    message = "the direction v['b'] has shape (1,), but argument 0['b'] has shape ()"
    with pytest.raises(ValueError, match=re.escape(message)):
        sg.hvp(f)(p, {"a": np.ones(2), "b": [1.0]})
    with pytest.raises(ValueError, match=re.escape("hvp(f): the direction v is a list, where the structure has")):
        sg.hvp(f)(p, [np.ones(2), 1.0])


def test_jvp_of_pytree_primals_and_outputs():
    def f(p, s):
        return {"energy": s * (p["q"] ** 2).sum(), "q3": p["q"] ** 3}
    p, s = {"q": np.array([0.5, -1.0])}, 2.0
    tp, ts = {"q": np.array([1.0, 0.5])}, 0.25
    out, tout = sg.jvp(f, (p, s), (tp, ts))
    assert out["energy"] == pytest.approx(2.5) and type(tout["energy"]) is float
    h = 1e-6
    up = f({"q": p["q"] + h * tp["q"]}, s + h * ts)
    down = f({"q": p["q"] - h * tp["q"]}, s - h * ts)
    assert tout["energy"] == pytest.approx((up["energy"] - down["energy"]) / (2 * h), rel=1e-7)
    np.testing.assert_allclose(tout["q3"], (up["q3"] - down["q3"]) / (2 * h), rtol=1e-7)
    with pytest.raises(ValueError, match=re.escape("tangent 0 is a list, where the structure has a dict")):
        sg.jvp(f, (p, s), ([np.ones(2)], ts))


def test_argnums_errors():
    with pytest.raises(ValueError, match="argnums=2 but it was called with 2 positional arguments"):
        sg.hessian(two_args, argnums=2)(XA, YA)
    with pytest.raises(TypeError, match="direction must be a tuple of 2 tangents"):
        sg.hvp(two_args, argnums=(0, 1))(XA, YA, XA)
    with pytest.raises(NotImplementedError, match="first argument only"):
        sg.hessian(two_args, sparse=True, argnums=1)
    with pytest.raises(TypeError, match="argnums belongs to the other spelling"):
        sg.jvp(two_args, (XA, YA), (XA, YA), argnums=1)
