"""Load a model from what a user has: a timm name, a vitopt zoo name, a checkpoint,
a ``torch.export`` program (``.pt2``), a full pickled module, or ``file.py:factory``.

The model's input contract (:class:`ModelSpec`) is resolved here and travels with it.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitopt.checkpoints import load_into, read_checkpoint, state_dict_of
from vitopt.errors import (
    CheckpointError,
    UnknownModelError,
    UnsupportedOptionError,
    did_you_mean,
    one_line,
)
from vitopt.spec import ModelSpec
from vitopt.zoo import ZOO, ZooEntry

log = logging.getLogger("vitopt")
RANDOM_WEIGHTS_NOTICE = (
    "model {name!r} has RANDOM weights (no --checkpoint given and no trained weights known): "
    "latency and parity are meaningful, accuracy is not"
)


@dataclass
class LoadedModel:
    """A module in eval mode plus what vitopt knows about it."""

    module: nn.Module
    spec: ModelSpec
    source: str
    weights: str  # "random", "zoo", "checkpoint", "full-module", "exported-program", "factory", "pruned"
    notices: list[str]
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # what the architecture was built with


def load_model(
    *,
    name: str,
    checkpoint: str | Path | None = None,
    trust_checkpoint: bool = False,
    spec_overrides: dict[str, Any] | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> LoadedModel:
    """Resolve ``name`` to a model; ``spec_overrides`` (input_size, mean, std, labels...) win.

    ``model_kwargs`` go to the architecture's constructor (timm/zoo names, or a factory),
    e.g. ``{"num_classes": 10}`` or ``{"embed_dim": 96}`` for a half-width student.
    """
    loader = _pick_loader(name)
    module, spec, weights = loader(name, checkpoint=checkpoint, trust=trust_checkpoint, kwargs=model_kwargs or {})
    module = _eval_mode(module)
    overrides = dict(spec_overrides or {})
    labels = overrides.pop("labels", None)
    spec = _probe_num_classes(module, _apply_overrides(spec, overrides))
    spec = _with_labels(spec, labels)
    notices = []
    if weights == "random":
        notices.append(RANDOM_WEIGHTS_NOTICE.format(name=name))
        log.warning(notices[-1])
    return LoadedModel(module=module, spec=spec, source=name, weights=weights, notices=notices,
                       model_kwargs=dict(model_kwargs or {}))


def _eval_mode(module: nn.Module) -> nn.Module:
    try:
        return module.eval()
    except NotImplementedError:  # a torch.export module is already in inference form
        return module


def _apply_overrides(spec: ModelSpec, overrides: dict[str, Any]) -> ModelSpec:
    try:
        return spec.with_overrides(**overrides)
    except ValueError as err:
        raise UnsupportedOptionError(
            f"invalid input options (--input-size, --mean, --std): {err}",
            hint="--mean and --std take one value per input channel, or one for all; --std values must be > 0",
        ) from err


def _with_labels(spec: ModelSpec, labels) -> ModelSpec:
    """Labels are checked against the class count the model really has (probed)."""
    if labels is None:
        return spec
    if len(labels) != spec.num_classes:
        raise UnsupportedOptionError(
            f"{len(labels)} labels given for a model with {spec.num_classes} outputs",
            hint="the labels file needs one class name per output, in output order",
        )
    return replace(spec, labels=tuple(labels))


def _probe_num_classes(module: nn.Module, spec: ModelSpec) -> ModelSpec:
    """Run one dummy image: proves the input size fits and reads the true class count."""
    try:
        with torch.no_grad():
            out = module(torch.zeros(spec.batch_shape(1)))
    except Exception as err:  # any failure here means the declared input does not fit
        raise UnsupportedOptionError(
            f"model {spec.name!r} rejects input of shape {spec.batch_shape(1)}: {err}",
            hint="pass the right --input-size C,H,W",
        ) from err
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise UnsupportedOptionError(
            f"model {spec.name!r} returns {type(out).__name__} of shape "
            f"{getattr(out, 'shape', '?')}; vitopt expects classifier logits [batch, classes]"
        )
    if out.shape[1] == spec.num_classes:
        return spec
    labels = spec.labels if spec.labels and len(spec.labels) == out.shape[1] else None
    return replace(spec, num_classes=int(out.shape[1]), labels=labels)


def _pick_loader(name: str):
    from vitopt.pruning.saved import is_saved_model

    if is_saved_model(name):
        return _load_pruned
    if name.endswith(".pt2"):
        return _load_exported_program
    if ".py:" in name:
        return _load_factory
    if name.endswith((".pt", ".pth")):
        return _load_full_module
    if name.startswith("vitopt/"):
        return _load_zoo
    return _load_timm


def _load_timm(name: str, *, checkpoint, trust, kwargs) -> tuple[nn.Module, ModelSpec, str]:
    import timm

    if not timm.is_model(name):
        raise UnknownModelError(f"unknown model {name!r}", hint=_model_hint(name))
    state = _checkpoint_state(checkpoint, trust=trust)
    all_kwargs = {**_num_classes_from(state, timm.get_pretrained_cfg(name)), **kwargs}
    return _build_timm(name, kwargs=all_kwargs, given=kwargs, state=state, checkpoint=checkpoint)


def _load_zoo(name: str, *, checkpoint, trust, kwargs) -> tuple[nn.Module, ModelSpec, str]:
    entry: ZooEntry = ZOO.get(name)
    # the zoo's trained weights fit its own architecture only, not one changed by kwargs
    weights_file = checkpoint or (None if kwargs else entry.weights_path())
    state = _checkpoint_state(weights_file, trust=trust)
    module, spec, weights = _build_timm(
        entry.arch, kwargs={**entry.kwargs, **kwargs}, given=kwargs, state=state, checkpoint=weights_file
    )
    spec = spec.with_overrides(name=name, **entry.spec)
    return module, spec, "zoo" if state is not None and checkpoint is None else weights


def _build_timm(arch: str, *, kwargs, given, state, checkpoint) -> tuple[nn.Module, ModelSpec, str]:
    """``given`` are the user's --model-arg values among ``kwargs``: a failure is blamed on them."""
    import timm

    base = {k: v for k, v in kwargs.items() if k not in given}
    module = _construct(lambda: timm.create_model(arch, pretrained=False, **kwargs), what=arch, given=given,
                        accepts=lambda: _timm_class(arch, base))  # fmt: skip
    if state is not None:
        load_into(module, state, path=checkpoint)
    return module, spec_from_timm(module, name=arch), "random" if state is None else "checkpoint"


