"""The untrusted-folder policy: a model folder may name only classes of transformers and
sentence-transformers, and a hub id is read from the local cache unless downloads are allowed."""

from __future__ import annotations

import json
from pathlib import Path

from ragapp.config import ModelsConfig
from ragapp.errors import ModelNotAvailableError

# Files whose `auto_map` would make transformers import code shipped inside the model folder.
_CONFIG_FILES = ("config.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json",
                 "feature_extractor_config.json", "image_processor_config.json")
_MAX_CONFIG_BYTES = 16 << 20


def read_config(file: Path):
    """A model folder's JSON configuration file, refused (ValueError) past 16 MB."""
    if file.stat().st_size > _MAX_CONFIG_BYTES:
        raise ValueError(f"{file.name} is over {_MAX_CONFIG_BYTES >> 20} MB")
    return json.loads(file.read_text(encoding="utf-8"))


def check_model_folder(folder: Path, allow_custom: bool = False) -> None:
    """Refuse a model folder whose configuration names classes outside transformers and
    sentence-transformers (a transformers `auto_map`, a sentence-transformers module type from
    another package), unless `allow_custom`; such a folder would run code it brings along."""
    if allow_custom:
        return
    problems: list[str] = []
    folders = [folder]
    try:
        if (folder / "modules.json").is_file():
            modules = read_config(folder / "modules.json")
            for module in modules if isinstance(modules, list) else [modules]:
                kind = module.get("type") if isinstance(module, dict) else None
                if not (isinstance(kind, str) and kind.startswith("sentence_transformers.")):
                    problems.append(f"modules.json names {kind!r}")
                sub = module.get("path") if isinstance(module, dict) else None
                if isinstance(sub, str) and sub and (folder / sub).resolve().is_relative_to(folder.resolve()):
                    folders.append(folder / sub)
        for where in folders:
            for name in _CONFIG_FILES:
                if (where / name).is_file():
                    data = read_config(where / name)
                    if isinstance(data, dict) and "auto_map" in data:
                        problems.append(f"{(where / name).relative_to(folder)} has an auto_map (code shipped with the model)")
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelNotAvailableError(f"{folder}: unreadable model configuration ({exc})") from exc
    if problems:
        raise ModelNotAvailableError(
            f"{folder}: refused: {'; '.join(problems)}. ragapp loads only classes of transformers and "
            "sentence-transformers; if you trust this folder, set allow_custom_classes = true in [models] "
            "(code inside the folder still never runs: trust_remote_code stays off)")


def model_folder(name: str, policy: ModelsConfig, what: str) -> str:
    """The checked local folder of a model given as a folder or a hub id. A hub id is taken from the
    local Hugging Face cache, and downloaded only when the user allowed downloads."""
    folder = Path(name).expanduser()
    if not folder.is_dir() and (name.startswith((".", "/", "~")) or name.count("/") > 1):
        raise ModelNotAvailableError(f"cannot load {what} {name!r}: no such folder")
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download
            from huggingface_hub.errors import HfHubHTTPError

            folder = Path(snapshot_download(name, local_files_only=not policy.allow_downloads))
        except (OSError, ValueError, ImportError, HfHubHTTPError) as exc:
            hint = ("" if policy.allow_downloads else
                    "; ragapp downloads nothing unless you opt in with allow_downloads = true in [models]")
            raise ModelNotAvailableError(f"cannot load {what} {name!r}: not a packaged model, a local folder or in the "
                                         f"local Hugging Face cache ({type(exc).__name__}){hint}") from exc
    check_model_folder(folder, policy.allow_custom_classes)
    return str(folder)
