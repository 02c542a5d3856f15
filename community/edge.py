"""Edge-mode access decisions: what a door/gate decides alone from its local allow-list.

Pure, no IO, no platform key needed — the simulator's door and real terminals use the same rules.
The platform writes each door's allow-list into its desired twin (see
:func:`community.allowlist.build_allow_list`); every entry carries its validity window, so a door
that lost its connection still stops admitting a tenant at the end of the lease.

Entry credentials by kind:

* ``face``: :func:`encode_template` of the enrolled 128-d template (float16, base64);
* ``card`` / ``pin`` / ``qr``: :func:`credential_digest` of the value (PINs and cards are not
  stored in clear in twins; a QR entry digests the whole signed payload, so a forged one never fits);
* ``plate``: the normalised plate, matched tolerantly with :func:`vision.plate_text.match_plate`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vision.gallery import DEFAULT_THRESHOLD
from vision.plate_text import match_plate

__all__ = [
    "DEFAULT_FACE_THRESHOLD",
    "DEFAULT_LIVENESS_THRESHOLD",
    "EdgeDecision",
    "credential_digest",
    "decode_template",
    "edge_decide",
    "encode_template",
]

DEFAULT_FACE_THRESHOLD = DEFAULT_THRESHOLD  # calibrated in vision.gallery; sites override
DEFAULT_LIVENESS_THRESHOLD = 0.8

EdgeDecision = tuple[bool, str | None, str]


def credential_digest(kind: str, value: str) -> str:
    """``sha256:<hex>`` of ``"{kind}:{value}"`` — how card, PIN and QR credentials appear in allow-lists."""
    return "sha256:" + hashlib.sha256(f"{kind}:{value.strip()}".encode()).hexdigest()


def encode_template(template: Sequence[float] | np.ndarray) -> str:
    """A unit-normalised 128-d template as base64 float16 (compact enough for a twin document)."""
    v = np.asarray(template, dtype=np.float32).reshape(-1)
    n = float(np.linalg.norm(v))
    if v.size != 128 or n == 0.0 or not np.all(np.isfinite(v)):
        raise ValueError("template must be 128 finite values, not all zero")
    return base64.b64encode((v / n).astype("<f2").tobytes()).decode("ascii")


def decode_template(text: str) -> np.ndarray:
    """Inverse of :func:`encode_template` (float32 result)."""
    raw = base64.b64decode(text, validate=True)
    if len(raw) != 256:
        raise ValueError("encoded template must be 256 bytes")
    return np.frombuffer(raw, dtype="<f2").astype(np.float32)


def _window(entry: Mapping[str, Any], now: float) -> str | None:
    vf, vu = entry.get("valid_from"), entry.get("valid_until")
    if vf is not None and now < float(vf):
        return "not_yet_valid"
    if vu is not None and now >= float(vu):
        return "expired"
    return None


def _face_matches(
    entries: list[Mapping[str, Any]], credential: str | Sequence[float], threshold: float
) -> list[Mapping[str, Any]]:
    probe = decode_template(credential) if isinstance(credential, str) else np.asarray(credential, np.float32)
    n = float(np.linalg.norm(probe))
    if probe.size != 128 or n == 0.0:
        return []
    probe = probe / n
    scored: list[tuple[float, Mapping[str, Any]]] = []
    for e in entries:
        try:
            score = float(np.dot(decode_template(str(e["credential"])), probe))
        except (ValueError, KeyError):
            continue
        if score >= threshold:
            scored.append((score, e))
    if not scored:
        return []
    # Several subjects can clear the threshold; only the best-scoring subject's entries count.
    best_subject = max(scored, key=lambda se: se[0])[1].get("subject")
    return [e for _, e in scored if e.get("subject") == best_subject]


def edge_decide(
    allow_list: Mapping[str, Any],
    kind: str,
    credential: str | Sequence[float],
    now: float,
    *,
    liveness: float | None = None,
    liveness_threshold: float = DEFAULT_LIVENESS_THRESHOLD,
) -> EdgeDecision:
    """Decide locally whether ``credential`` of ``kind`` opens the door holding ``allow_list``.

    Returns:
        ``(allowed, subject, reason)``; ``reason`` is ``allowed``, ``not_in_allow_list``,
        ``not_yet_valid``, ``expired``, ``liveness_below_threshold`` or ``bad_credential``.
    """
    if kind == "face" and (liveness is None or liveness < liveness_threshold):
        return False, None, "liveness_below_threshold"
    entries = [e for e in allow_list.get("entries", []) if isinstance(e, Mapping) and e.get("kind") == kind]
    try:
        if kind == "face":
            threshold = float(allow_list.get("face_threshold", DEFAULT_FACE_THRESHOLD))
            hits = _face_matches(entries, credential, threshold)
        elif kind == "plate":
            plate = match_plate(str(credential), [str(e.get("credential", "")) for e in entries])
            hits = [e for e in entries if e.get("credential") == plate] if plate is not None else []
        else:
            digest = credential_digest(kind, str(credential))
            hits = [e for e in entries if e.get("credential") == digest]
    except ValueError:
        return False, None, "bad_credential"
    if not hits:
        return False, None, "not_in_allow_list"
    refusal = "not_in_allow_list"
    for entry in hits:
        why = _window(entry, now)
        if why is None:
            return True, str(entry.get("subject")), "allowed"
        refusal = why
    return False, str(hits[0].get("subject")), refusal
