"""Kept whole, over 400 lines: four fifths of it are `MIGRATIONS`, the schema's history as one ordered list,
read top to bottom and only ever appended to. Split by feature or by step, that history would be scattered across
modules, and no one place would show what the database holds and in which order it came to be. The few lines
that apply the steps stay beside them: they give the steps' `{pk}` and `{stamps}` tokens and per-engine
triggers their meaning.

Versioned schema migrations: CREATE TABLE, CREATE INDEX and ADD COLUMN, and once a table rebuild.

SQLite cannot alter a column, so a step never changes or drops one: it adds. The one exception follows
SQLite's documented procedure for relaxing a NOT NULL (migration 7: a copy of the table, rows copied with
their ids, the old one dropped, the copy renamed) in the step's single transaction, keeping every column. The SQL is
portable across SQLite, PostgreSQL and CockroachDB; the engine-specific pieces are the identity
primary key, the `{pk}` token (`{stamps}` stands for created_at/updated_at), and the audit trail's
append-only triggers, which each step lists per engine. Integer columns are
declared `INT`, not `INTEGER`: piccolo converts every SQLite `INTEGER` value through Decimal, which
doubles the time to read a large schedule.
Append new steps at the end; never edit an applied one.
"""

from __future__ import annotations

from dataclasses import dataclass

from piccolo.engine.base import Engine
from piccolo.querystring import QueryString

from trialcoord.kernel.database.engine import RECORDED_PATH, RECORDED_PATH_SETTING, is_sqlite, transaction
from trialcoord.kernel.problems import Conflict

PRIMARY_KEY = {True: "INTEGER PRIMARY KEY", False: "SERIAL PRIMARY KEY"}  # keyed by is_sqlite
STAMPS = (
    "created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP, "
    "updated_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP"
)


# What the audit trail records (`audit reconcile` compares them with it): changed only by the application (migration
# 12). A later step that rebuilds one of these tables (as migration 7 did) creates its triggers again.
REGULATED_TABLES = (
    "studies",
    "protocol_versions",
    "sites",
    "site_closures",
    "participants",
    "protocol_changes",
    "recorded_events",
    "visits",
    "participant_identities",
    "grants",
    "consent_versions",
    "participant_consents",
    "deviations",
    "capas",
    "documents",
    "document_versions",
)

