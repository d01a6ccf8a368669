"""Personal data in text: e-mail addresses, phone numbers and payment-card numbers (Luhn-checked)."""
from __future__ import annotations

import re

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){2,4}(?!\w)")
MASKS = {"email": "[EMAIL]", "card": "[CARD]", "phone": "[PHONE]"}


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _cards(text: str) -> list[tuple[int, int]]:
    spans = []
    for m in CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            spans.append(m.span())
    return spans


def find_pii(text: str) -> dict[str, list[tuple[int, int]]]:
    """Spans of each kind of personal data; a card number is not also counted as a phone number."""
    found = {"email": [m.span() for m in EMAIL.finditer(text)], "card": _cards(text)}
    taken = found["email"] + found["card"]
    found["phone"] = [m.span() for m in PHONE.finditer(text)
                      if 9 <= len(re.sub(r"\D", "", m.group())) <= 15  # E.164 allows at most 15 digits
                      and not any(s <= m.start() < e or s < m.end() <= e for s, e in taken)]
    return found


def mask_pii(text: str) -> str:
    """Replace every found span with a placeholder such as [EMAIL]."""
    spans = sorted(((s, e, MASKS[kind]) for kind, found in find_pii(text).items() for s, e in found), reverse=True)
    for start, end, mask in spans:
        text = text[:start] + mask + text[end:]
    return text
