"""ISO 4217 currency codes accepted in money columns.

Kept as a literal set so validation needs no extra dependency. Besides the codes in current
use, the set keeps codes withdrawn since 2018 (e.g. HRK, BGN), because maintenance history —
old purchase orders and invoices — legitimately carries them. Precious metals, bond units,
SDR and the test/"no currency" codes (XAU, XDR, XTS, XXX, ...) are not money a plant pays in
and are left out.
"""

from __future__ import annotations

ACTIVE_CURRENCY_CODES: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BHD BIF BMD BND BOB BOV BRL BSD BTN
    BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD
    EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR
    IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD
    MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD
    OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE
    SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI
    UYU UYW UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
    """.split()  # noqa: SIM905 - a block reads like the ISO table it copies
)
"""Codes of currencies (and the fund codes some countries price in) in use today."""

RECENTLY_WITHDRAWN_CURRENCY_CODES: frozenset[str] = frozenset(
    "ANG BGN CUC HRK MRO SLL STD VEF ZWL".split()  # noqa: SIM905
)
"""Codes withdrawn since 2018 that still appear on historical documents."""

CURRENCY_CODES: frozenset[str] = ACTIVE_CURRENCY_CODES | RECENTLY_WITHDRAWN_CURRENCY_CODES
"""Every code a money column accepts."""


def is_currency_code(code: object) -> bool:
    """True when ``code`` is an accepted ISO 4217 code (upper case, exactly as listed)."""
    return isinstance(code, str) and code in CURRENCY_CODES
