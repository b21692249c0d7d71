"""Reading and writing model and run folders (``config.json`` + safetensors) without trusting them, and the one
format of latent3d's own models (:func:`write_model_folder` / :func:`read_model_folder`).

Every loader of a model folder (3DVADER's autodecoder run and generator, the priors, LDM3D folders) reads through
these helpers, so that a damaged folder -- invalid JSON, a missing key, a value of the wrong type, a truncated or
bit-flipped safetensors file, metadata that is not what its writer wrote -- is one
:class:`~latent3d.errors.UserError` line naming the file (and the key), never a traceback. Folders that diffusers or
transformers read go through :func:`hf_load`, which turns the exceptions those libraries raise for damaged files
into the same one line.

:func:`save_tensors`, the writer of every safetensors file with metadata, sorts the metadata keys: safetensors keeps
them in a Rust hash map whose order changes from process to process, so the same tensors would give other bytes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from latent3d.errors import UserError

T = TypeVar("T")
RETRAIN = "retrain or copy it again"
_MISSING = object()


def first_line(e: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (its type's name when it has none), at most ``limit`` characters."""
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:limit]


# ------------------------------------------------------------------------------------------------- JSON
def read_config(path: str | Path, fix: str = RETRAIN) -> dict:
    """A JSON object from ``path``; a missing or unreadable file, bad JSON or another JSON value is one error."""
    from latent3d.io.manifest import read_json

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: not found; {fix}")
    doc = read_json(path, fix)
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(doc).__name__}; {fix}")
    return doc


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:  # true is not a number here
        return False
    return isinstance(value, kinds) or (isinstance(value, int) and float in kinds)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {dict: "a JSON object", list: "a list", str: "a string", int: "a whole number", float: "a number",
             bool: "true or false", type(None): "null"}  # fmt: skip
    return " or ".join(names.get(k, k.__name__) for k in (kind if isinstance(kind, tuple) else (kind,)))


def _items_name(items: type | tuple[type, ...]) -> str:
    plural = {str: "strings", int: "whole numbers", float: "numbers", dict: "JSON objects", list: "lists"}
    return " or ".join(plural.get(k, k.__name__) for k in (items if isinstance(items, tuple) else (items,)))


def get(doc: Any, key: str, kind: type | tuple[type, ...], path: str | Path, fix: str = RETRAIN,
        items: type | tuple[type, ...] | None = None, default: Any = _MISSING) -> Any:  # fmt: skip
    """``doc[key]`` (``"a.b"`` for ``doc["a"]["b"]``) checked to be of ``kind`` (and, for a list, its ``items``);
    a missing key (without ``default``) or a wrong type is one error naming ``path`` and the key."""
    value = doc
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            if default is not _MISSING:
                return default
            raise UserError(f"{path}: no {key!r}; {fix}")
        value = value[part]
    bad_item = items is not None and isinstance(value, list) and not all(_is(v, items) for v in value)
    if not _is(value, kind) or bad_item:
        want = _kind_name(kind) + (f" of {_items_name(items)}" if items is not None else "")
        raise UserError(f"{path}: {key!r} must be {want}, got {json.dumps(value, default=str)[:60]}; {fix}")
    return value


def make_config(cls: Callable[..., T], doc: dict, key: str, path: str | Path, fix: str = RETRAIN) -> T:
    """The config dataclass ``cls`` from the JSON object ``doc[key]`` (lists become tuples). Unknown or missing
    fields are one error naming the key; the values themselves are checked by ``cls``, whose UserError is given the
    file and key."""
    values = get(doc, key, dict, path, fix)
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    except TypeError as e:
        raise UserError(f"{path}: {key!r} does not fit {getattr(cls, '__name__', cls)} ({first_line(e)}); "
                        f"{fix}") from None
    except UserError as e:  # a value the dataclass refuses (its message names the command-line option)
        raise UserError(f"{path}: {key!r}: {first_line(e)}; {fix}") from None


# ------------------------------------------------------------------------------------------------- safetensors
def damaged(path: str | Path, e: BaseException, fix: str = RETRAIN) -> UserError:
    return UserError(f"{path} is damaged (truncated or not safetensors: {first_line(e)}); {fix}")