_REFUSED = "{} rows change only through trialcoord, which audits each change: {} refused"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    sqlite: tuple[str, ...] = ()  # then these, on that engine only (triggers)
    postgres: tuple[str, ...] = ()


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "studies, protocol versions, sites, participants, events and visits",
        (
            """CREATE TABLE studies (
                id {pk}, code TEXT NOT NULL UNIQUE, title TEXT NOT NULL, {stamps})""",
            """CREATE TABLE protocol_versions (
                id {pk}, study INT NOT NULL REFERENCES studies (id), version TEXT NOT NULL,
                effective DATE NOT NULL, source_name TEXT NOT NULL, source_text TEXT NOT NULL,
                sha256 TEXT NOT NULL, loaded_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
                UNIQUE (study, version))""",
            """CREATE TABLE sites (
                id {pk}, study INT NOT NULL REFERENCES studies (id), code TEXT NOT NULL,
                name TEXT NOT NULL, time_zone TEXT NOT NULL, calendar TEXT, {stamps},
                UNIQUE (study, code))""",
            """CREATE TABLE participants (
                id {pk}, study INT NOT NULL REFERENCES studies (id), subject_id TEXT NOT NULL,
                site INT NOT NULL REFERENCES sites (id), arm TEXT,
                protocol_version INT NOT NULL REFERENCES protocol_versions (id),
                status TEXT NOT NULL, enrolled_on DATE NOT NULL, {stamps},
                UNIQUE (study, subject_id))""",
            "CREATE INDEX participants_site ON participants (site)",
            """CREATE TABLE protocol_changes (
                id {pk}, participant INT NOT NULL REFERENCES participants (id),
                from_version INT NOT NULL REFERENCES protocol_versions (id),
                to_version INT NOT NULL REFERENCES protocol_versions (id),
                effective DATE NOT NULL, reason TEXT NOT NULL,
                recorded_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP)""",
            "CREATE INDEX protocol_changes_participant ON protocol_changes (participant)",
            """CREATE TABLE recorded_events (
                id {pk}, participant INT NOT NULL REFERENCES participants (id),
                event TEXT NOT NULL, date DATE NOT NULL, reason TEXT, {stamps},
                UNIQUE (participant, event))""",
            """CREATE TABLE visits (
                id {pk}, participant INT NOT NULL REFERENCES participants (id),
                code TEXT NOT NULL, definition TEXT NOT NULL, occurrence INT NOT NULL,
                name TEXT NOT NULL, number DOUBLE PRECISION,
                target DATE, earliest DATE, latest DATE, actual DATE, actual_reason TEXT,
                status TEXT NOT NULL, days_outside INT NOT NULL, study_day INT,
                optional BOOLEAN NOT NULL, appointment DATE, appointment_reason TEXT, missed_reason TEXT,
                protocol_version INT NOT NULL REFERENCES protocol_versions (id),
                evaluated_on DATE NOT NULL, row_version INT NOT NULL, {stamps},
                UNIQUE (participant, code))""",
            "CREATE INDEX visits_status ON visits (status)",
            "CREATE INDEX visits_window ON visits (earliest, latest)",
            "CREATE INDEX visits_latest ON visits (latest)",
            "CREATE INDEX visits_appointment ON visits (appointment)",
        ),
    ),
    Migration(
        2,
        "accounts, grants, sessions, sign-in attempts, audit trail, participant identities",
        (
            # Instants are TEXT in audit_entries.utc_instant form and dates ISO TEXT: compared as text on every
            # engine, and read back exactly as written.
            """CREATE TABLE users (
                id {pk}, user_id TEXT NOT NULL UNIQUE, printed_name TEXT NOT NULL, email TEXT NOT NULL,
                status TEXT NOT NULL, password_hash TEXT NOT NULL, password_changed_at TEXT NOT NULL,
                created_at TEXT NOT NULL)""",
            """CREATE TABLE grants (
                id {pk}, user_id TEXT NOT NULL REFERENCES users (user_id), role TEXT NOT NULL,
                study TEXT, site TEXT, valid_from TEXT NOT NULL, valid_to TEXT, personal_data BOOLEAN NOT NULL,
                granted_by TEXT NOT NULL, granted_at TEXT NOT NULL, revoked_by TEXT, revoked_at TEXT)""",
            "CREATE INDEX grants_user ON grants (user_id)",
            """CREATE TABLE sessions (
                id {pk}, token_hash TEXT NOT NULL UNIQUE, user_id TEXT NOT NULL REFERENCES users (user_id),
                kind TEXT NOT NULL, csrf_token TEXT NOT NULL, created_at TEXT NOT NULL, last_seen_at TEXT NOT NULL,
                expires_at TEXT, ended_at TEXT, ended_why TEXT, signing_since TEXT)""",
            "CREATE INDEX sessions_user ON sessions (user_id)",
            """CREATE TABLE login_attempts (
                id {pk}, attempted_at TEXT NOT NULL, user_id TEXT NOT NULL, address TEXT NOT NULL,
                outcome TEXT NOT NULL)""",
            "CREATE INDEX login_attempts_user ON login_attempts (user_id, attempted_at)",
            "CREATE INDEX login_attempts_address ON login_attempts (address, attempted_at)",
            # One row: appending locks it, so sequence numbers are allocated in commit order without gaps
            # (a database sequence leaves a gap on rollback, which would read as a deleted entry).
            "CREATE TABLE audit_head (id INT PRIMARY KEY, size INT NOT NULL)",
            "INSERT INTO audit_head (id, size) VALUES (1, 0)",
            """CREATE TABLE audit_entries (
                sequence INT PRIMARY KEY, recorded_at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
                record_type TEXT NOT NULL, record_id TEXT NOT NULL, old TEXT, new TEXT, reason TEXT,
                leaf_hash TEXT NOT NULL)""",
            "CREATE INDEX audit_entries_record ON audit_entries (record_type, record_id)",
            "CREATE INDEX audit_entries_actor ON audit_entries (actor)",
            "CREATE INDEX audit_entries_recorded_at ON audit_entries (recorded_at)",
            """CREATE TABLE audit_checkpoints (
                size INT PRIMARY KEY, root TEXT NOT NULL, issued_at TEXT NOT NULL, signed TEXT NOT NULL)""",
            """CREATE TABLE participant_identities (
                participant INT PRIMARY KEY REFERENCES participants (id), name TEXT, date_of_birth TEXT,
                contact TEXT, mrn TEXT, updated_at TEXT NOT NULL)""",
        ),
        sqlite=(
            """CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
                BEGIN SELECT RAISE(ABORT, 'audit entries are append-only: UPDATE refused'); END""",
            """CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
                BEGIN SELECT RAISE(ABORT, 'audit entries are append-only: DELETE refused'); END""",
            # INSERT OR REPLACE deletes the old row without firing DELETE triggers (recursive_triggers is off).
            """CREATE TRIGGER audit_entries_no_replace BEFORE INSERT ON audit_entries
                WHEN EXISTS (SELECT 1 FROM audit_entries WHERE sequence = NEW.sequence)
                BEGIN SELECT RAISE(ABORT, 'audit entries are append-only: REPLACE refused'); END""",
        ),
        postgres=(
            """CREATE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'audit entries are append-only: % refused', TG_OP; END $$""",
            """CREATE TRIGGER audit_entries_no_change BEFORE UPDATE OR DELETE ON audit_entries
                FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only()""",
            """CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
                FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_append_only()""",
        ),
    ),
    Migration(
        3,
        "documents, their immutable versions and the bytes they name",
        (
            # site '' is a study-level document (a NULL would not take part in the UNIQUE constraint).
            """CREATE TABLE documents (
                id {pk}, study TEXT NOT NULL, site TEXT NOT NULL, name TEXT NOT NULL, artifact TEXT NOT NULL,
                created_at TEXT NOT NULL, UNIQUE (study, site, name))""",
            # Bytes as base64 text: the same column type on every engine; named by their SHA-256, checked on read.
            "CREATE TABLE document_blobs (sha256 TEXT PRIMARY KEY, size INT NOT NULL, data TEXT NOT NULL)",
            """CREATE TABLE document_versions (
                id {pk}, document INT NOT NULL REFERENCES documents (id), label TEXT NOT NULL,
                sha256 TEXT NOT NULL REFERENCES document_blobs (sha256), size INT NOT NULL,
                media_type TEXT NOT NULL, file_name TEXT NOT NULL, author TEXT NOT NULL,
                change_summary TEXT NOT NULL, created_at TEXT NOT NULL, status TEXT NOT NULL,
                history TEXT NOT NULL, approval TEXT, UNIQUE (document, label))""",
        ),
    ),
    Migration(
        4,
        "consent versions and participants' consents",
        (
            """CREATE TABLE consent_versions (
                id {pk}, study TEXT NOT NULL, site TEXT NOT NULL, language TEXT NOT NULL, label TEXT NOT NULL,
                protocol_version TEXT NOT NULL, document_version INT NOT NULL REFERENCES document_versions (id),
                effective_on TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (study, site, language, label))""",
            """CREATE TABLE participant_consents (
                id {pk}, participant INT NOT NULL REFERENCES participants (id),
                consent_version INT NOT NULL REFERENCES consent_versions (id), signed_on TEXT NOT NULL,
                obtained_by TEXT NOT NULL, recorded_at TEXT NOT NULL, UNIQUE (participant, consent_version))""",
            "CREATE INDEX participant_consents_participant ON participant_consents (participant)",
        ),
    ),
    Migration(
        5,
        "signers' keys, electronic signatures of document versions and the files made from them",
        (
            # The private key as the scrypt + AES-GCM envelope of kernel/signing_keys.py; valid_to ends it.
            """CREATE TABLE signer_keys (
                id {pk}, signer_id TEXT NOT NULL, printed_name TEXT NOT NULL, key_id TEXT NOT NULL UNIQUE,
                public_key TEXT NOT NULL, encrypted TEXT NOT NULL, valid_from TEXT NOT NULL, valid_to TEXT,
                revoked_reason TEXT)""",
            "CREATE INDEX signer_keys_signer ON signer_keys (signer_id)",
            # One key in force per signer, even when two first signatures race.
            "CREATE UNIQUE INDEX signer_keys_in_force ON signer_keys (signer_id) WHERE valid_to IS NULL",
            # Whose document it is (a CV, a licence, a training record), and the last day a version is valid
            # when the document itself says so: what the binder checklist needs.
            "ALTER TABLE documents ADD COLUMN person TEXT",
            "ALTER TABLE document_versions ADD COLUMN expires_on TEXT",
            # Which signature blocks of the consent form were signed (JSON list; NULL: recorded before).
            "ALTER TABLE participant_consents ADD COLUMN signed_by TEXT",
            """CREATE TABLE document_signatures (
                id {pk}, version INT NOT NULL REFERENCES document_versions (id), signer_id TEXT NOT NULL,
                printed_name TEXT NOT NULL, meaning TEXT NOT NULL, instant TEXT NOT NULL, key_id TEXT NOT NULL,
                value TEXT NOT NULL, UNIQUE (version, signer_id, meaning))""",
            # Made from a version: its signature page, the copy with it appended, the PAdES-signed copy.
            """CREATE TABLE document_files (
                id {pk}, version INT NOT NULL REFERENCES document_versions (id), kind TEXT NOT NULL,
                signatures INT NOT NULL, sha256 TEXT NOT NULL REFERENCES document_blobs (sha256),
                size INT NOT NULL, media_type TEXT NOT NULL, created_at TEXT NOT NULL,
                UNIQUE (version, kind, signatures))""",
        ),
        # Stored bytes, signatures and a version's content are written once: the database refuses changes
        # (a version's status, history and approval still move along the lifecycle).
        sqlite=(
            """CREATE TRIGGER document_blobs_no_update BEFORE UPDATE ON document_blobs
                BEGIN SELECT RAISE(ABORT, 'document_blobs rows never change: UPDATE refused'); END""",
            """CREATE TRIGGER document_blobs_no_delete BEFORE DELETE ON document_blobs
                BEGIN SELECT RAISE(ABORT, 'document_blobs rows never change: DELETE refused'); END""",
            """CREATE TRIGGER document_signatures_no_update BEFORE UPDATE ON document_signatures
                BEGIN SELECT RAISE(ABORT, 'document_signatures rows never change: UPDATE refused'); END""",
            """CREATE TRIGGER document_signatures_no_delete BEFORE DELETE ON document_signatures
                BEGIN SELECT RAISE(ABORT, 'document_signatures rows never change: DELETE refused'); END""",
            """CREATE TRIGGER document_files_no_update BEFORE UPDATE ON document_files
                BEGIN SELECT RAISE(ABORT, 'document_files rows never change: UPDATE refused'); END""",
            """CREATE TRIGGER document_files_no_delete BEFORE DELETE ON document_files
                BEGIN SELECT RAISE(ABORT, 'document_files rows never change: DELETE refused'); END""",
            """CREATE TRIGGER document_versions_fixed BEFORE UPDATE OF document, label, sha256, size, media_type,
                file_name, author, change_summary, created_at, expires_on ON document_versions
                BEGIN SELECT RAISE(ABORT, 'a document version never changes, only its status: UPDATE refused'); END""",
            """CREATE TRIGGER documents_no_update BEFORE UPDATE ON documents
                BEGIN SELECT RAISE(ABORT, 'documents rows never change: UPDATE refused'); END""",
            """CREATE TRIGGER documents_no_delete BEFORE DELETE ON documents
                BEGIN SELECT RAISE(ABORT, 'documents rows never change: DELETE refused'); END""",
            # A signer's key only ever ends, once; its public part and period never change otherwise.
            """CREATE TRIGGER signer_keys_fixed BEFORE UPDATE OF signer_id, printed_name, key_id, public_key,
                encrypted, valid_from ON signer_keys
                BEGIN SELECT RAISE(ABORT, 'signer_keys rows never change but to end: UPDATE refused'); END""",
            """CREATE TRIGGER signer_keys_end_once BEFORE UPDATE OF valid_to, revoked_reason ON signer_keys
                WHEN OLD.valid_to IS NOT NULL
                BEGIN SELECT RAISE(ABORT, 'signer_keys rows never change but to end: UPDATE refused'); END""",
            """CREATE TRIGGER signer_keys_no_delete BEFORE DELETE ON signer_keys
                BEGIN SELECT RAISE(ABORT, 'signer_keys rows never change: DELETE refused'); END""",
            """CREATE TRIGGER document_versions_no_delete BEFORE DELETE ON document_versions
                BEGIN SELECT RAISE(ABORT, 'document_versions rows never change: DELETE refused'); END""",
        ),
        postgres=(
            """CREATE FUNCTION immutable_rows() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION '% rows never change: % refused', TG_TABLE_NAME, TG_OP; END $$""",
            """CREATE TRIGGER document_blobs_no_change BEFORE UPDATE OR DELETE ON document_blobs
                FOR EACH ROW EXECUTE FUNCTION immutable_rows()""",
            """CREATE TRIGGER document_blobs_no_truncate BEFORE TRUNCATE ON document_blobs
                FOR EACH STATEMENT EXECUTE FUNCTION immutable_rows()""",
            """CREATE TRIGGER document_signatures_no_change BEFORE UPDATE OR DELETE ON document_signatures
                FOR EACH ROW EXECUTE FUNCTION immutable_rows()""",
            """CREATE TRIGGER document_signatures_no_truncate BEFORE TRUNCATE ON document_signatures
                FOR EACH STATEMENT EXECUTE FUNCTION immutable_rows()""",
            """CREATE TRIGGER document_files_no_change BEFORE UPDATE OR DELETE ON document_files
                FOR EACH ROW EXECUTE FUNCTION immutable_rows()""",
            """CREATE TRIGGER document_files_no_truncate BEFORE TRUNCATE ON document_files
                FOR EACH STATEMENT EXECUTE FUNCTION immutable_rows()""",
            """CREATE TRIGGER document_versions_fixed BEFORE UPDATE OF document, label, sha256, size, media_type,
                file_name, author, change_summary, created_at, expires_on ON document_versions
                FOR EACH ROW EXECUTE FUNCTION immutable_rows()""",
            """CREATE TRIGGER documents_no_change BEFORE UPDATE OR DELETE ON documents
                FOR EACH ROW EXECUTE FUNCTION immutable_rows()""",
            """CREATE TRIGGER documents_no_truncate BEFORE TRUNCATE ON documents
                FOR EACH STATEMENT EXECUTE FUNCTION immutable_rows()""",
            """CREATE TRIGGER signer_keys_fixed BEFORE UPDATE OF signer_id, printed_name, key_id, public_key,
                encrypted, valid_from ON signer_keys FOR EACH ROW EXECUTE FUNCTION immutable_rows()""",
            """CREATE TRIGGER signer_keys_end_once BEFORE UPDATE OF valid_to, revoked_reason ON signer_keys
                FOR EACH ROW WHEN (OLD.valid_to IS NOT NULL) EXECUTE FUNCTION immutable_rows()""",
            """CREATE TRIGGER signer_keys_no_delete BEFORE DELETE ON signer_keys
                FOR EACH ROW EXECUTE FUNCTION immutable_rows()""",
            """CREATE TRIGGER signer_keys_no_truncate BEFORE TRUNCATE ON signer_keys
                FOR EACH STATEMENT EXECUTE FUNCTION immutable_rows()""",
            """CREATE TRIGGER document_versions_no_delete BEFORE DELETE ON document_versions
                FOR EACH ROW EXECUTE FUNCTION immutable_rows()""",
            """CREATE TRIGGER document_versions_no_truncate BEFORE TRUNCATE ON document_versions
                FOR EACH STATEMENT EXECUTE FUNCTION immutable_rows()""",
        ),
    ),
    Migration(
        6,
        "deviations, their review steps and signatures, window exceptions, CAPA records, detection runs",
        (
            # One row per deviation. Automatic ones are keyed by (participant, visit, occurrence, rule): at most
            # one record each however often detection runs. Manual ones have no rule. Instants are audit
            # instants (TEXT), dates ISO TEXT, as in the audit trail.
            """CREATE TABLE capas (
                id {pk}, study INT NOT NULL REFERENCES studies (id), title TEXT NOT NULL, root_cause TEXT NOT NULL,
                corrective_action TEXT NOT NULL, preventive_action TEXT NOT NULL, owner TEXT NOT NULL,
                due_on TEXT, state TEXT NOT NULL, created_by TEXT NOT NULL, created_at TEXT NOT NULL,
                closed_at TEXT, row_version INT NOT NULL)""",
            """CREATE TABLE deviations (
                id {pk}, study INT NOT NULL REFERENCES studies (id), participant INT REFERENCES participants (id),
                site INT NOT NULL REFERENCES sites (id), visit TEXT, occurrence INT, rule TEXT,
                source TEXT NOT NULL, category TEXT NOT NULL, subcategory TEXT, classification TEXT NOT NULL,
                state TEXT NOT NULL, occurred_on TEXT, days_outside INT NOT NULL, description TEXT NOT NULL,
                site_reason TEXT, corrective_action TEXT, capa INT REFERENCES capas (id),
                detected_at TEXT NOT NULL, updated_at TEXT NOT NULL, closed_at TEXT, resolved_by_entry INT,
                row_version INT NOT NULL)""",
            """CREATE UNIQUE INDEX deviations_automatic ON deviations (participant, visit, occurrence, rule)
                WHERE rule IS NOT NULL""",
            "CREATE INDEX deviations_queue ON deviations (study, state, detected_at)",
            "CREATE INDEX deviations_detected ON deviations (study, detected_at, id)",  # the queue's order
            "CREATE INDEX deviations_site ON deviations (site, state)",
            "CREATE INDEX deviations_capa ON deviations (capa)",
            # The review's steps, in order (the audit trail holds them too, with the changed fields).
            """CREATE TABLE deviation_steps (
                id {pk}, deviation INT NOT NULL REFERENCES deviations (id), step TEXT NOT NULL,
                from_state TEXT NOT NULL, to_state TEXT NOT NULL, actor TEXT NOT NULL, at TEXT NOT NULL,
                reason TEXT, detail TEXT)""",
            "CREATE INDEX deviation_steps_deviation ON deviation_steps (deviation)",
            # A classification or closure: the decision signed (canonical JSON), its hash in the signed statement,
            # and the Ed25519 signature.
            """CREATE TABLE deviation_signatures (
                id {pk}, deviation INT NOT NULL REFERENCES deviations (id), step INT NOT NULL
                REFERENCES deviation_steps (id), decision TEXT NOT NULL, content_sha256 TEXT NOT NULL,
                record TEXT NOT NULL,
                signer_id TEXT NOT NULL, printed_name TEXT NOT NULL, meaning TEXT NOT NULL, instant TEXT NOT NULL,
                key_id TEXT NOT NULL, value TEXT NOT NULL)""",
            "CREATE INDEX deviation_signatures_deviation ON deviation_signatures (deviation)",
            """CREATE TABLE window_exceptions (
                id {pk}, participant INT NOT NULL REFERENCES participants (id), visit TEXT NOT NULL,
                earlier_days INT NOT NULL, later_days INT NOT NULL, approved_on TEXT NOT NULL,
                approved_by TEXT NOT NULL, reason TEXT NOT NULL, recorded_at TEXT NOT NULL,
                UNIQUE (participant, visit))""",
            # Each run: as of which date, and how far the audit trail went (the next run looks only past it).
            """CREATE TABLE deviation_runs (
                id {pk}, study INT NOT NULL REFERENCES studies (id), as_of TEXT NOT NULL, audit_size INT NOT NULL,
                scope TEXT NOT NULL, created INT NOT NULL, updated INT NOT NULL, resolved INT NOT NULL,
                ran_at TEXT NOT NULL)""",
            "CREATE INDEX deviation_runs_study ON deviation_runs (study, id)",
        ),
        sqlite=(
            """CREATE TRIGGER deviations_no_delete BEFORE DELETE ON deviations
                BEGIN SELECT RAISE(ABORT, 'deviations are never deleted: DELETE refused'); END""",
            """CREATE TRIGGER deviation_steps_no_update BEFORE UPDATE ON deviation_steps
                BEGIN SELECT RAISE(ABORT, 'deviation_steps rows never change: UPDATE refused'); END""",
            """CREATE TRIGGER deviation_steps_no_delete BEFORE DELETE ON deviation_steps
                BEGIN SELECT RAISE(ABORT, 'deviation_steps rows never change: DELETE refused'); END""",
            """CREATE TRIGGER deviation_signatures_no_update BEFORE UPDATE ON deviation_signatures
                BEGIN SELECT RAISE(ABORT, 'deviation_signatures rows never change: UPDATE refused'); END""",
            """CREATE TRIGGER deviation_signatures_no_delete BEFORE DELETE ON deviation_signatures
                BEGIN SELECT RAISE(ABORT, 'deviation_signatures rows never change: DELETE refused'); END""",
            """CREATE TRIGGER window_exceptions_no_update BEFORE UPDATE ON window_exceptions
                BEGIN SELECT RAISE(ABORT, 'window_exceptions rows never change: UPDATE refused'); END""",
            """CREATE TRIGGER window_exceptions_no_delete BEFORE DELETE ON window_exceptions
                BEGIN SELECT RAISE(ABORT, 'window_exceptions rows never change: DELETE refused'); END""",
        ),
        postgres=tuple(
            f"""CREATE TRIGGER {table}_no_{what} BEFORE {ops} ON {table}
                FOR EACH {level} EXECUTE FUNCTION immutable_rows()"""
            for table, changes in (
                ("deviations", "DELETE"),
                ("deviation_steps", "UPDATE OR DELETE"),
                ("deviation_signatures", "UPDATE OR DELETE"),
                ("window_exceptions", "UPDATE OR DELETE"),
            )
            for what, ops, level in (("change", changes, "ROW"), ("truncate", "TRUNCATE", "STATEMENT"))
        ),
    ),
    Migration(
        7,
        "site closures, stored schedule horizons, consents on paper or of unknown version",
        (
            # Days a site is closed (and its holidays come from its calendar): business days skip them.
            """CREATE TABLE site_closures (
                id {pk}, site INT NOT NULL REFERENCES sites (id), first_day DATE NOT NULL, last_day DATE NOT NULL,
                reason TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP)""",
            "CREATE INDEX site_closures_site ON site_closures (site)",
            # The last day the stored schedule lists (open-ended repeats): `schedules refresh` extends it.
            "ALTER TABLE participants ADD COLUMN schedule_horizon DATE",
            # Site calendars were stored and never used until now: a value that is no calendar name is cleared
            # (the protocol's calendar applied before and still does); holidays:... names are checked on use.
            "UPDATE sites SET calendar = NULL WHERE calendar IS NOT NULL AND calendar NOT IN ('business-us',"
            " 'weekdays') AND substr(calendar, 1, 9) <> 'holidays:'",  # case-sensitive on both engines (LIKE is not)
            # A consent recorded on paper before its version was registered has no consent version: its
            # document reference instead (and the version label and language printed on it, when known).
            """CREATE TABLE participant_consents_rebuilt (
                id {pk}, participant INT NOT NULL REFERENCES participants (id),
                consent_version INT REFERENCES consent_versions (id), signed_on TEXT NOT NULL,
                obtained_by TEXT NOT NULL, recorded_at TEXT NOT NULL, signed_by TEXT, paper_reference TEXT,
                paper_label TEXT, paper_language TEXT,
                CHECK (consent_version IS NOT NULL OR paper_reference IS NOT NULL),
                UNIQUE (participant, consent_version))""",
            """INSERT INTO participant_consents_rebuilt (id, participant, consent_version, signed_on, obtained_by,
                recorded_at, signed_by) SELECT id, participant, consent_version, signed_on, obtained_by, recorded_at,
                signed_by FROM participant_consents""",
            "DROP TABLE participant_consents",
            "ALTER TABLE participant_consents_rebuilt RENAME TO participant_consents",
            "CREATE INDEX participant_consents_participant ON participant_consents (participant)",
        ),
        postgres=(  # the copied ids: the next one follows them
            """SELECT setval(pg_get_serial_sequence('participant_consents', 'id'),
                COALESCE((SELECT MAX(id) FROM participant_consents), 0) + 1, false)""",
        ),
    ),
    Migration(
        8,
        "sponsor packages: each build, its transfer number, state, file and what it delivered",
        (
            # One row per build. A transfer's first build has rebuild_of NULL and owns its number (unless it failed:
            # then the next build takes the number again); a rebuild of it (same data, parameters and checkpoint: the
            # same bytes) points at that first build.
            # deviations: the DV records as delivered (refid -> fingerprint, closed), what the next transfer's
            # created/changed/closed lists compare with; checkpoint: the signed audit checkpoint the package carries;
            # heartbeat: when the building process last said it was alive (a server starting fails only stale builds).
            """CREATE TABLE sponsor_packages (
                id {pk}, study INT NOT NULL REFERENCES studies (id), transfer INT NOT NULL, rebuild_of INT
                REFERENCES sponsor_packages (id), as_of TEXT NOT NULL, sites TEXT NOT NULL, privacy TEXT NOT NULL,
                unblinded INT NOT NULL, state TEXT NOT NULL, progress REAL NOT NULL, message TEXT NOT NULL,
                made_by TEXT NOT NULL, created_at TEXT NOT NULL, finished_at TEXT, sha256 TEXT, size INT,
                checkpoint TEXT, deviations TEXT, heartbeat TEXT)""",
            """CREATE UNIQUE INDEX sponsor_packages_transfer ON sponsor_packages (study, transfer)
                WHERE rebuild_of IS NULL AND state <> 'failed'""",
            # One build per study at a time, held by the database itself (a check before the insert races).
            """CREATE UNIQUE INDEX sponsor_packages_building ON sponsor_packages (study)
                WHERE state = 'building'""",
            "CREATE INDEX sponsor_packages_study ON sponsor_packages (study, id)",
        ),
    ),
    Migration(
        9,
        "signature requests: a named person asked to sign a document version with a meaning, reminded, fulfilled",
        (
            # Instants are audit instants (TEXT). A request is fulfilled by the signature it asked for (`signature`);
            # one open request per version, signer and meaning, held by the database.
            """CREATE TABLE signature_requests (
                id {pk}, version INT NOT NULL REFERENCES document_versions (id), signer_id TEXT NOT NULL,
                meaning TEXT NOT NULL, requested_by TEXT NOT NULL, requested_at TEXT NOT NULL,
                reminders INT NOT NULL, reminded_at TEXT, fulfilled_at TEXT,
                signature INT REFERENCES document_signatures (id))""",
            """CREATE UNIQUE INDEX signature_requests_open ON signature_requests (version, signer_id, meaning)
                WHERE fulfilled_at IS NULL""",
            "CREATE INDEX signature_requests_signer ON signature_requests (signer_id) WHERE fulfilled_at IS NULL",
        ),
        # What was asked, of whom and by whom never changes, nor a fulfilled request; none is deleted.
        sqlite=(
            """CREATE TRIGGER signature_requests_fixed BEFORE UPDATE OF version, signer_id, meaning, requested_by,
                requested_at ON signature_requests
                BEGIN SELECT RAISE(ABORT, 'a signature request never changes what it asked: UPDATE refused'); END""",
            """CREATE TRIGGER signature_requests_fulfilled BEFORE UPDATE ON signature_requests
                WHEN OLD.fulfilled_at IS NOT NULL
                BEGIN SELECT RAISE(ABORT, 'a fulfilled signature request never changes: UPDATE refused'); END""",
            """CREATE TRIGGER signature_requests_no_delete BEFORE DELETE ON signature_requests
                BEGIN SELECT RAISE(ABORT, 'signature_requests rows never change: DELETE refused'); END""",
        ),
        postgres=(
            """CREATE TRIGGER signature_requests_fixed BEFORE UPDATE OF version, signer_id, meaning, requested_by,
                requested_at ON signature_requests FOR EACH ROW EXECUTE FUNCTION immutable_rows()""",
            """CREATE TRIGGER signature_requests_fulfilled BEFORE UPDATE ON signature_requests
                FOR EACH ROW WHEN (OLD.fulfilled_at IS NOT NULL) EXECUTE FUNCTION immutable_rows()""",
            """CREATE TRIGGER signature_requests_no_delete BEFORE DELETE ON signature_requests
                FOR EACH ROW EXECUTE FUNCTION immutable_rows()""",
            """CREATE TRIGGER signature_requests_no_truncate BEFORE TRUNCATE ON signature_requests
                FOR EACH STATEMENT EXECUTE FUNCTION immutable_rows()""",
        ),
    ),
    Migration(
        10,
        "window extension requests: a coordinator asks, an investigator approves or declines",
        (
            # One row per request. Approving one also inserts its window_exceptions row (migration 6), which is
            # what detection and booking read; the request keeps who asked, who decided, when and why.
            # At most one open request per visit, held by the database itself.
            """CREATE TABLE window_extension_requests (
                id {pk}, participant INT NOT NULL REFERENCES participants (id), visit TEXT NOT NULL,
                earlier_days INT NOT NULL, later_days INT NOT NULL, reason TEXT NOT NULL,
                requested_by TEXT NOT NULL, requested_at TEXT NOT NULL, state TEXT NOT NULL,
                decided_by TEXT, decided_at TEXT, decision_reason TEXT, row_version INT NOT NULL)""",
            """CREATE UNIQUE INDEX window_extension_requests_open ON window_extension_requests (participant, visit)
                WHERE state = 'requested'""",
            "CREATE INDEX window_extension_requests_state ON window_extension_requests (state, id)",
        ),
        sqlite=(
            """CREATE TRIGGER window_extension_requests_no_delete BEFORE DELETE ON window_extension_requests
                BEGIN SELECT RAISE(ABORT, 'window_extension_requests are never deleted: DELETE refused'); END""",
        ),
        postgres=(
            """CREATE TRIGGER window_extension_requests_no_change BEFORE DELETE ON window_extension_requests
                FOR EACH ROW EXECUTE FUNCTION immutable_rows()""",
            """CREATE TRIGGER window_extension_requests_no_truncate BEFORE TRUNCATE ON window_extension_requests
                FOR EACH STATEMENT EXECUTE FUNCTION immutable_rows()""",
        ),
    ),
    Migration(
        11,
        "calendar feeds: a user's subscribable calendar of a site or a participant, by a secret address",
        (
            # Named by the SHA-256 of the token in its address (never stored), like sessions; one site or one
            # participant of one study. Revoked feeds stay, with who revoked them; never deleted.
            """CREATE TABLE calendar_feeds (
                id {pk}, token_hash TEXT NOT NULL UNIQUE, user_id TEXT NOT NULL REFERENCES users (user_id),
                study TEXT NOT NULL, site TEXT, subject_id TEXT, created_at TEXT NOT NULL, last_used_at TEXT,
                revoked_at TEXT, revoked_by TEXT,
                CHECK ((site IS NULL AND subject_id IS NOT NULL) OR (site IS NOT NULL AND subject_id IS NULL)))""",
            "CREATE INDEX calendar_feeds_user ON calendar_feeds (user_id)",
        ),
    ),
    Migration(
        12,
        "regulated rows change only through the application, which audits each change",
        (),
        # The application's connections carry a marker (`engine.RECORDED_PATH`): on SQLite a function each of its
        # connections defines, on PostgreSQL a setting each of its connections starts with. Any other client (a
        # sqlite3 shell, psql, a database browser) is refused; `audit reconcile` finds what an owner does anyway.
        sqlite=tuple(
            f"""CREATE TRIGGER regulated_{table}_no_{what.lower()} BEFORE {what} ON {table}
                WHEN {RECORDED_PATH}() IS NOT 1
                BEGIN SELECT RAISE(ABORT, '{_REFUSED.format(table, what)}'); END"""
            for table in REGULATED_TABLES
            for what in ("UPDATE", "DELETE")
        ),
        postgres=(
            f"""CREATE FUNCTION regulated_rows() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION '{_REFUSED.format("%", "%")}', TG_TABLE_NAME, TG_OP; END $$""",
            *(
                # The condition in WHEN, not in the function: the application's own bulk writes call no PL/pgSQL.
                f"""CREATE TRIGGER regulated_{table}_no_{what} BEFORE {ops} ON {table} FOR EACH {level}
                    WHEN (current_setting('{RECORDED_PATH_SETTING}', true) IS DISTINCT FROM 'on')
                    EXECUTE FUNCTION regulated_rows()"""
                for table in REGULATED_TABLES
                for what, ops, level in (("change", "UPDATE OR DELETE", "ROW"), ("truncate", "TRUNCATE", "STATEMENT"))
            ),
        ),
    ),
)