def _timm_class(arch: str, kwargs: dict[str, Any]) -> type | None:
    """The class timm builds for ``arch``, built on the meta device: no memory or init time spent."""
    import timm

    try:
        with torch.device("meta"):
            return type(timm.create_model(arch, pretrained=False, **kwargs))
    except Exception:  # it only feeds a hint; the error being explained stands without it
        return None


def _construct(build: Callable[[], Any], *, what: str, given: dict[str, Any], accepts: Callable[[], Any],
               user_code: bool = False) -> Any:  # fmt: skip
    """Call a model constructor. Constructors reject bad arguments with any exception type (TypeError,
    ValueError, AssertionError, a TypeError deep inside for depth='abc'), so any failure with --model-arg
    values is blamed on them; a user's factory failing on its own is its error, in one line."""
    try:
        return build()
    except Exception as err:
        if given:
            pairs = ", ".join(f"{k}={v!r}" for k, v in given.items())
            raise UnsupportedOptionError(f"model argument(s) {pairs} rejected by {what}: {one_line(err)}",
                                         hint=_arguments_hint(given, accepts())) from err
        if user_code:
            raise UnknownModelError(f"{what!r} failed to build a model: {one_line(err, with_type=True)}") from err
        raise


def _arguments_hint(given: dict[str, Any], target: Any) -> str | None:
    """What ``target`` accepts, read from its signature: the names when one is unknown, else the defaults."""
    params = _keyword_params(target)
    if not params:
        return None
    name = getattr(target, "__name__", "the constructor")
    unknown = [k for k in given if k not in params]
    if unknown:
        close = did_you_mean(unknown[0], params)
        return f"{close + ' ' if close else ''}{name} takes: {', '.join(params)}"
    shown = [k if params[k].default is inspect.Parameter.empty else f"{k}={params[k].default!r}" for k in given]
    return f"{name}'s defaults: " + ", ".join(shown)


def _keyword_params(target: Any) -> dict[str, inspect.Parameter]:
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):  # None, builtins and some C types have no readable signature
        return {}
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {n: p for n, p in params.items() if p.kind in kinds}


def _checkpoint_state(checkpoint, *, trust: bool) -> dict[str, torch.Tensor] | None:
    if checkpoint is None:
        return None
    return state_dict_of(read_checkpoint(checkpoint, trust=trust), path=checkpoint)


def _num_classes_from(state, cfg) -> dict[str, Any]:
    """A checkpoint fine-tuned on N classes rebuilds the model with an N-way head."""
    if state is None or cfg is None or not isinstance(cfg.classifier, str):
        return {}
    head = state.get(f"{cfg.classifier}.weight")
    if head is None or head.ndim != 2 or head.shape[0] == cfg.num_classes:
        return {}
    return {"num_classes": int(head.shape[0])}