def _safetensors_errors() -> tuple[type[BaseException], ...]:
    from safetensors import SafetensorError

    return (SafetensorError, OSError, ValueError, RuntimeError, MemoryError)


def load_tensors(path: str | Path, fix: str = RETRAIN) -> dict:
    """Every tensor of a safetensors file (a missing, truncated or corrupt file is one error)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: not found; {fix}")
    try:
        return load_file(str(path))
    except _safetensors_errors() as e:
        raise damaged(path, e, fix) from None


def read_metadata(path: str | Path, fix: str = RETRAIN) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file, without reading its tensors ({} when it has none)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: not found; {fix}")
    try:
        with safe_open(str(path), "pt") as f:
            return dict(f.metadata() or {})
    except _safetensors_errors() as e:
        raise damaged(path, e, fix) from None


def metadata_json(meta: dict[str, str], key: str, kind: type | tuple[type, ...], path: str | Path, fix: str = RETRAIN,
                  items: type | tuple[type, ...] | None = None, default: Any = _MISSING) -> Any:
    """The JSON-encoded metadata entry ``key`` of a safetensors file, parsed and checked as :func:`get` does."""
    if key not in meta:
        return get({}, key, kind, path, fix, items, default)
    try:
        value = json.loads(meta[key])
    except (ValueError, RecursionError) as e:
        raise UserError(f"{path}: metadata {key!r} is not JSON ({first_line(e, 80)}); {fix}") from None
    return get({key: value}, key, kind, path, fix, items)


def save_tensors(tensors: dict, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Atomically write ``tensors`` (contiguous copies) as safetensors with the ``metadata`` keys sorted, so that
    the same tensors and metadata give the same bytes in every process."""
    from safetensors.torch import save

    from latent3d.io.atomic import write_bytes

    data = save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the tensors start 8-byte aligned, as safetensors writes them
    return write_bytes(path, len(text).to_bytes(8, "little") + text + data[8 + n:])


# ------------------------------------------------------------------------------------------------- diffusers
def _hf_errors() -> tuple[type[BaseException], ...]:
    """What diffusers, transformers and huggingface_hub raise for a damaged folder (found by fuzzing their loaders:
    a config.json of another JSON type or with values of the wrong type, a truncated or corrupt safetensors file,
    a tokenizer file that is not JSON)."""
    from huggingface_hub.errors import StrictDataclassError

    return (*_safetensors_errors(), KeyError, TypeError, AttributeError, IndexError, ArithmeticError,
            StrictDataclassError)


def from_pretrained(klass: Any, folder: str | Path, **kw: Any) -> Any:
    """``klass.from_pretrained(folder, **kw)`` (safetensors only) refusing weights that are missing or do not fit
    the config: transformers re-initialises those at random with a warning, as if nothing were wrong."""
    model, info = klass.from_pretrained(str(folder), output_loading_info=True, use_safetensors=True, **kw)
    bad = {k: sorted(map(str, info.get(k) or ()))[:3] for k in ("missing_keys", "mismatched_keys")}
    if any(bad.values()):
        said = "; ".join(f"{k} {v}" for k, v in bad.items() if v)
        raise ValueError(f"weights missing or not fitting config.json: {said}")
    return model


def is_load_error(e: BaseException) -> bool:
    """Whether ``e`` is what a diffusers / transformers loader raises for a damaged folder."""
    return isinstance(e, _hf_errors()) or type(e) is Exception  # tokenizers raises plain Exception for a bad file


def hf_load(load: Callable[[], T], what: str, fix: str = RETRAIN) -> T:
    """``load()`` (``from_pretrained`` of a local folder) with a damaged folder turned into one error that starts with
    ``what`` (e.g. ``"--text-encoder DIR: not a text encoder"``) and ends with ``fix``."""
    try:
        return load()
    except UserError:
        raise
    except Exception as e:
        if is_load_error(e):
            raise UserError(f"{what} ({type(e).__name__}: {first_line(e)}); {fix}") from None
        raise


