"""The running engine over simulated years (tools/simulate.py): a few dozen certificates driven
by random schedules through the public contract on the time-skipping server, with every
invariant of docs/rules.md checked on the database's records at random points and at the end.
`./run simulate` runs the same for longer; a failure prints the seed that reproduces it."""

from __future__ import annotations

from tests.conftest import Engine
from tools.simulate import simulate

SEED = 24


async def test_two_simulated_years_of_random_life_keep_every_invariant(engine: Engine) -> None:
    report = await simulate(engine.env, engine.store, engine.task_queue, seed=SEED, certificates=24, years=2,
                            checks=2, say=lambda line: None)
    print("\n".join(report.lines()))
    assert report.failures == [], "\n".join(report.lines())
    # It did live: every kind of message went through, and the checks looked at every certificate.
    sent = set(report.sent)
    assert {"record_activity", "import_certificates", "policy_set", "outage_declare"} <= sent
    assert any(k.startswith("respond:") for k in sent) and any(k.startswith(("decide:", "laa_decision:")) for k in sent)
    assert report.checks == 3 and report.checked["invariants"] == 3 * 24