def spec_from_timm(module: nn.Module, *, name: str) -> ModelSpec:
    """Input contract from timm's pretrained config, with labels for ImageNet-1k heads."""
    cfg = getattr(module, "pretrained_cfg", None) or {}
    num_classes = int(getattr(module, "num_classes", cfg.get("num_classes", 1000)))
    img_size = getattr(getattr(module, "patch_embed", None), "img_size", None)
    input_size = tuple(cfg.get("input_size", (3, 224, 224)))
    if img_size is not None:  # kwargs such as img_size=32 override the pretrained config
        input_size = (input_size[0], *img_size)
    return ModelSpec(
        name=name,
        input_size=input_size,
        mean=tuple(cfg.get("mean", ModelSpec.mean)),
        std=tuple(cfg.get("std", ModelSpec.std)),
        num_classes=num_classes,
        labels=_imagenet_labels() if num_classes == 1000 else None,
        interpolation=cfg.get("interpolation") or "bicubic",
        crop_pct=float(cfg.get("crop_pct") or 0.875),
    )


def _imagenet_labels() -> tuple[str, ...]:
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo().label_names())


def _model_hint(name: str) -> str:
    import timm

    return did_you_mean(name, [*timm.list_models(), *ZOO.names()]) or (
        "use a timm model name (see timm.list_models()), a vitopt/ name, a .pt2 file "
        "or path/to/file.py:factory"
    )


def _load_pruned(name: str, *, checkpoint, trust, kwargs) -> tuple[nn.Module, ModelSpec, str]:
    """A folder written by a pruning run (``<out>/pytorch``): safetensors plus the widths."""
    from vitopt.pruning.saved import load_saved

    _no_kwargs(kwargs, name)
    if checkpoint is not None:
        raise UnsupportedOptionError(f"{name!r} holds its own weights", hint="drop --checkpoint")
    module, spec = load_saved(Path(name))
    return module, spec, "pruned"


def _load_exported_program(name: str, *, checkpoint, trust, kwargs) -> tuple[nn.Module, ModelSpec, str]:
    _no_kwargs(kwargs, name)
    path = _existing(name)
    try:
        program = torch.export.load(str(path))
    except Exception as err:  # torch.export raises many types for a bad archive
        raise CheckpointError(f"cannot load exported program {name!r}: {err}") from err
    spec = ModelSpec(name=path.stem)
    shape = _program_input_shape(program)
    if shape is not None and len(shape) == 4:
        spec = spec.with_overrides(input_size=tuple(shape[1:]))
    return program.module(), spec, "exported-program"


def _program_input_shape(program) -> tuple[int, ...] | None:
    """The example input shape recorded in an ExportedProgram's graph."""
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs and "val" in node.meta:
            return tuple(int(s) for s in node.meta["val"].shape)
    return None


def _load_full_module(name: str, *, checkpoint, trust, kwargs) -> tuple[nn.Module, ModelSpec, str]:
    _no_kwargs(kwargs, name)
    obj = read_checkpoint(_existing(name), trust=trust)
    if not isinstance(obj, nn.Module):
        raise CheckpointError(
            f"{name!r} holds weights, not a model",
            hint="give the architecture as MODEL and this file as --checkpoint",
        )
    return obj, _generic_spec(obj, name=Path(name).stem), "full-module"


def _load_factory(name: str, *, checkpoint, trust, kwargs) -> tuple[nn.Module, ModelSpec, str]:
    file_part, factory_name = name.rsplit(":", 1)
    factory = _import_factory(file_part, factory_name)
    module = _construct(lambda: factory(**kwargs), what=name, given=kwargs, accepts=lambda: factory, user_code=True)
    if not isinstance(module, nn.Module):
        raise UnknownModelError(f"{name!r} returned {type(module).__name__}, not a torch nn.Module",
                                hint="the factory must return the model itself")
    state = _checkpoint_state(checkpoint, trust=trust)
    if state is not None:
        load_into(module, state, path=checkpoint)
    return module, _generic_spec(module, name=factory_name), "checkpoint" if state else "factory"


def _import_factory(file_part: str, factory_name: str) -> Callable[..., Any]:
    spec_ = importlib.util.spec_from_file_location("vitopt_user_model", _existing(file_part))
    module_obj = importlib.util.module_from_spec(spec_)
    try:
        spec_.loader.exec_module(module_obj)
    except Exception as err:  # the user's file runs here: SyntaxError, ImportError, whatever its top level raises
        raise UnknownModelError(f"importing {file_part!r} failed: {one_line(err, with_type=True)}",
                                hint=f"run `python {file_part}` to see the whole error") from err
    factory = getattr(module_obj, factory_name, None)
    if not callable(factory):
        raise UnknownModelError(f"{file_part!r} defines no callable {factory_name!r}")
    return factory


def _no_kwargs(kwargs: dict[str, Any], name: str) -> None:
    if kwargs:
        raise UnsupportedOptionError(
            f"model arguments {sorted(kwargs)} cannot change a saved model ({name!r})",
            hint="--model-arg applies to timm and vitopt/ names and to file.py:factory",
        )


def _generic_spec(module: nn.Module, *, name: str) -> ModelSpec:
    if getattr(module, "pretrained_cfg", None):
        return spec_from_timm(module, name=name)
    return ModelSpec(name=name)


def _existing(path: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise UnknownModelError(f"model file {path!r} does not exist", hint="check the path")
    return p
