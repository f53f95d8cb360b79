"""Each published reference model still scores what its model card says, and its card is whole."""

from __future__ import annotations

import json

import pytest

from tests.conftest import CIFAR_TEST, needs_shared
from vitopt.evaluate import Predictor, evaluate, torch_predict
from vitopt.models import load_model
from vitopt.zoo import WEIGHTS_DIR, ZOO

CARDS = sorted(WEIGHTS_DIR.glob("*.json"))
SLICE_KEY = "test_slice_1000"


def test_every_weights_file_has_a_card_and_a_zoo_entry():
    weights = {p.stem for p in WEIGHTS_DIR.glob("*.safetensors")}
    cards = {p.stem for p in CARDS}
    assert weights == cards
    assert {f"vitopt/{name}" for name in weights} <= set(ZOO.names())


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize("card_path", CARDS, ids=[p.stem for p in CARDS])
def test_reference_matches_its_card_within_one_point(card_path):
    card = json.loads(card_path.read_text())
    model = load_model(name=card["name"])
    assert model.weights == "zoo"
    predictor = Predictor(torch_predict(model.module), model.spec, card["name"])
    measured = evaluate(predictor=predictor, data=CIFAR_TEST, limit=1000)
    expected = card["accuracy"][SLICE_KEY]
    assert measured["n_images"] == expected["n_images"] == 1000
    assert abs(measured["top1"] - expected["top1"]) <= 0.01
