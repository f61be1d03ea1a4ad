#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pitr_restore
short_description: Restore a pgBackRest stanza to a point in time on a DR host, recover, promote and time it
version_added: 0.2.0
description:
  - On a disaster-recovery host, restores a pgBackRest stanza into an empty data directory to a recovery target
    (the latest archived point, a time, a named restore point, an LSN, or just consistency), starts PostgreSQL,
    waits until recovery reaches the target, and promotes the server.
  - Returns the recovery point actually reached (last replayed transaction time, LSN, timeline) and the
    duration of each phase (restore, start, WAL replay, promote), which is what a DR drill measures.
  - The backup is chosen before anything is touched and passed to pgBackRest explicitly (C(--set)) - the newest
    backup that finished before a time or LSN target, else the newest backup, or O(backup_set). All WAL from
    that backup to the newest archived segment must be in the repository for the target V(latest) (a gap would
    silently end recovery early); a missing segment fails the task naming it.
  - "Refuses: a data directory that is not empty unless O(replace=true); a data directory a PostgreSQL server
    runs in; a data directory holding the source cluster that this module did not restore (a replica's or
    the primary's data); and a host on which any running PostgreSQL server has the stanza's system identifier
    (C(pgbackrest info) C(db[].system-id)) and was not restored by this module: that host is the source's
    primary or one of its replicas."
  - The restored data directory carries C(upkeep_pitr_restore.json) (stanza, backup, target, time) so a later
    run knows a drill's restore from the source's own data.
author:
  - upkeep.runbooks maintainers (@upkeep-runbooks)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - upkeep.runbooks.pgbackrest
attributes:
  check_mode:
    support: full
    details:
      - Reads the stanza and this host and runs every refusal rule; returns the backup it would restore from, the
        repository, the data directory and the target, and whether the WAL is complete. Nothing is written.
  diff_mode:
    support: none
    details:
      - The data directory's state before is returned in RV(data_directory_state).
  platform:
    platforms: posix
options:
  data_directory:
    description:
      - The data directory to restore into (passed to pgBackRest as C(--pg1-path)). Created with mode 0700 when
        missing; its parent must exist.
    type: path
    required: true
  target_type:
    description:
      - V(latest) recovers to the end of the archive; V(time), V(name) and V(lsn) stop at O(target) (a time stamp
        with time zone, a restore point made with C(pg_create_restore_point()), an LSN); V(immediate) stops as
        soon as the backup is consistent.
    type: str
    choices: [latest, time, name, lsn, immediate]
    default: latest
  target:
    description:
      - The recovery target for O(target_type=time), V(name) or V(lsn), for example C(2024-05-02 09:15:00+00).
    type: str
  target_inclusive:
    description:
      - Whether recovery stops just after (V(true)) or just before (V(false)) the target time or LSN.
    type: bool
    default: true
  backup_set:
    description:
      - Restore from this backup label instead of choosing one. Needed for a named restore point older than the
        newest backup.
    type: str
  replace:
    description:
      - Replace the contents of a non-empty O(data_directory). Even then the module refuses a directory a server
        runs in and one holding the source's own data (not made by this module).
    type: bool
    default: false
  archive_mode:
    description:
      - C(archive_mode) of the restored server. V(off) (the default, right for a drill) keeps a restored copy
        from pushing WAL of a new timeline into the source's repository; V(preserve) keeps the source's setting
        (a real failover that continues archiving).
    type: str
    choices: ["off", preserve]
    default: "off"
  settings:
    description:
      - Server settings for the restored server, appended to its C(postgresql.auto.conf) after pgBackRest's
        recovery settings (for example C(port), C(unix_socket_directories), C(shared_buffers)).
    type: dict
    default: {}
  promote:
    description:
      - Promote the server once recovery has reached the target. With V(false) it stays paused in recovery at the
        target, for inspection.
    type: bool
    default: true
  superuser:
    description:
      - Role psql logs in as over the restored server's unix socket (peer or trust authentication as O(os_user)).
    type: str
    default: postgres
  pg_bin_dir:
    description:
      - Directory of C(pg_ctl), C(postgres) and C(psql). Default C(/usr/lib/postgresql/<version>/bin) for the
        stanza's PostgreSQL version, else the C(pg_ctl) on PATH.
    type: path
  start_timeout:
    description:
      - Seconds the restored server may take to accept connections, and to finish promotion.
    type: int
    default: 300
  recovery_timeout:
    description:
      - Seconds WAL replay may take to reach the target.
    type: int
    default: 3600
notes:
  - Run it as root with O(os_user=postgres), or as the PostgreSQL OS user (C(become_user=postgres)); the host
    check reads the working directory of running C(postgres) processes, which only root or their owner can.
  - The recovery target is reached when PostgreSQL pauses there (C(recovery_target_action=pause)); the point is
    recorded and only then is the server promoted. For V(latest) PostgreSQL promotes by itself at the end of the
    archive and RV(recovery_point.timeline_before_promotion) is null.
  - A drill should leave the source running; this module never stops or touches the source.
  - A source that keeps its configuration outside the data directory (Debian's C(/etc/postgresql/<version>/<cluster>))
    leaves no C(postgresql.conf), C(pg_hba.conf) or C(pg_ident.conf) in the backup. The module then writes an empty
    C(postgresql.conf), a C(pg_hba.conf) of local peer connections and an empty C(pg_ident.conf) (see
    RV(config_written)); name this host's own files with C(hba_file) and C(ident_file) in O(settings) to use them
    instead (for example V(/etc/postgresql/15/main/pg_hba.conf) for TCP clients).
seealso:
  - module: upkeep.runbooks.pgbackrest_info
  - name: pgBackRest restore command
    description: What pgBackRest does for each recovery type and target.
    link: https://pgbackrest.org/command.html#command-restore
  - name: PostgreSQL recovery targets
    description: recovery_target_time, recovery_target_name, recovery_target_lsn and recovery_target_action.
    link: https://www.postgresql.org/docs/current/runtime-config-wal.html#RUNTIME-CONFIG-WAL-RECOVERY-TARGET
"""

EXAMPLES = r"""
- name: Restore the newest state on the DR host and promote it
  upkeep.runbooks.pitr_restore:
    stanza: main
    data_directory: /var/lib/postgresql/15/drill
    os_user: postgres
    settings:
      port: 5444
  become: true
  register: drill

- name: Restore to just before a bad deployment
  upkeep.runbooks.pitr_restore:
    stanza: main
    data_directory: /var/lib/postgresql/15/pitr
    target_type: time
    target: "2024-05-02 09:14:59+00"
    replace: true
    os_user: postgres
  become: true

- name: Say what would be restored, from where, to where
  upkeep.runbooks.pitr_restore:
    stanza: main
    data_directory: /var/lib/postgresql/15/drill
    target_type: name
    target: before_migration_0042
  check_mode: true
  become: true
  become_user: postgres
"""

RETURN = r"""
config_written:
  description:
    - Configuration files the module wrote into the restored data directory because the backup held none (the
      source keeps them elsewhere, as Debian does); empty when the backup had them all. Not returned in check mode.
  returned: success
  type: list
  elements: str
  sample: [postgresql.conf, pg_hba.conf, pg_ident.conf]
stanza:
  description: The stanza restored.
  returned: always
  type: str
  sample: main
data_directory:
  description: Absolute path of the data directory restored into.
  returned: always
  type: str
  sample: /var/lib/postgresql/15/drill
data_directory_state:
  description: The data directory before the restore.
  returned: always
  type: dict
  contains:
    exists:
      description: Whether it existed.
      type: bool
    entries:
      description: Number of entries in it.
      type: int
    replaces:
      description: What O(replace) replaces (system identifier, whether this module made it, when); null when empty.
      type: dict
  sample: {"exists": true, "entries": 0, "replaces": null}
source_system_identifier:
  description: The source cluster's system identifier (from the stanza).
  returned: always
  type: str
  sample: "7714627179209796676"
pg_version:
  description: PostgreSQL major version of the backup.
  returned: always
  type: str
  sample: "15"
backup:
  description:
    - The backup restored from (the keys of the C(newest_backups) entries of M(upkeep.runbooks.pgbackrest_info)).
  returned: always
  type: dict
  sample: {"label": "20240501-010002F", "type": "full", "stopped": "2024-05-01T01:00:09Z", "wal_start":
           "000000010000000000000002", "wal_stop": "000000010000000000000004"}
repo:
  description: Repository number the backup is in.
  returned: always
  type: int
  sample: 1
archive:
  description: The archive the WAL comes from (id, oldest and newest segment).
  returned: always
  type: dict
  sample: {"id": "15-1", "min": "000000010000000000000001", "max": "00000001000000000000000B"}
wal_segment_size:
  description: WAL segment size in bytes.
  returned: always
  type: int
  sample: 16777216
wal_gaps:
  description: WAL segments missing between the backup's first segment and the newest archived one.
  returned: always
  type: dict
  sample: {"checked_from": "000000010000000000000002", "checked_to": "00000001000000000000000B",
           "segments_checked": 10, "missing_count": 0, "missing": []}
target:
  description: The recovery target (type, value, inclusive).
  returned: always
  type: dict
  sample: {"type": "time", "value": "2024-05-02 09:14:59+00", "inclusive": true}
notes:
  description: What the module noticed and did, for the report.
  returned: always
  type: list
  elements: str
recovery_point:
  description: The point recovery actually reached.
  returned: when restored (not in check mode)
  type: dict
  contains:
    lsn:
      description: Last WAL position replayed (C(pg_last_wal_replay_lsn())).
      type: str
      sample: 0/5000110
    last_transaction_time:
      description: Commit time of the last replayed transaction (UTC, ISO 8601); null when none was replayed.
      type: str
      sample: "2024-05-02T09:14:58.104233+00:00"
    timeline_before_promotion:
      description: Timeline recovery ran on; null for V(latest) (PostgreSQL promoted by itself).
      type: int
      sample: 1
    timeline:
      description: Timeline of the promoted server; null when O(promote=false).
      type: int
      sample: 2
target_reached:
  description: True when recovery stopped at the target (or, for V(latest), at the end of the archive).
  returned: when restored
  type: bool
  sample: true
promoted:
  description: Whether the server was promoted (it then accepts writes).
  returned: when restored
  type: bool
  sample: true
phases:
  description: Seconds each phase took.
  returned: when restored
  type: dict
  sample: {"restore_seconds": 3.2, "start_seconds": 0.8, "replay_seconds": 1.9, "promote_seconds": 0.4,
           "total_seconds": 6.3}
server:
  description: The restored server (port, socket directory, postmaster pid, startup log file, program directory).
  returned: when restored
  type: dict
  sample: {"port": 5444, "socket_dir": "/var/run/postgresql", "pid": 4711,
           "log": "/var/lib/postgresql/15/drill/pitr_restore_startup.log", "bindir": "/usr/lib/postgresql/15/bin"}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - Ansible modules import after their documentation
from ansible_collections.upkeep.runbooks.plugins.module_utils._pgbackrest import (  # noqa: E402
    PgBackRest,
    PgBackRestError,
    pgbackrest_argument_spec,
)
from ansible_collections.upkeep.runbooks.plugins.module_utils._pitr import (  # noqa: E402
    TARGET_TYPES,
    execute,
    plan,
)


def main():
    argument_spec = pgbackrest_argument_spec()
    argument_spec.update(
        data_directory=dict(type="path", required=True),
        target_type=dict(type="str", choices=list(TARGET_TYPES), default="latest"),
        target=dict(type="str"),
        target_inclusive=dict(type="bool", default=True),
        backup_set=dict(type="str"),
        replace=dict(type="bool", default=False),
        archive_mode=dict(type="str", choices=["off", "preserve"], default="off"),
        settings=dict(type="dict", default={}),
        promote=dict(type="bool", default=True),
        superuser=dict(type="str", default="postgres"),
        pg_bin_dir=dict(type="path"),
        start_timeout=dict(type="int", default=300),
        recovery_timeout=dict(type="int", default=3600),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[("target_type", "time", ["target"]), ("target_type", "name", ["target"]),
                     ("target_type", "lsn", ["target"])],
    )
    params = module.params
    try:
        backrest = PgBackRest.from_params(params)
        the_plan = plan(backrest, params)
    except PgBackRestError as exc:
        module.fail_json(msg="Failed to restore stanza '%s' into %s: %s"
                         % (params["stanza"], params["data_directory"], exc.message))
    notes = the_plan.pop("notes")
    if module.check_mode:
        notes.append("check mode: would restore backup %s from repo%s into %s, target %s"
                     % (the_plan["backup"]["label"], the_plan["repo"], the_plan["data_directory"],
                        the_plan["target"]["type"] + (" " + the_plan["target"]["value"]
                                                      if the_plan["target"]["value"] else "")))
        result = dict(the_plan)
        result["notes"] = notes
        module.exit_json(changed=True, **result)
    try:
        outcome = execute(backrest, the_plan, params)
    except PgBackRestError as exc:
        failed = dict(the_plan)
        failed["notes"] = notes
        module.fail_json(msg="Failed to restore stanza '%s' into %s: %s"
                         % (params["stanza"], the_plan["data_directory"], exc.message), changed=True, **failed)
    notes.append("restored backup %s into %s and %s" % (
        the_plan["backup"]["label"], the_plan["data_directory"],
        "promoted it" if outcome["promoted"] else "left it paused in recovery at the target"))
    if outcome["config_written"]:
        notes.append("the backup holds no %s (the source keeps its configuration outside the data directory): "
                     "wrote them (PostgreSQL's defaults, local peer connections) before the start"
                     % ", ".join(outcome["config_written"]))
    result = dict(the_plan)
    result.update(outcome)
    result["notes"] = notes
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
