"""Synthetic registry files of any size, shaped like CCMS's (`starter.py generate-registry`):
for load tests, benchmarks and rehearsing an onboarding. Deterministic for a seed.

Firms vary in size as legal aid firms do (a few large ones hold many certificates, most hold
a handful); each firm has one to five provider users, its certificates spread over its users
and one or two offices. Certificates were granted over the last ten years, last saw activity
within the inactivity period (so they fall due spread over the coming months), and one in
five has had payments on account, part recouped. `due_at` instead makes every certificate fall
due inside a window (`due_within` seconds from that moment): a burst like May 2026's.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

USER_HEADER = ["login_id", "provider_firm_id", "roles", "pre_silas", "email"]
CERTIFICATE_HEADER = ["case_reference", "provider_firm_id", "office_code", "provider_contact_login",
                      "granted_on", "last_activity_at", "poa_paid", "poa_recouped"]
OFFICE_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"


@dataclass
class GeneratedRegistry:
    users: Path
    certificates: Path
    firms: int
    user_count: int
    certificate_count: int


def case_reference(n: int, prefix: int = 0) -> str:
    """The n-th synthetic case reference: 12 digits starting 3000 (contract.md); `prefix`
    (0-9) keeps separate generated sets apart."""
    return f"3000{prefix}{n:07d}"


def generate_registry(directory: Path, certificates: int, *, seed: int = 1, now: datetime | None = None,
                      inactivity_days: int = 608, due_at: datetime | None = None, due_within: float = 60.0,
                      prefix: int = 0, firms: int | None = None) -> GeneratedRegistry:
    """Write users.csv and certificates.csv into `directory`."""
    if not 0 <= certificates <= 9_999_999:
        raise ValueError("certificates: 0 to 9,999,999 per generated set")
    rng = random.Random(seed)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    directory.mkdir(parents=True, exist_ok=True)
    firm_count = firms or max(1, certificates // 100)
    # Zipf-like weights: firm k holds about 1/k^0.8 of the share of the largest.
    weights = [1 / (k ** 0.8) for k in range(1, firm_count + 1)]
    firm_ids = [str(20000 + k) for k in range(firm_count)]
    firm_users: dict[str, list[str]] = {}
    firm_offices: dict[str, list[str]] = {}
    users_path = directory / "users.csv"
    with users_path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(USER_HEADER)
        for firm in firm_ids:
            logins = [f"P{firm}U{u}" for u in range(rng.randint(1, 5))]
            firm_users[firm] = logins
            firm_offices[firm] = ["".join(rng.choice(OFFICE_CHARS) for _ in range(6))
                                  for _ in range(rng.randint(1, 2))]
            for login in logins:
                out.writerow([login, firm, "case_management", "false", f"{login.lower()}@firm{firm}.example"])
    user_count = sum(len(v) for v in firm_users.values())
    certificates_path = directory / "certificates.csv"
    today = now.date()
    with certificates_path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(CERTIFICATE_HEADER)
        chosen = rng.choices(firm_ids, weights=weights, k=certificates)
        for n, firm in enumerate(chosen):
            if due_at is not None:
                # Evenly across the window, so the burst's shape does not depend on the seed.
                offset = due_within * n / max(certificates, 1)
                deadline = due_at + timedelta(seconds=offset)
                last_activity = deadline - timedelta(days=inactivity_days)
            else:
                last_activity = now - timedelta(seconds=rng.uniform(0, (inactivity_days - 1) * 86_400))
            granted_on = min(last_activity.date(), today) - timedelta(days=rng.randint(0, 10 * 365 - inactivity_days))
            paid = rng.choice([0, 0, 0, 0, rng.randint(100, 5_000)])
            recouped = rng.randint(0, paid // 2) if paid else 0
            out.writerow([case_reference(n, prefix), firm, rng.choice(firm_offices[firm]), rng.choice(firm_users[firm]),
                          max(granted_on, date(2000, 1, 1)).isoformat(), last_activity.isoformat(),
                          f"{paid}.00", f"{recouped}.00"])
    return GeneratedRegistry(users_path, certificates_path, firm_count, user_count, certificates)
