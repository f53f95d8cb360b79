"""vitopt.registry: the name -> entry table behind passes, targets and the model zoo."""

from __future__ import annotations

import pytest

from vitopt.errors import InputError, RecipeError, UnknownModelError, did_you_mean
from vitopt.formats import FORMATS
from vitopt.passes import PASSES
from vitopt.registry import Registry
from vitopt.zoo import ZOO


@pytest.fixture
def widgets() -> Registry[int]:
    reg: Registry[int] = Registry("widget", error=UnknownModelError)
    for i, name in enumerate(["gamma", "alpha", "beta"]):
        reg.add(name, i)
    return reg


def test_get_returns_registered_entry(widgets):
    assert widgets.get("alpha") == 1
    assert "beta" in widgets
    assert "delta" not in widgets


def test_register_decorator_adds_and_returns_the_entry():
    reg: Registry[type] = Registry("thing")

    @reg.register("mine")
    class Mine:
        pass

    assert reg.get("mine") is Mine


def test_duplicate_registration_raises(widgets):
    with pytest.raises(ValueError, match="'alpha' is registered twice"):
        widgets.add("alpha", 99)
    assert widgets.get("alpha") == 1


def test_unknown_name_raises_configured_error_with_did_you_mean(widgets):
    with pytest.raises(UnknownModelError) as info:
        widgets.get("alpah")
    assert info.value.message == "unknown widget 'alpah'"
    assert info.value.hint == "did you mean 'alpha'?"
    assert "did you mean 'alpha'?" in str(info.value)
    assert info.value.exit_code == 2


def test_unknown_name_without_close_match_lists_known_names(widgets):
    with pytest.raises(UnknownModelError) as info:
        widgets.get("zzzzzz")
    assert info.value.hint == "known: alpha, beta, gamma"


def test_empty_registry_says_none_yet():
    with pytest.raises(InputError, match="none yet"):
        Registry("pass").get("prune")


def test_default_error_is_input_error():
    with pytest.raises(InputError) as info:
        Registry("thing").get("x")
    assert type(info.value) is InputError


def test_iteration_and_names_are_sorted(widgets):
    assert list(widgets) == ["alpha", "beta", "gamma"]
    assert widgets.names() == ["alpha", "beta", "gamma"]


def test_did_you_mean_returns_none_when_nothing_is_close():
    assert did_you_mean("qqqq", ["alpha", "beta"]) is None
    assert did_you_mean("bta", ["alpha", "beta"]) == "did you mean 'beta'?"


def test_shared_registries_use_their_domain_errors():
    assert {"vitopt/tiny-vit", "vitopt/tiny-deit", "vitopt/vit-cifar10"} <= set(ZOO)
    assert "onnx" in FORMATS
    with pytest.raises(UnknownModelError, match="vitopt/tiny-vit"):
        ZOO.get("vitopt/tiny-vt")
    with pytest.raises(RecipeError):
        PASSES.get("no-such-pass")