def fit_weights(build: Callable[[], T], folder: str | Path, fix: str = RETRAIN) -> T:
    """``build()`` -- networks made from a folder's config.json and given its weights -- with a config that does not
    describe the weights (other shapes, a width of the wrong type or sign) turned into one error naming the folder."""
    try:
        return build()
    except (TypeError, ValueError, RuntimeError, ArithmeticError, KeyError, IndexError, AttributeError) as e:
        raise UserError(f"{folder}: config.json does not describe the weights ({type(e).__name__}: "
                        f"{first_line(e)}); {fix}") from None


# ------------------------------------------------------------------------------------------ latent3d model folders
FORMAT = 1
WEIGHTS = "model.safetensors"


def write_model_folder(folder: str | Path, kind: str, config: dict[str, Any], tensors: dict, card: str | None = None,
                       write_more: Callable[[Path], None] | None = None) -> Path:  # fmt: skip
    """The one format of every latent3d-native model (measuring nets, autodecoder runs, object generators, NF-LDM's
    models), written atomically into ``folder``: ``config.json`` = ``{"latent3d": {"kind", "format"}, **config}``
    (config dataclasses as JSON objects; no wall times or paths, so the same training writes the same bytes),
    ``model.safetensors`` (``tensors``, never pickle), ``MODEL_CARD.md`` (``card``, when given) and whatever
    ``write_more(tmp_folder)`` adds (e.g. a transformers text encoder's ``save_pretrained``)."""
    from latent3d.io.atomic import atomic_dir

    doc = {"latent3d": {"kind": kind, "format": FORMAT},
           **{k: asdict(v) if is_dataclass(v) and not isinstance(v, type) else v for k, v in config.items()}}  # fmt: skip
    with atomic_dir(Path(folder)) as tmp:
        save_tensors(tensors, tmp / WEIGHTS)
        if write_more is not None:
            write_more(tmp)
        (tmp / "config.json").write_text(json.dumps(doc, indent=1))
        if card is not None:
            (tmp / "MODEL_CARD.md").write_text(card)
    return Path(folder)


@dataclass
class ModelFolder:
    """A folder of :func:`write_model_folder` whose config.json was checked to be of its kind; every accessor turns a
    bad entry, damaged weights or weights that do not fit into one UserError line ending with ``fix``."""

    path: Path
    meta: dict  # config.json
    fix: str

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    def config(self, cls: Callable[..., T], key: str) -> T:
        """The config dataclass ``cls`` stored under ``key`` (:func:`make_config`)."""
        return make_config(cls, self.meta, key, self.config_path, self.fix)

    def get(self, key: str, kind: type | tuple[type, ...], **kw: Any) -> Any:
        """``config.json[key]`` checked to be of ``kind`` (:func:`get`)."""
        return get(self.meta, key, kind, self.config_path, self.fix, **kw)

    def tensors(self) -> dict:
        return load_tensors(self.path / WEIGHTS, self.fix)

    def build(self, make: Callable[[], T]) -> T:
        """``make()`` -- the networks built from the config and given the weights -- under :func:`fit_weights`."""
        return fit_weights(make, self.path, self.fix)


def read_model_folder(folder: str | Path, kind: str, fix: str = RETRAIN) -> ModelFolder:
    """A folder written by :func:`write_model_folder` for ``kind``; a folder without its two files, or another kind
    (or no latent3d model at all), is one UserError line, before any weight is read."""
    folder = Path(folder)
    if not (folder / "config.json").is_file() or not (folder / WEIGHTS).is_file():
        raise UserError(f"{folder} is not a saved {kind} (config.json + {WEIGHTS} expected); {fix}")
    path = folder / "config.json"
    meta = read_config(path, fix)
    tag = meta.get("latent3d")
    found = tag.get("kind") if isinstance(tag, dict) else None
    if found != kind:
        said = f"a {found!r}" if isinstance(found, str) else "no latent3d model"
        raise UserError(f"{path}: holds {said}, not a {kind!r}; {fix}")
    if get(meta, "latent3d.format", int, path, fix) > FORMAT:
        raise UserError(f"{path}: format {meta['latent3d']['format']} is newer than this latent3d reads ({FORMAT}); "
                        "update latent3d")
    return ModelFolder(folder, meta, fix)
