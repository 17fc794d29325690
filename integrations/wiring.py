"""Builds the long-lived parts (detector, incident store) from Settings. Used by entry points only."""

from __future__ import annotations

from detectors import Detector
from integrations.settings import Settings
from knowledge.embedding import PooledEmbedder, SequenceEmbedder, TemplateMeanEmbedder
from knowledge.open import StoreLocation, open_store
from knowledge.store import IncidentStore


def load_detector(settings: Settings) -> Detector:
    return Detector.load(
        settings.model_dir,
        encoder_path=settings.encoder_path,
        cache_entries=settings.embedding_cache_entries,
        cache_path=settings.embedding_cache_path,
    )


def store_location(settings: Settings) -> StoreLocation:
    return StoreLocation(
        data_dir=settings.data_dir,
        collection=settings.qdrant_collection,
        engine=settings.embedded_store,
        qdrant_url=settings.qdrant_url,
        qdrant_api_key=settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None,
        shard_number=settings.qdrant_shards,
        replication_factor=settings.qdrant_replication,
        write_consistency_factor=settings.qdrant_write_consistency,
        timeout_s=settings.qdrant_timeout_s,
    )


def incident_embedder(settings: Settings, detector: Detector) -> SequenceEmbedder:
    if settings.incident_vector == "template-mean":
        return TemplateMeanEmbedder(detector.cache)
    return PooledEmbedder(detector)


def open_incident_store(settings: Settings, detector: Detector) -> IncidentStore:
    return open_store(store_location(settings), incident_embedder(settings, detector))
