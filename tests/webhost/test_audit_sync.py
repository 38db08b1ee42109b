"""The audit sync, both ends real: a signer context's dispatch answers, the web side's copy checks.

No cable here (tests/system/comm/test_audit_bridge.py has it): the answers
go from the signer's handler to ``webhost.audit_sync`` directly, so that each
attack on the database can be staged between two syncs and its report read.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator

import pytest

from comm_handler.v2messages import V2Answer
from signer_core.daemon import build_context
from signer_core.store.auditree import AuditTree
from tests.support.audit import Appliance, sync
from tests.support.x509 import World
from tlog.exchange import AuditQuery, AuditReply
from tlog.merkle import leaf_hash
from tlog.records import GENESIS, chain_hash, material
from webhost.audit_copy import AuditCopy, CopyError
from webhost.audit_sync import AuditAlarm, Sync, SyncError
from webhost.audit_verify import verify_copy


@pytest.fixture
def appliance(tmp_path) -> Iterator[Appliance]:
    ctx = build_context(World(tmp_path).cfg)
    yield Appliance(ctx)
    ctx.db.close()


def alarm(appliance: Appliance, state) -> str:
    with pytest.raises(AuditAlarm) as raised:
        sync(appliance, state)
    return str(raised.value)


def test_a_log_syncs_in_bounded_batches_and_verifies_offline(appliance, tmp_path):
    appliance.fill(3000)
    result = sync(appliance, tmp_path / "web" / "copy")
    assert result.complete and result.size == appliance.size() == result.added
    starts = [q.start for q in appliance.asked]
    assert result.batches == len(starts) > 3 and starts == sorted(set(starts))  # each follows on
    appliance.fill(10)
    again = sync(appliance, tmp_path / "web" / "copy")
    assert again.added >= 10 and again.batches == 1
    report = verify_copy(tmp_path / "web" / "copy", appliance.verifier)
    assert report.ok, report.problems
    assert report.records == report.size == appliance.size() and report.checkpoints == 2
    lines = (tmp_path / "web" / "copy" / "records.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["prev"] == GENESIS and len(lines) == appliance.size()


def test_every_answer_is_bounded_and_each_batch_follows_on(appliance, tmp_path):
    appliance.fill(2500)
    with AuditCopy(tmp_path / "web" / "copy") as copy:
        first = Sync(appliance.ask, copy, appliance.verifier).run(max_batches=2)
        assert not first.complete and first.size == copy.records > 0  # each batch verified
        held = copy.records
    first, second = appliance.asked
    assert first.start == 0 and 0 < second.start < held and first.nonce != second.nonce
    done = sync(appliance, tmp_path / "web" / "copy")
    assert done.complete and done.size == appliance.size()


def test_a_restored_older_database_is_a_rollback(appliance, tmp_path):
    appliance.fill(100)
    backup = sqlite3.connect(":memory:")
    appliance.ctx.db.connection.backup(backup)
    appliance.fill(50)
    size = sync(appliance, tmp_path / "web" / "copy").size
    backup.backup(appliance.ctx.db.connection)  # the operator puts the old database back
    text = alarm(appliance, tmp_path / "web" / "copy")
    old = int(backup.execute("SELECT count(*) FROM audit").fetchone()[0])
    assert "rollback" in text and f"has {old} records" in text and f"{size} were verified" in text
    assert f"record {old + 1} is the first one missing" in text
    assert list((tmp_path / "web" / "copy" / "evidence").iterdir())[0].name.endswith("-rollback")
    assert "ALARM" in {p.name for p in (tmp_path / "web" / "copy").iterdir()}
    with pytest.raises(AuditAlarm, match="earlier alarm"):
        sync(appliance, tmp_path / "web" / "copy")


def test_the_same_size_with_another_history_is_a_fork_located(appliance, tmp_path):
    appliance.fill(100)
    backup = sqlite3.connect(":memory:")
    appliance.ctx.db.connection.backup(backup)
    old = appliance.size()
    appliance.fill(20)
    size = sync(appliance, tmp_path / "web" / "copy").size
    backup.backup(appliance.ctx.db.connection)
    appliance.fill(size - old, event="other-history")
    assert appliance.size() == size
    text = alarm(appliance, tmp_path / "web" / "copy")
    assert text.startswith(f"fork: the appliance's signed checkpoint of {size} records does not")
    assert f"record {old + 1} is the first that differs" in text
    evidence = next((tmp_path / "web" / "copy" / "evidence").iterdir())
    assert (evidence / "checkpoint.note").read_bytes() != (evidence / "verified.note").read_bytes()


@pytest.mark.parametrize(
    "edit, problem",
    [
        ("UPDATE audit SET details = '{\"n\":999}' WHERE seq = 40", 40),
        ("DELETE FROM audit WHERE seq = 40", 40),
        (
            "UPDATE audit SET details = CASE seq WHEN 40 THEN (SELECT details FROM audit WHERE"
            " seq = 41) ELSE (SELECT details FROM audit WHERE seq = 40) END WHERE seq IN (40, 41)",
            40,
        ),
    ],
    ids=["edited", "deleted", "reordered"],
)
def test_a_row_changed_in_the_database_is_located_on_the_next_sync(
    appliance, tmp_path, edit, problem
):
    appliance.fill(80)
    sync(appliance, tmp_path / "web" / "copy")
    appliance.other_connection().execute(edit)
    text = alarm(appliance, tmp_path / "web" / "copy")
    assert f"bad from record {problem} on" in text
    assert appliance.ctx.audit.events("audit-damaged")[-1]["first_bad"] == problem


def _rewrite_from(conn: sqlite3.Connection, seq: int) -> None:
    """A careful attacker: record ``seq`` changed, every later hash and the whole tree made to match."""
    rows = conn.execute("SELECT seq, at, event, details FROM audit ORDER BY seq").fetchall()
    conn.execute("BEGIN")
    conn.execute("DELETE FROM audit_tree")
    tree, prev = AuditTree(conn), GENESIS
    for n, at, event, details in rows:
        details = '{"n":-1}' if n == seq else details
        digest = chain_hash(n, at, event, details, prev)
        conn.execute(
            "UPDATE audit SET details = ?, prev = ?, hash = ? WHERE seq = ?",
            (details, prev, digest, n),
        )
        tree.append(leaf_hash(material(n, at, event, details, prev)))
        prev = digest
    conn.execute("COMMIT")


def test_a_history_rewritten_with_its_tree_is_inconsistent_and_located(appliance, tmp_path):
    appliance.fill(90)
    sync(appliance, tmp_path / "web" / "copy")
    _rewrite_from(appliance.other_connection(), 33)
    appliance.fill(5)
    text = alarm(appliance, tmp_path / "web" / "copy")
    assert "does not extend the 9" in text and "record 33 is the first that differs" in text


def _tampered(appliance: Appliance, change) -> Callable[[AuditQuery], V2Answer]:
    def ask(query: AuditQuery) -> V2Answer:
        answer = appliance.ask(query)
        return V2Answer(answer.kind, answer.code, change(AuditReply.decode(answer.payload)), "")

    return ask


def _resized(reply: AuditReply) -> bytes:
    origin, size, rest = reply.note.split(b"\n", 2)
    note = b"\n".join((origin, str(int(size) + 1).encode(), rest))  # a size it did not sign
    return AuditReply(note, 0, reply.proof, reply.count, reply.batch).encode()


@pytest.mark.parametrize(
    "change",
    [
        _resized,
        lambda r: AuditReply(r.note, 7, r.proof, r.count, r.batch).encode(),  # a false damage
        lambda r: AuditReply(r.note, 0, r.proof[:-1], r.count, r.batch).encode(),
        lambda r: AuditReply(r.note, 0, r.proof, r.count - 1, r.batch).encode(),
        lambda r: r.encode()[:-3],
    ],
    ids=["note", "damage", "proof", "count", "cut"],
)
def test_an_answer_changed_on_the_way_proves_nothing_keeps_nothing_and_alarms_not(
    appliance, tmp_path, change
):
    appliance.fill(900)
    with AuditCopy(tmp_path / "web" / "copy") as copy, pytest.raises(SyncError):
        Sync(_tampered(appliance, change), copy, appliance.verifier).run()
    assert not (tmp_path / "web" / "copy" / "ALARM").exists()
    assert not (tmp_path / "web" / "copy" / "records.jsonl").exists()
    assert sync(appliance, tmp_path / "web" / "copy").size == appliance.size()


def test_an_old_answer_replayed_is_not_a_rollback(appliance, tmp_path):
    appliance.fill(10)
    recorded: list[V2Answer] = []

    def keep(query: AuditQuery) -> V2Answer:
        recorded.append(appliance.ask(query))
        return recorded[-1]

    with AuditCopy(tmp_path / "web" / "copy") as copy:
        Sync(keep, copy, appliance.verifier).run()
    appliance.fill(10)
    sync(appliance, tmp_path / "web" / "copy")
    with AuditCopy(tmp_path / "web" / "copy") as copy, pytest.raises(SyncError, match="not the"):
        Sync(lambda query: recorded[0], copy, appliance.verifier).run()
    assert not (tmp_path / "web" / "copy" / "ALARM").exists()


def test_a_copy_edited_on_the_web_host_fails_offline_verification(appliance, tmp_path):
    appliance.fill(50)
    sync(appliance, tmp_path / "web" / "copy")
    records = tmp_path / "web" / "copy" / "records.jsonl"
    records.write_text(records.read_text().replace('"n\\":7,', '"n\\":8,', 1))
    report = verify_copy(tmp_path / "web" / "copy", appliance.verifier)
    assert not report.ok and "does not follow the one before it" in report.problems[0]
    records.write_text("".join(records.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(CopyError, match="shorter than"):
        AuditCopy(tmp_path / "web" / "copy")


def test_a_sync_stopped_half_way_is_verified_offline_by_its_signed_proof(appliance, tmp_path):
    appliance.fill(2500)
    with AuditCopy(tmp_path / "web" / "copy") as copy:
        Sync(appliance.ask, copy, appliance.verifier).run(max_batches=2)
        held = copy.records
    report = verify_copy(tmp_path / "web" / "copy", appliance.verifier)
    assert report.ok and report.records == report.size == held and report.checkpoints == 0


def test_the_first_sync_needs_the_key_and_keeps_it(appliance, tmp_path):
    appliance.fill(3)
    key = tmp_path / "log.pub"
    key.write_text(appliance.verifier.text() + "\n")
    with AuditCopy(tmp_path / "web" / "copy") as copy:
        with pytest.raises(Exception, match="--key"):
            copy.verifier(None)
    assert sync(appliance, tmp_path / "web" / "copy", key=key).complete
    with AuditCopy(tmp_path / "web" / "copy") as copy:
        assert copy.verifier(None).text() == appliance.verifier.text()


def test_an_overlong_line_in_the_copy_is_refused_at_its_bound(appliance, tmp_path, monkeypatch):
    appliance.fill(5)
    sync(appliance, tmp_path / "web" / "copy")
    monkeypatch.setattr("webhost.audit_copy.MAX_LINE", 100)  # a record line is longer
    report = verify_copy(tmp_path / "web" / "copy", appliance.verifier)
    too_long = f"record 1 of {tmp_path / 'web' / 'copy'}/records.jsonl is too long"
    assert not report.ok and report.problems[0] == too_long and report.records == 0
