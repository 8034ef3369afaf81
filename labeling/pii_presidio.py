"""The full path's finder and anonymizer: Presidio, loaded on first use and kept for the process.

Presidio and spaCy take seconds to import, so nothing here is imported until a record is masked; the
analyzer is built once per process (`analyzer()`), because building it compiles every recognizer.
The NLP engine is a blank English spaCy pipeline (a tokenizer): no official spaCy model installs from
PyPI, and every recognizer used here works on patterns, checksums and `phonenumbers`, not on NER.
Person names and postal addresses are therefore not detected (see the README's "What is masked").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, Final

from flywheel_feedback.labeling.pii_fast import PHONE_REGIONS
from flywheel_feedback.labeling.pii_recognizers import Kind, Span, find_secrets, phone_ok

if TYPE_CHECKING:  # heavy imports, for the type checker only
    from presidio_analyzer import AnalyzerEngine
    from presidio_anonymizer import AnonymizerEngine

logger = logging.getLogger(__name__)

# Presidio's entity names and ours
ENTITY_KINDS: Final[dict[str, Kind]] = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "SSN",
    "IP_ADDRESS": "IP",
    "API_KEY": "KEY",
    "SECRET": "SECRET",
}
KIND_ENTITIES: Final[dict[Kind, str]] = {kind: entity for entity, kind in ENTITY_KINDS.items()}
# Scores below these are not findings. Phones score 0.4 (phonenumbers already validated them); SSNs
# need Presidio's "medium" pattern (3-2-4 with separators), its bare nine-digit hits score 0.05.
MIN_SCORE: Final[dict[str, float]] = {"PHONE_NUMBER": 0.4, "US_SSN": 0.5}
DEFAULT_MIN_SCORE: Final = 0.5


def configure_tldextract_offline() -> Any:
    """Points tldextract at its bundled public-suffix snapshot, with no URLs to fetch and no disk cache.

    Presidio's e-mail recognizer calls `tldextract.extract`, whose default extractor downloads the
    suffix list on first use; here that would wait on the network and fail before falling back.
    """
    import tldextract
    import tldextract.tldextract as module

    extractor = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)
    module.TLD_EXTRACTOR = extractor  # `tldextract.extract` looks the module global up at each call
    return extractor


@cache
def analyzer() -> AnalyzerEngine:
    """Presidio's analyzer with the recognizers we rely on, built once per process."""
    configure_tldextract_offline()
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )

    class BlankSpacyEngine(SpacyNlpEngine):
        """spaCy's tokenizer only: no model package to load."""

        def load(self) -> None:
            # Presidio declares `nlp` as None until load() fills it
            self.nlp = {"en": spacy.blank("en")}  # type: ignore[assignment]

    registry = RecognizerRegistry(supported_languages=["en"])
    # An explicit list, not Presidio's defaults: those add US bank numbers, driver licences, dates and
    # more, which fire on any run of digits in our traffic.
    for recognizer in (
        EmailRecognizer(),
        PhoneRecognizer(supported_regions=PHONE_REGIONS),
        CreditCardRecognizer(),
        IbanRecognizer(),
        UsSsnRecognizer(),
        IpRecognizer(),
        _secret_recognizer(),
    ):
        registry.add_recognizer(recognizer)
    engine = BlankSpacyEngine()
    engine.load()
    logger.info("built the Presidio analyzer (%d recognizers)", len(list(registry.recognizers)))
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


@cache
def anonymizer() -> AnonymizerEngine:
    from presidio_anonymizer import AnonymizerEngine

    return AnonymizerEngine()  # type: ignore[no-untyped-call]  # its __init__ has no annotations


def _secret_recognizer() -> Any:
    """`labeling.pii_recognizers`' secret patterns as a Presidio recognizer, so both paths share them."""
    from presidio_analyzer import LocalRecognizer, RecognizerResult

    class SecretRecognizer(LocalRecognizer):
        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            return [
                RecognizerResult(KIND_ENTITIES[s.kind], s.start, s.end, 1.0)
                for s in find_secrets(text)
                if KIND_ENTITIES[s.kind] in entities
            ]

    return SecretRecognizer(supported_entities=["API_KEY", "SECRET", "US_SSN", "CREDIT_CARD"], name="secrets")


def find_spans_full(text: str) -> list[Span]:
    """Everything Presidio finds in `text` above our score floors, overlaps not yet resolved."""
    results = analyzer().analyze(text=text, language="en", entities=list(ENTITY_KINDS), score_threshold=0.0)
    return [
        Span(r.start, r.end, ENTITY_KINDS[r.entity_type])
        for r in results
        if r.score >= MIN_SCORE.get(r.entity_type, DEFAULT_MIN_SCORE)
        and (r.entity_type != "PHONE_NUMBER" or phone_ok(text, r.start, r.end))
    ]


def anonymize(text: str, spans: list[Span], placeholder: Callable[[Kind, str], str]) -> str:
    """`text` with each (non-overlapping) span replaced by `placeholder(kind, value)`, by Presidio's anonymizer."""
    from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

    results = [RecognizerResult(KIND_ENTITIES[s.kind], s.start, s.end, 1.0) for s in spans]

    def operator(kind: Kind) -> OperatorConfig:
        return OperatorConfig("custom", {"lambda": lambda value: placeholder(kind, value)})

    operators: Mapping[str, OperatorConfig] = {KIND_ENTITIES[k]: operator(k) for k in {s.kind for s in spans}}
    # spans arrive resolved; merging neighbours across whitespace would join two findings into one
    return str(anonymizer().anonymize(text=text, analyzer_results=results, operators=dict(operators),
                                      merge_entities_with_spaces=False).text)