_LEDGER = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP)"""


async def migrate(engine: Engine) -> list[int]:
    """Apply the steps not applied yet, each in its own transaction; return their versions."""
    if is_sqlite(engine):
        await engine.run_ddl("PRAGMA journal_mode=WAL")  # readers do not block the writer
    await engine.run_ddl(_LEDGER)
    applied = await applied_versions(engine)
    done = []
    for step in MIGRATIONS:
        if step.version not in applied and await _apply(engine, step):
            done.append(step.version)
    return done


async def applied_versions(engine: Engine) -> set[int]:
    rows = engine.transform_response_to_dicts(await engine.run_ddl("SELECT version FROM schema_migrations"))
    return {row["version"] for row in rows}


async def _apply(engine: Engine, step: Migration) -> bool:
    """False when another process applied the step first (its ledger row wins the primary key)."""
    try:
        async with transaction(f"schema migration {step.version}", engine):
            # The ledger row goes first: a concurrent migrator blocks on it, then fails cleanly.
            await engine.run_querystring(
                QueryString("INSERT INTO schema_migrations (version, name) VALUES ({}, {})", step.version, step.name)
            )
            for statement in (*step.statements, *(step.sqlite if is_sqlite(engine) else step.postgres)):
                await engine.run_ddl(_render(statement, engine))
    except Conflict:
        return False
    return True


def _render(statement: str, engine: Engine) -> str:
    return statement.replace("{pk}", PRIMARY_KEY[is_sqlite(engine)]).replace("{stamps}", STAMPS)
